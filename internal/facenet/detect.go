package facenet

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"
	"sort"

	"gocv.io/x/gocv"
)

// Detection is one face the detector found, in pixels of the frame.
type Detection struct {
	Box   image.Rectangle
	Score float64 // the detector's confidence, 0..1
}

// DetectOptions tune Detect. Zero values take the defaults.
type DetectOptions struct {
	// Side is the long side, in pixels, the frame is scaled to (up or
	// down) before the detector sees it (padded up to a multiple of 32;
	// default DefaultDetectSide).
	Side int
	// MinScore drops weaker detections (default DefaultMinScore).
	MinScore float64
	// MaxFaces bounds the answer (default 8), largest kept.
	MaxFaces int
}

// Detection defaults, see scripts/facequality/detectors for the measurement
// behind them.
const (
	DefaultDetectSide = 416
	DefaultMinScore   = 0.3
	defaultMaxFaces   = 8
	// nmsIoU is face-api's IOU_THRESHOLD for the tiny face detector.
	nmsIoU = 0.4
)

// anchors of the tiny face detector (tinyFaceDetector/const.ts), in cells.
var anchors = [5][2]float64{
	{1.603231, 2.094468}, {6.041143, 7.080126}, {2.882459, 3.518061},
	{4.266906, 5.178857}, {9.041765, 10.66308},
}

// Detect finds the faces of a BGR (or grey) frame, largest first.
func (n *Nets) Detect(img gocv.Mat, o DetectOptions) ([]Detection, error) {
	if o.Side <= 0 {
		o.Side = DefaultDetectSide
	}
	if o.MinScore <= 0 {
		o.MinScore = DefaultMinScore
	}
	if o.MaxFaces <= 0 {
		o.MaxFaces = defaultMaxFaces
	}
	bgr, owned, err := viewBGR(img)
	if err != nil {
		return nil, err
	}
	if owned {
		defer bgr.Close()
	}
	w, h := bgr.Cols(), bgr.Rows()
	// Scale so the long side is o.Side (as face-api resizes every input to
	// its input size, small images grow), then pad right and bottom with
	// black to multiples of 32, as face-api pads to a square.
	scale := float64(o.Side) / float64(max(w, h))
	sw, sh := max(1, int(math.Round(float64(w)*scale))), max(1, int(math.Round(float64(h)*scale)))
	in := gocv.NewMatWithSize(up32(sh), up32(sw), gocv.MatTypeCV8UC3)
	defer in.Close()
	in.SetTo(gocv.NewScalar(0, 0, 0, 0))
	roi := in.Region(image.Rect(0, 0, sw, sh))
	// Bilinear, as face-api's tf.image.resizeBilinear: area averaging
	// would cost 8 ms more on a 720p frame.
	if sw == w && sh == h {
		bgr.CopyTo(&roi)
	} else {
		gocv.Resize(bgr, &roi, image.Pt(sw, sh), 0, 0, gocv.InterpolationLinear)
	}
	roi.Close()
	out, rows, cols, err := n.RawDetector(in)
	if err != nil {
		return nil, err
	}
	cellW := float64(in.Cols()) / float64(cols)
	cellH := float64(in.Rows()) / float64(rows)
	plane := rows * cols
	var dets []Detection
	for a := 0; a < len(anchors); a++ {
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				at := func(k int) float64 { return float64(out[(a*5+k)*plane+r*cols+c]) }
				score := sigmoid(at(4))
				if score < o.MinScore {
					continue
				}
				cx := (float64(c) + sigmoid(at(0))) * cellW
				cy := (float64(r) + sigmoid(at(1))) * cellH
				bw := math.Exp(math.Min(at(2), 10)) * anchors[a][0] * cellW
				bh := math.Exp(math.Min(at(3), 10)) * anchors[a][1] * cellH
				box := image.Rect(
					int(math.Round((cx-bw/2)/scale)), int(math.Round((cy-bh/2)/scale)),
					int(math.Round((cx+bw/2)/scale)), int(math.Round((cy+bh/2)/scale)),
				).Intersect(image.Rect(0, 0, w, h))
				if box.Dx() < 4 || box.Dy() < 4 {
					continue
				}
				dets = append(dets, Detection{Box: box, Score: score})
			}
		}
	}
	dets = nms(dets, nmsIoU)
	sort.SliceStable(dets, func(i, j int) bool { return area(dets[i].Box) > area(dets[j].Box) })
	if len(dets) > o.MaxFaces {
		dets = dets[:o.MaxFaces]
	}
	return dets, nil
}

// nms keeps the best-scoring boxes, dropping any that overlaps a kept one
// by more than iou (face-api's ops/nonMaxSuppression).
func nms(d []Detection, iou float64) []Detection {
	sort.SliceStable(d, func(i, j int) bool { return d[i].Score > d[j].Score })
	var keep []Detection
	for _, c := range d {
		ok := true
		for _, k := range keep {
			if IoU(c.Box, k.Box) > iou {
				ok = false
				break
			}
		}
		if ok {
			keep = append(keep, c)
		}
	}
	return keep
}

// IoU is the intersection over union of two boxes.
func IoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	i := float64(area(in))
	return i / (float64(area(a)+area(b)) - i)
}

func area(r image.Rectangle) int { return r.Dx() * r.Dy() }

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func up32(n int) int { return max(64, (n+31)/32*32) }

