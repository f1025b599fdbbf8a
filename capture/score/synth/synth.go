// Package synth builds labelled test photos for the scorer: a face pasted
// onto a scene at a known place, and the degraded copies of a photo (blur,
// darkness, overexposure, noise, a face cut by the edge). The label is known
// by construction. Pure Go; used by the tests of capture/score and by
// scripts/quality, never by the daemon or the worker.
package synth

import (
	"bytes"
	"image"
	"image/draw"
	"image/jpeg"
	"math"
	"math/rand"
)

// RGBA copies any image into a new *image.RGBA with origin (0, 0).
func RGBA(src image.Image) *image.RGBA {
	b := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Bounds(), src, b.Min, draw.Src)
	return dst
}

// Resize resamples src to w x h (bilinear when growing, box average when
// shrinking).
func Resize(src image.Image, w, h int) *image.RGBA {
	s := RGBA(src)
	sw, sh := s.Bounds().Dx(), s.Bounds().Dy()
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	fx, fy := float64(sw)/float64(w), float64(sh)/float64(h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var c [3]float64
			if fx > 1 || fy > 1 { // box average over the source footprint
				x0, x1 := int(float64(x)*fx), max(int(float64(x)*fx)+1, int(float64(x+1)*fx))
				y0, y1 := int(float64(y)*fy), max(int(float64(y)*fy)+1, int(float64(y+1)*fy))
				n := 0.0
				for yy := y0; yy < min(y1, sh); yy++ {
					for xx := x0; xx < min(x1, sw); xx++ {
						i := s.PixOffset(xx, yy)
						c[0] += float64(s.Pix[i])
						c[1] += float64(s.Pix[i+1])
						c[2] += float64(s.Pix[i+2])
						n++
					}
				}
				for k := range c {
					c[k] /= n
				}
			} else {
				sx := math.Max(0, (float64(x)+0.5)*fx-0.5)
				sy := math.Max(0, (float64(y)+0.5)*fy-0.5)
				x0, y0 := int(sx), int(sy)
				x1, y1 := min(x0+1, sw-1), min(y0+1, sh-1)
				ax, ay := sx-float64(x0), sy-float64(y0)
				for k := 0; k < 3; k++ {
					p := func(xx, yy int) float64 { return float64(s.Pix[s.PixOffset(xx, yy)+k]) }
					c[k] = (p(x0, y0)*(1-ax)+p(x1, y0)*ax)*(1-ay) + (p(x0, y1)*(1-ax)+p(x1, y1)*ax)*ay
				}
			}
			i := dst.PixOffset(x, y)
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = u8(c[0]), u8(c[1]), u8(c[2]), 255
		}
	}
	return dst
}

// Fill resamples src to cover w x h exactly, cropping the overflow (like a
// camera's framing of a wider scene).
func Fill(src image.Image, w, h int) *image.RGBA {
	b := src.Bounds()
	scale := math.Max(float64(w)/float64(b.Dx()), float64(h)/float64(b.Dy()))
	rw, rh := int(math.Ceil(float64(b.Dx())*scale)), int(math.Ceil(float64(b.Dy())*scale))
	r := Resize(src, rw, rh)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(dst, dst.Bounds(), r, image.Pt((rw-w)/2, (rh-h)/2), draw.Src)
	return dst
}

