// Package align turns a face found in a frame into the upright grey crop a
// template is computed from: it finds the eyes inside the face box, rotates
// the head so they are level, and cuts a head-and-shoulders frame around
// them. It links OpenCV and so runs only in the vision worker; the crop
// never leaves that process (only its template does).
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

// Crop returns the aligned grey crop of the face in box of grey (an 8-bit
// one-channel image): level eyes when both are found, and a frame that
// reaches from above the hair to below the chin, the way the templates
// were tuned (92x112-like proportions).
func (a *Aligner) Crop(grey gocv.Mat, box image.Rectangle) (*image.Gray, error) {
	bounds := image.Rect(0, 0, grey.Cols(), grey.Rows())
	box = box.Intersect(bounds)
	if box.Dx() < 24 || box.Dy() < 24 {
		return nil, fmt.Errorf("align: face of %dx%d is too small", box.Dx(), box.Dy())
	}
	angle := a.eyeAngle(grey, box)
	work := grey
	if math.Abs(angle) > 1 && math.Abs(angle) < 30 {
		center := image.Pt(box.Min.X+box.Dx()/2, box.Min.Y+box.Dy()/2)
		m := gocv.GetRotationMatrix2D(center, angle, 1)
		defer m.Close()
		rotated := gocv.NewMat()
		defer rotated.Close()
		gocv.WarpAffineWithParams(grey, &rotated, m, image.Pt(grey.Cols(), grey.Rows()), gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
		work = rotated
	}
	// A cascade's box runs from the brows to the mouth; widen it a little
	// and reach up for the hair and down for the chin.
	w, h := box.Dx(), box.Dy()
	head := image.Rect(box.Min.X-w*3/100, box.Min.Y-h/5, box.Max.X+w*3/100, box.Max.Y+h*7/100).Intersect(bounds)
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
		g = image.NewGray(img.Bounds())
		for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
			for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
				g.Set(x, y, img.At(x, y))
			}
		}
	}
	return g, nil
}

// eyeAngle is the rotation (degrees) that levels the two eyes found in the
// upper half of box, or 0 when there are not exactly two plausible eyes.
func (a *Aligner) eyeAngle(grey gocv.Mat, box image.Rectangle) float64 {
	upper := image.Rect(box.Min.X, box.Min.Y, box.Max.X, box.Min.Y+box.Dy()*6/10)
	region := grey.Region(upper)
	defer region.Close()
	min := image.Pt(box.Dx()/8, box.Dx()/8)
	max := image.Pt(box.Dx()/2, box.Dx()/2)
	eyes := a.eyes.DetectMultiScaleWithParams(region, 1.1, 3, 0, min, max)
	if len(eyes) < 2 {
		return 0
	}
	// The two largest, left and right of the middle.
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
		return 0
	}
	lx, ly := float64(left.Min.X+left.Dx()/2), float64(left.Min.Y+left.Dy()/2)
	rx, ry := float64(right.Min.X+right.Dx()/2), float64(right.Min.Y+right.Dy()/2)
	return math.Atan2(ry-ly, rx-lx) * 180 / math.Pi
}
