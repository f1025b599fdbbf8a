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
	lm, err := n.Landmarks(img, box)
	if err != nil {
		return nil, lm, err
	}
	chip, err := Chip(img, &lm)
	if err != nil {
		return nil, lm, err
	}
	defer chip.Close()
	d, err := n.RawDescriptor(chip)
	if err != nil {
		return nil, lm, err
	}
	if len(d) != DescriptorLen {
		return nil, lm, fmt.Errorf("facenet: descriptor of %d values", len(d))
	}
	for _, v := range d {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, lm, fmt.Errorf("facenet: descriptor is not finite")
		}
	}
	return d, lm, nil
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
