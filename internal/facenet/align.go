package facenet

import (
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// Point is a position in pixels of the frame.
type Point struct{ X, Y float64 }

// Landmarks are the 68 points of the iBUG 300-W layout (jaw 0-16, brows
// 17-26, nose 27-35, eyes 36-47, mouth 48-67), in pixels of the frame.
type Landmarks [68]Point

// Eyes returns the centres of the left and right eye as seen in the image
// (points 36-41 and 42-47).
func (l *Landmarks) Eyes() (left, right Point) {
	for i := 0; i < 6; i++ {
		left.X += l[36+i].X / 6
		left.Y += l[36+i].Y / 6
		right.X += l[42+i].X / 6
		right.Y += l[42+i].Y / 6
	}
	return left, right
}

// Bounds is the smallest rectangle holding every point.
func (l *Landmarks) Bounds() (minX, minY, maxX, maxY float64) {
	minX, minY, maxX, maxY = math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, p := range l {
		minX, maxX = math.Min(minX, p.X), math.Max(maxX, p.X)
		minY, maxY = math.Min(minY, p.Y), math.Max(maxY, p.Y)
	}
	return
}

// landmarkPasses: the landmark net runs once, on the square around the
// detection box, as face-api does. A second pass re-centred on the first
// pass's points (reference/faces/pipeline.py) costs 4.5 ms more and did no
// better on the enrollment split (scripts/facequality -calibrate: 96 of 98
// leave-one-out genuine trials either way, as with three passes).
const landmarkPasses = 1

// Landmarks finds the 68 points of the face in box (from Detect) of a BGR
// frame.
func (n *Nets) Landmarks(img gocv.Mat, box image.Rectangle) (Landmarks, error) {
	var lm Landmarks
	if box.Dx() < 8 || box.Dy() < 8 {
		return lm, fmt.Errorf("facenet: face box %v too small", box)
	}
	cx, cy := float64(box.Min.X+box.Max.X)/2, float64(box.Min.Y+box.Max.Y)/2
	side := float64(max(box.Dx(), box.Dy()))
	for pass := 0; pass < landmarkPasses; pass++ {
		face, x0, y0, s, err := squareCrop(img, cx, cy, side, FaceSide)
		if err != nil {
			return lm, err
		}
		raw, err := n.RawLandmarks(face)
		face.Close()
		if err != nil {
			return lm, err
		}
		for i := range lm {
			lm[i] = Point{x0 + float64(raw[2*i])*s, y0 + float64(raw[2*i+1])*s}
		}
		minX, minY, maxX, maxY := lm.Bounds()
		cx, cy = (minX+maxX)/2, (minY+maxY)/2
		side = math.Max(maxX-minX, maxY-minY)
		if side < 8 || math.IsNaN(side) {
			return lm, fmt.Errorf("facenet: landmarks collapsed")
		}
	}
	return lm, nil
}

// squareCrop cuts the square of side pixels centred at (cx, cy) out of img
// (black where it leaves the frame) and resamples it to out x out (area
// averaging when shrinking). It returns the crop, the square's top-left
// corner in the frame and the side in frame pixels of one crop unit
// (side), so a point p in 0..1 of the crop is at x0 + p*s.
func squareCrop(img gocv.Mat, cx, cy, side float64, out int) (gocv.Mat, float64, float64, float64, error) {
	s := int(math.Round(side))
	if s < 8 || s > 1<<14 {
		return gocv.Mat{}, 0, 0, 0, fmt.Errorf("facenet: crop of %d px", s)
	}
	x0, y0 := int(math.Round(cx-float64(s)/2)), int(math.Round(cy-float64(s)/2))
	want := image.Rect(x0, y0, x0+s, y0+s)
	have := want.Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
	if have.Empty() {
		return gocv.Mat{}, 0, 0, 0, fmt.Errorf("facenet: crop %v outside the frame", want)
	}
	canvas := gocv.NewMatWithSize(s, s, gocv.MatTypeCV8UC3)
	defer canvas.Close()
	if have != want {
		canvas.SetTo(gocv.NewScalar(0, 0, 0, 0))
	}
	src := img.Region(have)
	dst := canvas.Region(have.Sub(want.Min))
	src.CopyTo(&dst)
	src.Close()
	dst.Close()
	res := gocv.NewMat()
	interp := gocv.InterpolationArea
	if s < out {
		interp = gocv.InterpolationLinear
	}
	gocv.Resize(canvas, &res, image.Pt(out, out), 0, 0, interp)
	return res, float64(x0), float64(y0), float64(s), nil
}

// Chip geometry: dlib's get_face_chip_details (dlib/image_transforms/
// interpolation.h) maps these points of its mean face shape, padded by
// chipPadding on every side, onto a ChipSide x ChipSide square.
const chipPadding = 0.25

// meanFace is dlib's mean face shape for landmarks 17..67, x then y, in a
// unit square.
var meanFaceX = [51]float64{0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
	0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
	0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
	0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
	0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
	0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
	0.553364, 0.490127, 0.42689}

var meanFaceY = [51]float64{0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
	0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
	0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
	0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
	0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
	0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
	0.784792, 0.824182, 0.831803, 0.824182}

// chipPoints are the landmarks dlib aligns on: 27..67 without the outer
// mouth's lower half (55..59) and the inner mouth's (65..67), which move
// with expressions.
var chipPoints = func() []int {
	var p []int
	for i := 27; i <= 67; i++ {
		if (i >= 55 && i <= 59) || (i >= 65 && i <= 67) {
			continue
		}
		p = append(p, i)
	}
	return p
}()

// chipTarget is where each of chipPoints lands in the chip.
var chipTarget = func() []Point {
	out := make([]Point, len(chipPoints))
	for k, i := range chipPoints {
		out[k] = Point{
			(chipPadding + meanFaceX[i-17]) / (2*chipPadding + 1) * ChipSide,
			(chipPadding + meanFaceY[i-17]) / (2*chipPadding + 1) * ChipSide,
		}
	}
	return out
}()

// Similarity is x' = A x - B y + Tx, y' = B x + A y + Ty: a rotation by
// atan2(B, A), a scale of hypot(A, B) and a shift.
type Similarity struct{ A, B, Tx, Ty float64 }

// Apply maps p.
func (s Similarity) Apply(p Point) Point {
	return Point{s.A*p.X - s.B*p.Y + s.Tx, s.B*p.X + s.A*p.Y + s.Ty}
}

// Scale is how many chip pixels one frame pixel becomes.
func (s Similarity) Scale() float64 { return math.Hypot(s.A, s.B) }

// ChipTransform is the least-squares similarity (no reflection) taking the
// face's landmarks to dlib's mean face in the chip.
func ChipTransform(lm *Landmarks) (Similarity, error) {
	var ms, md Point
	n := float64(len(chipPoints))
	for k, i := range chipPoints {
		ms.X += lm[i].X / n
		ms.Y += lm[i].Y / n
		md.X += chipTarget[k].X / n
		md.Y += chipTarget[k].Y / n
	}
	var a, b, norm float64
	for k, i := range chipPoints {
		sx, sy := lm[i].X-ms.X, lm[i].Y-ms.Y
		dx, dy := chipTarget[k].X-md.X, chipTarget[k].Y-md.Y
		a += sx*dx + sy*dy
		b += sx*dy - sy*dx
		norm += sx*sx + sy*sy
	}
	if norm < 1e-6 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return Similarity{}, fmt.Errorf("facenet: degenerate landmarks")
	}
	t := Similarity{A: a / norm, B: b / norm}
	t.Tx = md.X - (t.A*ms.X - t.B*ms.Y)
	t.Ty = md.Y - (t.B*ms.X + t.A*ms.Y)
	return t, nil
}

