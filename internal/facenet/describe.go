package facenet

import (
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// DescriptorLen is the length of a face descriptor.
const DescriptorLen = 128

// Describe aligns the face in box of a BGR frame by its landmarks and
// returns its 128-D descriptor and the landmarks. The chip exists only
// inside this call.
func (n *Nets) Describe(img gocv.Mat, box image.Rectangle) ([]float32, Landmarks, error) {
	d, _, lm, err := n.describe(img, box, false)
	return d, lm, err
}

// DescribeMirrored is Describe that also returns the descriptor of the
// aligned chip mirrored left to right: the same person with the head
// turned and the light coming the other way, as an enrollment sample
// (docs/PROTOCOL.md, faces). It costs a second run of the descriptor net.
func (n *Nets) DescribeMirrored(img gocv.Mat, box image.Rectangle) (d, mirror []float32, err error) {
	d, mirror, _, err = n.describe(img, box, true)
	return d, mirror, err
}

func (n *Nets) describe(img gocv.Mat, box image.Rectangle, mirrored bool) (d, mirror []float32, lm Landmarks, err error) {
	if lm, err = n.Landmarks(img, box); err != nil {
		return nil, nil, lm, err
	}
	chip, err := Chip(img, &lm)
	if err != nil {
		return nil, nil, lm, err
	}
	defer chip.Close()
	if d, err = n.descriptorOf(chip); err != nil || !mirrored {
		return d, nil, lm, err
	}
	gocv.Flip(chip, &chip, 1)
	mirror, err = n.descriptorOf(chip)
	return d, mirror, lm, err
}

// descriptorOf runs the descriptor net on an aligned chip and checks what
// it gives.
func (n *Nets) descriptorOf(chip gocv.Mat) ([]float32, error) {
	d, err := n.RawDescriptor(chip)
	if err != nil {
		return nil, err
	}
	if len(d) != DescriptorLen {
		return nil, fmt.Errorf("facenet: descriptor of %d values", len(d))
	}
	for _, v := range d {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("facenet: descriptor is not finite")
		}
	}
	return d, nil
}

// Expression labels, in the order of the expression net's output.
var Expressions = [7]string{"neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"}

// Expressions runs the expression net on a BGR face crop of any size,
// resampled to 112x112 as face-api does.
func (e *ExpressionNet) Expressions(face gocv.Mat) ([7]float32, error) {
	var out [7]float32
	bgr, err := asBGR(face)
	if err != nil {
		return out, err
	}
	defer bgr.Close()
	in := gocv.NewMat()
	defer in.Close()
	interp := gocv.InterpolationArea
	if bgr.Cols() < FaceSide {
		interp = gocv.InterpolationLinear
	}
	gocv.Resize(bgr, &in, image.Pt(FaceSide, FaceSide), 0, 0, interp)
	p, err := e.RawExpressions(in)
	if err != nil {
		return out, err
	}
	copy(out[:], p)
	return out, nil
}
