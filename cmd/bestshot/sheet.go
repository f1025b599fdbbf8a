package main

import (
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
)

// Contact sheet layout, in pixels.
const (
	cols    = 4
	thumbW  = 320
	thumbH  = 200
	panelH  = 92
	gap     = 12
	barsTop = 40 // feature bars start this far below the thumbnail
)

var (
	bg      = color.RGBA{32, 32, 36, 0}
	fg      = color.RGBA{230, 230, 230, 0}
	dim     = color.RGBA{140, 140, 140, 0}
	gold    = color.RGBA{255, 200, 0, 0} // gocv turns these into BGR itself
	green   = color.RGBA{80, 220, 80, 0}
	cyan    = color.RGBA{60, 200, 220, 0}
	red     = color.RGBA{230, 70, 70, 0}
	barBack = color.RGBA{70, 70, 70, 0}
)

// abbrev labels the feature bars.
var abbrev = map[string]string{
	weights.Faces: "fac", weights.FaceSize: "siz", weights.Placement: "pla", weights.Smile: "smi",
	weights.EyesOpen: "eye", weights.Sharpness: "shp", weights.Noise: "noi", weights.Exposure: "exp",
	weights.TimeOfDay: "tim",
}

// writeSheet draws every photo as a thumbnail with its face boxes (green:
// smiling), a score bar and a bar per feature; picked photos get a gold
// frame and their rank.
func writeSheet(out string, ps []photo, v []verdict) error {
	rows := (len(ps) + cols - 1) / cols
	W := gap + cols*(thumbW+gap)
	H := gap + rows*(thumbH+panelH+gap)
	sheet := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(bg.B), float64(bg.G), float64(bg.R), 0), H, W, gocv.MatTypeCV8UC3)
	defer sheet.Close()
	// Best first, as the selection sees them.
	order := make([]int, len(ps))
	for i := range order {
		order[i] = i
	}
	sortByRankThenScore(order, ps, v)
	for k, i := range order {
		x0 := gap + (k%cols)*(thumbW+gap)
		y0 := gap + (k/cols)*(thumbH+panelH+gap)
		drawCell(&sheet, image.Pt(x0, y0), ps[i], v[i])
	}
	if filepath.Ext(out) == "" {
		out += ".png"
	}
	buf, err := gocv.IMEncode(gocv.FileExt(filepath.Ext(out)), sheet)
	if err != nil {
		return fmt.Errorf("encode sheet: %w", err)
	}
	defer buf.Close()
	return os.WriteFile(out, buf.GetBytes(), 0o644)
}