// Chip warps the face to the aligned ChipSide x ChipSide BGR chip the
// descriptor expects. A face larger than the chip is first shrunk with area
// averaging, as dlib's extract_image_chip does with an image pyramid, so
// the warp does not alias.
func Chip(img gocv.Mat, lm *Landmarks) (gocv.Mat, error) {
	t, err := ChipTransform(lm)
	if err != nil {
		return gocv.Mat{}, err
	}
	src := img
	if sc := t.Scale(); sc < 0.75 {
		// Shrink the neighbourhood of the chip by about sc, then warp
		// with what is left of the transform (close to a pure rotation).
		inv := invert(t)
		minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
		for _, c := range []Point{{0, 0}, {ChipSide, 0}, {0, ChipSide}, {ChipSide, ChipSide}} {
			p := inv.Apply(c)
			minX, maxX = math.Min(minX, p.X), math.Max(maxX, p.X)
			minY, maxY = math.Min(minY, p.Y), math.Max(maxY, p.Y)
		}
		roi := image.Rect(int(minX)-2, int(minY)-2, int(maxX)+3, int(maxY)+3).Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
		if roi.Dx() < 2 || roi.Dy() < 2 {
			return gocv.Mat{}, fmt.Errorf("facenet: face outside the frame")
		}
		region := img.Region(roi)
		small := gocv.NewMat()
		w, h := max(1, int(math.Round(float64(roi.Dx())*sc))), max(1, int(math.Round(float64(roi.Dy())*sc)))
		gocv.Resize(region, &small, image.Pt(w, h), 0, 0, gocv.InterpolationArea)
		region.Close()
		defer small.Close()
		// frame -> small: p' = (p - roi.Min) * k
		kx, ky := float64(w)/float64(roi.Dx()), float64(h)/float64(roi.Dy())
		// Resize puts small's pixel centre p' at p = (p' + 0.5)/k - 0.5 +
		// roi.Min in the frame; chip = t(p).
		rx := float64(roi.Min.X) + 0.5/kx - 0.5
		ry := float64(roi.Min.Y) + 0.5/ky - 0.5
		t = Similarity{A: t.A, B: t.B, Tx: t.Tx + t.A*rx - t.B*ry, Ty: t.Ty + t.B*rx + t.A*ry}
		m := affine(t.A/kx, -t.B/ky, t.Tx, t.B/kx, t.A/ky, t.Ty)
		defer m.Close()
		return warp(small, m)
	}
	m := affine(t.A, -t.B, t.Tx, t.B, t.A, t.Ty)
	defer m.Close()
	return warp(src, m)
}

func invert(t Similarity) Similarity {
	d := t.A*t.A + t.B*t.B
	a, b := t.A/d, -t.B/d
	return Similarity{A: a, B: b, Tx: -(a*t.Tx - b*t.Ty), Ty: -(b*t.Tx + a*t.Ty)}
}

func affine(m00, m01, m02, m10, m11, m12 float64) gocv.Mat {
	m := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	for i, v := range []float64{m00, m01, m02, m10, m11, m12} {
		m.SetDoubleAt(i/3, i%3, v)
	}
	return m
}

func warp(src, m gocv.Mat) (gocv.Mat, error) {
	out := gocv.NewMat()
	gocv.WarpAffineWithParams(src, &out, m, image.Pt(ChipSide, ChipSide), gocv.InterpolationLinear, gocv.BorderConstant, black)
	if out.Empty() {
		out.Close()
		return gocv.Mat{}, fmt.Errorf("facenet: chip warp failed")
	}
	return out, nil
}
