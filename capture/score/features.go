package score

import (
	"image"
	"math"
	"time"
)

// ramp is 0 below lo, 1 above hi, linear between.
func ramp(v, lo, hi float64) float64 {
	switch {
	case v <= lo:
		return 0
	case v >= hi:
		return 1
	}
	return (v - lo) / (hi - lo)
}

// band is 1 between b and c, falling linearly to 0 at a and at d.
func band(v, a, b, c, d float64) float64 {
	return ramp(v, a, b) * (1 - ramp(v, c, d))
}

// noiseScore: sensor noise up to 2 grey levels is invisible; at 12 the
// photo looks grainy and scores 0.
func noiseScore(sigma float64) float64 { return 1 - ramp(sigma, 2, 12) }

// sharpScore maps the raw sharpness (strongest smoothed gradient per unit
// of contrast) to [0, 1]: 0.04 is hopelessly soft, 0.16 crisp.
func sharpScore(raw float64) float64 { return ramp(raw, 0.04, 0.16) }

// faceSizeScore rates the main face's height against the frame's: under 6%
// it is a detail, from 15% to 55% a subject, beyond that too close.
func faceSizeScore(box image.Rectangle, w, h int) float64 {
	f := float64(box.Dy()) / float64(min(w, h))
	return math.Max(ramp(f, 0.06, 0.15)*(1-ramp(f, 0.55, 0.9)), 0.1*ramp(f, 0.02, 0.06))
}

// placementScore: a face needs room around it (at least a quarter of its
// width to every edge, else it is cut or cramped), and a subject sits
// better near the middle third than at the border.
func placementScore(box image.Rectangle, w, h int) float64 {
	fw := float64(box.Dx())
	margin := math.Min(math.Min(float64(box.Min.X), float64(w-box.Max.X)),
		math.Min(float64(box.Min.Y), float64(h-box.Max.Y)))
	room := ramp(margin/fw, 0, 0.25)
	cx := (float64(box.Min.X+box.Max.X) / 2) / float64(w)
	cy := (float64(box.Min.Y+box.Max.Y) / 2) / float64(h)
	// 1 inside the central third horizontally and the upper two thirds
	// vertically, 0.6 at the very edge.
	dx := math.Max(0, math.Abs(cx-0.5)-1.0/6) / (1.0 / 3)
	dy := math.Max(0, math.Max(0.2-cy, cy-0.66)) / 0.34
	comp := 1 - 0.4*math.Min(1, math.Hypot(dx, dy))
	return room * comp
}

// timeOfDay prefers daylight: 1 from 8:00 to 20:00 local time of the photo,
// 0.6 in the early morning and evening, 0.2 at night. Unknown time: 0.5.
func timeOfDay(t time.Time) float64 {
	if t.IsZero() {
		return 0.5
	}
	h := float64(t.Hour()) + float64(t.Minute())/60
	switch {
	case h >= 8 && h < 20:
		return 1
	case h >= 6 && h < 8, h >= 20 && h < 23:
		return 0.6
	}
	return 0.2
}