// viewBGR returns img itself when it is 8-bit BGR (owned false: the
// caller must not close it), else a new BGR copy (grey replicated to three
// channels, alpha dropped) the caller closes. A 40-megapixel photo is not
// copied for nothing.
func viewBGR(img gocv.Mat) (gocv.Mat, bool, error) {
	if !img.Empty() && img.Type() == gocv.MatTypeCV8UC3 && img.Cols() >= 16 && img.Rows() >= 16 {
		return img, false, nil
	}
	m, err := asBGR(img)
	return m, err == nil, err
}

// asBGR returns a new 3-channel 8-bit copy of img (grey replicated to three
// channels, alpha dropped).
func asBGR(img gocv.Mat) (gocv.Mat, error) {
	if img.Empty() || img.Cols() < 16 || img.Rows() < 16 {
		return gocv.Mat{}, fmt.Errorf("facenet: image smaller than 16x16")
	}
	out := gocv.NewMat()
	switch img.Type() {
	case gocv.MatTypeCV8UC3:
		img.CopyTo(&out)
	case gocv.MatTypeCV8UC1:
		gocv.CvtColor(img, &out, gocv.ColorGrayToBGR)
	case gocv.MatTypeCV8UC4:
		gocv.CvtColor(img, &out, gocv.ColorBGRAToBGR)
	default:
		out.Close()
		return gocv.Mat{}, fmt.Errorf("facenet: pixel type %v", img.Type())
	}
	return out, nil
}

var black = color.RGBA{A: 255}

// Merge joins the detections of two passes, largest first, dropping those
// of b that are a face of a already: overlapping it (IoU over 0.3) or with
// their centre inside it, or it inside them. Two passes at different
// scales box one face differently (a large face's box from a small input
// is looser), and one face must never count as two: enrollment keeps only
// frames with exactly one.
func Merge(a, b []Detection) []Detection {
	out := append([]Detection(nil), a...)
	for _, d := range b {
		if !slices.ContainsFunc(out, func(k Detection) bool { return Same(d.Box, k.Box) }) {
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return area(out[i].Box) > area(out[j].Box) })
	return out
}

// Same says whether two boxes are taken for one face: they overlap by an
// IoU over 0.3, or the centre of either lies inside the other.
func Same(a, b image.Rectangle) bool {
	return IoU(a, b) > 0.3 || centre(a).In(b) || centre(b).In(a)
}

func centre(r image.Rectangle) image.Point {
	return image.Pt((r.Min.X+r.Max.X)/2, (r.Min.Y+r.Max.Y)/2)
}

// DetectIn runs Detect on the part r of img scaled by k (k > 1 enlarges),
// and returns the detections in img's pixels. It serves the searches that
// look closer at part of a frame: a small face must be at least about 48
// px in the detector's input to be found (scripts/facequality/detectors),
// so a face of 36 px is searched for at k = 1.5.
func (n *Nets) DetectIn(img gocv.Mat, r image.Rectangle, k float64, o DetectOptions) ([]Detection, error) {
	r = r.Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
	if r.Dx() < 16 || r.Dy() < 16 {
		return nil, nil
	}
	region := img.Region(r)
	defer region.Close()
	o.Side = max(64, int(math.Round(float64(max(r.Dx(), r.Dy()))*k)))
	dets, err := n.Detect(region, o)
	for i := range dets {
		dets[i].Box = dets[i].Box.Add(r.Min)
	}
	return dets, err
}

// DetectTiles searches the whole of img scaled by k, one overlapping tile
// of at most tile x tile input pixels at a time, so an enlarged search
// never holds the detector's buffers for the whole enlarged frame (a
// 1280x720 frame at k = 1.5 would need about 250 MB). Tiles overlap by
// overlap input pixels: a face up to that size lies whole in one of them.
func (n *Nets) DetectTiles(img gocv.Mat, k float64, tile, overlap int, o DetectOptions) ([]Detection, error) {
	var all []Detection
	xs, ys := spans(img.Cols(), k, tile, overlap), spans(img.Rows(), k, tile, overlap)
	for _, y := range ys {
		for _, x := range xs {
			d, err := n.DetectIn(img, image.Rect(x[0], y[0], x[1], y[1]), k, o)
			if err != nil {
				return nil, err
			}
			all = Merge(all, d)
		}
	}
	return all, nil
}

// spans cuts a side of n source pixels, enlarged by k, into the fewest
// equal spans of at most tile input pixels that overlap by overlap input
// pixels.
func spans(n int, k float64, tile, overlap int) [][2]int {
	in := float64(n) * k
	parts := max(1, int(math.Ceil((in-float64(overlap))/float64(tile-overlap))))
	size := (in + float64((parts-1)*overlap)) / float64(parts) // input pixels a span
	var out [][2]int
	for i := 0; i < parts; i++ {
		a := float64(i) * (size - float64(overlap))
		out = append(out, [2]int{int(a / k), min(n, int(math.Ceil((a+size)/k)))})
	}
	return out
}

// Shrink runs the detector once on the smallest input, so OpenCV drops the
// buffers a large pass (a thorough search's tiles and enlarged passes) left
// allocated in the net.
func (n *Nets) Shrink() {
	m := gocv.NewMatWithSize(64, 64, gocv.MatTypeCV8UC3)
	defer m.Close()
	m.SetTo(gocv.NewScalar(0, 0, 0, 0))
	_, _, _, _ = n.RawDetector(m)
}