func sortByRankThenScore(order []int, ps []photo, v []verdict) {
	less := func(a, b int) bool {
		va, vb := v[a], v[b]
		if (va.rank > 0) != (vb.rank > 0) {
			return va.rank > 0
		}
		if va.rank > 0 {
			return va.rank < vb.rank
		}
		return ps[a].Score > ps[b].Score
	}
	for i := 1; i < len(order); i++ { // insertion sort: tens of photos
		for j := i; j > 0 && less(order[j], order[j-1]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
}

func drawCell(sheet *gocv.Mat, at image.Point, p photo, x verdict) {
	thumbRect := image.Rect(at.X, at.Y, at.X+thumbW, at.Y+thumbH)
	font := gocv.FontHersheySimplex
	name := filepath.Base(p.File)
	if len(name) > 34 {
		name = name[:31] + "..."
	}
	if p.Err != "" {
		gocv.Rectangle(sheet, thumbRect, red, 2)
		gocv.PutText(sheet, "invalid", image.Pt(at.X+10, at.Y+thumbH/2), font, 0.8, red, 2)
		gocv.PutText(sheet, name, image.Pt(at.X, at.Y+thumbH+18), font, 0.45, fg, 1)
		return
	}
	data, err := os.ReadFile(p.File)
	if err == nil {
		var img gocv.Mat
		img, err = score.Decode(data, 0)
		if err == nil {
			placeThumb(sheet, img, thumbRect, p.Result)
			img.Close()
		}
	}
	if x.rank > 0 {
		gocv.Rectangle(sheet, thumbRect.Inset(-4), gold, 4)
		label := fmt.Sprintf("#%d", x.rank)
		gocv.Rectangle(sheet, image.Rect(at.X, at.Y, at.X+46, at.Y+28), gold, -1)
		gocv.PutText(sheet, label, image.Pt(at.X+5, at.Y+21), font, 0.7, color.RGBA{0, 0, 0, 0}, 2)
	}
	// Name and score bar.
	ty := at.Y + thumbH + 16
	gocv.PutText(sheet, name, image.Pt(at.X, ty), font, 0.42, fg, 1)
	bar := image.Rect(at.X, ty+6, at.X+thumbW-52, ty+16)
	gocv.Rectangle(sheet, bar, barBack, -1)
	fill := bar
	fill.Max.X = bar.Min.X + int(float64(bar.Dx())*p.Score)
	gocv.Rectangle(sheet, fill, scoreColor(p.Score), -1)
	gocv.PutText(sheet, fmt.Sprintf("%.2f", p.Score), image.Pt(bar.Max.X+6, bar.Max.Y), font, 0.45, fg, 1)
	// One small bar per feature.
	slot := thumbW / len(weights.Features)
	baseY := at.Y + thumbH + barsTop + 28
	for k, f := range weights.Features {
		v := p.Breakdown[f]
		bx := at.X + k*slot
		gocv.Rectangle(sheet, image.Rect(bx+4, baseY-28, bx+slot-6, baseY), barBack, -1)
		gocv.Rectangle(sheet, image.Rect(bx+4, baseY-int(28*v), bx+slot-6, baseY), scoreColor(v), -1)
		gocv.PutText(sheet, abbrev[f], image.Pt(bx+2, baseY+12), font, 0.33, dim, 1)
	}
	if x.reason != "" {
		gocv.PutText(sheet, x.reason, image.Pt(at.X, baseY+24), font, 0.38, dim, 1)
	}
}

// placeThumb letterboxes img into r and draws the face boxes.
func placeThumb(sheet *gocv.Mat, img gocv.Mat, r image.Rectangle, res score.Result) {
	f := min(float64(r.Dx())/float64(img.Cols()), float64(r.Dy())/float64(img.Rows()))
	w, h := max(1, int(float64(img.Cols())*f)), max(1, int(float64(img.Rows())*f))
	off := image.Pt(r.Min.X+(r.Dx()-w)/2, r.Min.Y+(r.Dy()-h)/2)
	thumb := gocv.NewMat()
	defer thumb.Close()
	gocv.Resize(img, &thumb, image.Pt(w, h), 0, 0, gocv.InterpolationArea)
	if thumb.Channels() == 1 {
		gocv.CvtColor(thumb, &thumb, gocv.ColorGrayToBGR)
	}
	dst := sheet.Region(image.Rect(off.X, off.Y, off.X+w, off.Y+h))
	thumb.CopyTo(&dst)
	dst.Close()
	for _, fc := range res.Faces {
		b := image.Rect(off.X+int(float64(fc.Box.Min.X)*f), off.Y+int(float64(fc.Box.Min.Y)*f),
			off.X+int(float64(fc.Box.Max.X)*f), off.Y+int(float64(fc.Box.Max.Y)*f))
		c := cyan
		if fc.Smile > 0.5 {
			c = green
		}
		gocv.Rectangle(sheet, b, c, 2)
	}
}

// scoreColor runs from red (0) through yellow to green (1).
func scoreColor(v float64) color.RGBA {
	v = max(0, min(1, v))
	r, g := 230.0, 230.0
	if v < 0.5 {
		g = 230 * v * 2
	} else {
		r = 230 * (1 - v) * 2
	}
	return color.RGBA{uint8(r), uint8(g), 60, 0}
}
