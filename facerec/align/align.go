// Package align turns a face found in a frame into the upright grey crop a
// template is computed from: it finds the eyes inside the face box, rotates
// the head so they are level, and cuts a head-and-shoulders frame around
// them. It links OpenCV and so runs only in the vision worker; the crop
// never leaves that process (only its template does).
//
// All the work happens on the head's neighbourhood scaled so the face box
// is BoxWidth pixels wide, never on the whole frame: the template resamples
// its input to 46x56 anyway, and the eye search and the rotation then cost
// the same for a face that fills the frame as for a small one (about 2 ms).
package align

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"path/filepath"

	"gocv.io/x/gocv"
)

// EyesCascade is the eye detector, relative to the models directory.
const EyesCascade = "haarcascades/haarcascade_eye.xml"

// BoxWidth is the width, in pixels, the face box is scaled to before the
// eyes are searched and the head is cut out.
const BoxWidth = 128

// minLevelling and maxLevelling bound the eye-line angles (degrees) that
// are corrected: below the first the template's own tolerance absorbs the
// tilt, beyond the second the "eyes" are more likely a mistake than a head
// tilted that far.
const (
	minLevelling = 3
	maxLevelling = 30
)

// Aligner holds the eye detector. Not safe for concurrent use.
type Aligner struct {
	eyes gocv.CascadeClassifier
}

// New loads the eye cascade from modelDir.
func New(modelDir string) (*Aligner, error) {
	a := &Aligner{eyes: gocv.NewCascadeClassifier()}
	if !a.eyes.Load(filepath.Join(modelDir, EyesCascade)) {
		a.eyes.Close()
		return nil, fmt.Errorf("align: cascade %s does not load", EyesCascade)
	}
	return a, nil
}

// Close frees the cascade.
func (a *Aligner) Close() error { return a.eyes.Close() }

// headFrame is the head-and-shoulders frame around a cascade's face box,
// which runs from the brows to the mouth: a little wider, up for the hair
// and down for the chin, the proportions the templates were tuned on
// (92x112-like).
func headFrame(box image.Rectangle) image.Rectangle {
	w, h := box.Dx(), box.Dy()
	return image.Rect(box.Min.X-w*3/100, box.Min.Y-h/5, box.Max.X+w*3/100, box.Max.Y+h*7/100)
}

// Crop returns the aligned grey crop of the face in box of grey (an 8-bit
// one-channel image): level eyes when both are found, framed by headFrame,
// at the scale where the box is BoxWidth pixels wide.
func (a *Aligner) Crop(grey gocv.Mat, box image.Rectangle) (*image.Gray, error) {
	bounds := image.Rect(0, 0, grey.Cols(), grey.Rows())
	box = box.Intersect(bounds)
	if box.Dx() < 24 || box.Dy() < 24 {
		return nil, fmt.Errorf("align: face of %dx%d is too small", box.Dx(), box.Dy())
	}
	// The neighbourhood holds the head frame and room to turn it.
	pad := box.Dx() / 2
	near := image.Rect(box.Min.X-pad, box.Min.Y-pad, box.Max.X+pad, box.Max.Y+pad).Intersect(bounds)
	f := float64(BoxWidth) / float64(box.Dx())
	at := func(p image.Point) image.Point { // frame pixels -> scaled neighbourhood
		return image.Pt(int(math.Round(float64(p.X-near.Min.X)*f)), int(math.Round(float64(p.Y-near.Min.Y)*f)))
	}
	roi := grey.Region(near)
	defer roi.Close()
	work := gocv.NewMat()
	defer work.Close()
	interp := gocv.InterpolationArea
	if f > 1 {
		interp = gocv.InterpolationLinear
	}
	gocv.Resize(roi, &work, image.Pt(max(1, int(math.Round(float64(near.Dx())*f))), max(1, int(math.Round(float64(near.Dy())*f)))), 0, 0, interp)
	sbox := image.Rectangle{at(box.Min), at(box.Max)}.Intersect(image.Rect(0, 0, work.Cols(), work.Rows()))

	if angle, ok := a.eyeAngle(work, sbox); ok && math.Abs(angle) >= minLevelling && math.Abs(angle) <= maxLevelling {
		center := image.Pt(sbox.Min.X+sbox.Dx()/2, sbox.Min.Y+sbox.Dy()/2)
		m := gocv.GetRotationMatrix2D(center, angle, 1)
		defer m.Close()
		rotated := gocv.NewMat()
		defer rotated.Close()
		gocv.WarpAffineWithParams(work, &rotated, m, image.Pt(work.Cols(), work.Rows()), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
		rotated.CopyTo(&work)
	}
	head := headFrame(sbox).Intersect(image.Rect(0, 0, work.Cols(), work.Rows()))
	region := work.Region(head)
	defer region.Close()
	crop := region.Clone() // a region is not continuous memory
	defer crop.Close()
	img, err := crop.ToImage()
	if err != nil {
		return nil, fmt.Errorf("align: %w", err)
	}
	g, ok := img.(*image.Gray)
	if !ok {
		return nil, fmt.Errorf("align: crop is %T, not grey", img)
	}
	return g, nil
}

// eyeAngle is the rotation (degrees) that levels the two eyes found in the
// upper part of box in grey; ok is false when there are not two plausible
// eyes: one each side of the middle, of similar size.
func (a *Aligner) eyeAngle(grey gocv.Mat, box image.Rectangle) (angle float64, ok bool) {
	upper := image.Rect(box.Min.X, box.Min.Y, box.Max.X, box.Min.Y+box.Dy()*6/10).Intersect(image.Rect(0, 0, grey.Cols(), grey.Rows()))
	if upper.Dx() < 24 || upper.Dy() < 12 {
		return 0, false
	}
	region := grey.Region(upper)
	defer region.Close()
	min := image.Pt(box.Dx()/8, box.Dx()/8)
	max := image.Pt(box.Dx()/3, box.Dx()/3)
	eyes := a.eyes.DetectMultiScaleWithParams(region, 1.1, 3, 0, min, max)
	if len(eyes) < 2 {
		return 0, false
	}
	// The largest left and right of the middle.
	var left, right *image.Rectangle
	mid := upper.Dx() / 2
	for i := range eyes {
		e := &eyes[i]
		cx := e.Min.X + e.Dx()/2
		if cx < mid && (left == nil || e.Dx() > left.Dx()) {
			left = e
		}
		if cx >= mid && (right == nil || e.Dx() > right.Dx()) {
			right = e
		}
	}
	if left == nil || right == nil {
		return 0, false
	}
	if r := float64(left.Dx()) / float64(right.Dx()); r < 2.0/3 || r > 1.5 {
		return 0, false // an eye and an eyebrow, a nostril or a frame of glasses
	}
	lx, ly := float64(left.Min.X+left.Dx()/2), float64(left.Min.Y+left.Dy()/2)
	rx, ry := float64(right.Min.X+right.Dx()/2), float64(right.Min.Y+right.Dy()/2)
	return math.Atan2(ry-ly, rx-lx) * 180 / math.Pi, true
}
