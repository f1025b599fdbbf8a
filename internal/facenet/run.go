package facenet

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// Input normalisation of face-api: (x - mean)/255 on RGB. BlobFromImage
// takes the mean in R, G, B order when it swaps a BGR Mat to RGB.
var (
	meanFace     = gocv.NewScalar(122.782, 117.001, 104.298, 0)
	meanDetector = gocv.NewScalar(117.001, 114.697, 97.404, 0)
)

// Input sides of the fixed-size nets.
const (
	ChipSide = 150 // descriptor
	FaceSide = 112 // landmarks and expressions
)

// forward runs net on a BGR Mat of exactly w x h pixels and returns a copy
// of the output.
func forward(net *gocv.Net, img gocv.Mat, w, h int, mean gocv.Scalar) ([]float32, error) {
	if img.Empty() || img.Cols() != w || img.Rows() != h || img.Type() != gocv.MatTypeCV8UC3 {
		return nil, fmt.Errorf("facenet: net input must be a %dx%d BGR image, got %dx%d of type %v", w, h, img.Cols(), img.Rows(), img.Type())
	}
	blob := gocv.BlobFromImage(img, 1.0/255, image.Pt(w, h), mean, true, false)
	defer blob.Close()
	net.SetInput(blob, "")
	out := net.Forward("")
	defer out.Close()
	v, err := out.DataPtrFloat32()
	if err != nil {
		return nil, fmt.Errorf("facenet: net output: %w", err)
	}
	return append([]float32(nil), v...), nil
}

// RawDescriptor runs the descriptor net on a 150x150 BGR chip.
func (n *Nets) RawDescriptor(chip gocv.Mat) ([]float32, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.work.Descriptors++
	return forward(&n.descr, chip, ChipSide, ChipSide, meanFace)
}

// RawLandmarks runs the landmark net on a 112x112 BGR face: 136 values, x0
// y0 x1 y1 ..., as fractions of the side.
func (n *Nets) RawLandmarks(face gocv.Mat) ([]float32, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.work.Landmarks++
	return forward(&n.lm, face, FaceSide, FaceSide, meanFace)
}

// RawExpressions runs the expression net on a 112x112 BGR face: the
// probabilities of neutral, happy, sad, angry, fearful, disgusted,
// surprised.
func (e *ExpressionNet) RawExpressions(face gocv.Mat) ([]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return forward(&e.net, face, FaceSide, FaceSide, meanFace)
}

// RawDetector runs the detector on a BGR input whose sides are multiples of
// 32: 25 planes (5 anchors x x, y, w, h, score) of rows x cols cells.
func (n *Nets) RawDetector(in gocv.Mat) (out []float32, rows, cols int, err error) {
	if in.Cols()%32 != 0 || in.Rows()%32 != 0 || in.Cols() < 64 || in.Rows() < 64 {
		return nil, 0, 0, fmt.Errorf("facenet: detector input %dx%d: sides must be multiples of 32, at least 64", in.Cols(), in.Rows())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.work.DetectorPixels += int64(in.Cols() * in.Rows())
	out, err = forward(&n.det, in, in.Cols(), in.Rows(), meanDetector)
	rows, cols = grid(in.Rows()), grid(in.Cols())
	if err == nil && len(out) != 25*rows*cols {
		err = fmt.Errorf("facenet: detector gave %d values for %dx%d cells", len(out), rows, cols)
	}
	return out, rows, cols, err
}

// grid is the detector's cells along a side of n input pixels.
func grid(n int) int {
	n -= 2
	for i := 0; i < 5; i++ {
		n = (n + 1) / 2
	}
	return n
}