// Paste draws face scaled to rect onto dst, blending its border over a
// feather of the given fraction of its size so no hard square edge is
// left. rect may reach outside dst: that part is cut off, as by a frame.
func Paste(dst *image.RGBA, face image.Image, rect image.Rectangle, feather float64) {
	f := Resize(face, rect.Dx(), rect.Dy())
	fw, fh := float64(rect.Dx()), float64(rect.Dy())
	for y := 0; y < rect.Dy(); y++ {
		for x := 0; x < rect.Dx(); x++ {
			px, py := rect.Min.X+x, rect.Min.Y+y
			if !image.Pt(px, py).In(dst.Bounds()) {
				continue
			}
			// distance to the nearest border, as a fraction of the size
			d := math.Min(math.Min(float64(x)+0.5, fw-float64(x)-0.5)/fw, math.Min(float64(y)+0.5, fh-float64(y)-0.5)/fh)
			a := 1.0
			if feather > 0 {
				a = math.Min(1, d/feather)
				a = a * a * (3 - 2*a)
			}
			si, di := f.PixOffset(x, y), dst.PixOffset(px, py)
			for k := 0; k < 3; k++ {
				dst.Pix[di+k] = u8(a*float64(f.Pix[si+k]) + (1-a)*float64(dst.Pix[di+k]))
			}
		}
	}
}

// Blur applies a Gaussian blur of the given sigma (pixels): defocus or a
// shaken camera.
func Blur(src *image.RGBA, sigma float64) *image.RGBA {
	r := int(math.Ceil(3 * sigma))
	k := make([]float64, 2*r+1)
	var s float64
	for i := range k {
		x := float64(i - r)
		k[i] = math.Exp(-x * x / (2 * sigma * sigma))
		s += k[i]
	}
	for i := range k {
		k[i] /= s
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	tmp := make([]float64, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var c [3]float64
			for i, kv := range k {
				xx := min(max(x+i-r, 0), w-1)
				o := src.PixOffset(xx, y)
				c[0] += kv * float64(src.Pix[o])
				c[1] += kv * float64(src.Pix[o+1])
				c[2] += kv * float64(src.Pix[o+2])
			}
			copy(tmp[(y*w+x)*3:], c[:])
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var c [3]float64
			for i, kv := range k {
				yy := min(max(y+i-r, 0), h-1)
				t := tmp[(yy*w+x)*3:]
				c[0] += kv * t[0]
				c[1] += kv * t[1]
				c[2] += kv * t[2]
			}
			o := dst.PixOffset(x, y)
			dst.Pix[o], dst.Pix[o+1], dst.Pix[o+2], dst.Pix[o+3] = u8(c[0]), u8(c[1]), u8(c[2]), 255
		}
	}
	return dst
}

// Exposure multiplies every channel by gain in linear light (gamma 2.2),
// clipping at white: gain 0.25 is two stops under, 3 is over.
func Exposure(src *image.RGBA, gain float64) *image.RGBA {
	var lut [256]uint8
	for v := range lut {
		lin := math.Pow(float64(v)/255, 2.2) * gain
		lut[v] = u8(255 * math.Pow(math.Min(lin, 1), 1/2.2))
	}
	dst := image.NewRGBA(src.Bounds())
	for i := 0; i < len(src.Pix); i += 4 {
		dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = lut[src.Pix[i]], lut[src.Pix[i+1]], lut[src.Pix[i+2]], 255
	}
	return dst
}

// Noise adds Gaussian noise of the given sigma (grey levels), independent
// per channel, as a small sensor in dim light does.
func Noise(src *image.RGBA, sigma float64, seed int64) *image.RGBA {
	rng := rand.New(rand.NewSource(seed))
	dst := image.NewRGBA(src.Bounds())
	for i := 0; i < len(src.Pix); i += 4 {
		for k := 0; k < 3; k++ {
			dst.Pix[i+k] = u8(float64(src.Pix[i+k]) + rng.NormFloat64()*sigma)
		}
		dst.Pix[i+3] = 255
	}
	return dst
}

// JPEG encodes img at the given quality.
func JPEG(img image.Image, quality int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		panic(err) // only fails on a writer error; bytes.Buffer has none
	}
	return buf.Bytes()
}

// Gray converts to grey (for faces that should look like ORL's).
func Gray(src image.Image) *image.RGBA {
	b := src.Bounds()
	g := image.NewGray(b)
	draw.Draw(g, b, src, b.Min, draw.Src)
	return RGBA(g)
}

func u8(v float64) uint8 {
	if v <= 0 {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return uint8(v + 0.5)
}
