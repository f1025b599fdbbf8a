package facenet

import (
	"fmt"
	"image"
	"math"
	"slices"
	"sort"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/internal/headnet"
)

// Proposal is where the proposal net says a face may be, in pixels of the
// frame: a square box about the face's height (brows to chin), and its
// score. Only a face the detector then finds there is a face.
type Proposal struct {
	Box   image.Rectangle
	Score float64
}

// maxProposals bounds what one frame's proposals may cost: each is
// confirmed by the detector on a 128 px crop (about 1.5 ms on one core).
// On trainheads' held-out split the face is among the 2 best marks
// nearly as often as among the 3 best (within 1-3 points at every size
// from 5 to 20%; the best mark alone loses 5-8 points at 5-6%).
const maxProposals = 2

// maxMarks is how many marks Propose returns: more than a frame confirms,
// so a Patrol that knows its best marks are empty places of the room
// (Tracker) confirms the next ones instead.
const maxMarks = 4

// Propose runs the proposal net (internal/headnet) on the frame in grey,
// its shadows lifted (headnet.Lift), at each of headnet.Levels (relative
// to a 1280 px long side, never enlarged), and returns the best marks,
// best first, at most maxMarks, none inside a better one.
func (n *Nets) Propose(img gocv.Mat) ([]Proposal, error) {
	bgr, owned, err := viewBGR(img)
	if err != nil {
		return nil, err
	}
	if owned {
		defer bgr.Close()
	}
	w, h := bgr.Cols(), bgr.Rows()
	k := math.Min(1, 1280/float64(max(w, h)))
	var all []Proposal
	var prev gocv.Mat // the previous level, in grey: each level is made from it
	defer func() {
		if !prev.Empty() {
			prev.Close()
		}
	}()
	for i, s := range headnet.Levels {
		scale := s * k
		rw, rh, iw, ih := headnet.InputSize(w, h, scale)
		if rw < 2*headnet.Stride || rh < 2*headnet.Stride {
			break
		}
		level := gocv.NewMat()
		if i == 0 {
			// Bilinear from less than twice the size: after the halvings'
			// area averaging, averaging again (by 1.5 for a 720p frame)
			// cost 0.75 ms more.
			grey := greyAbove(bgr, rw, rh)
			sized := gocv.NewMat()
			gocv.Resize(grey, &sized, image.Pt(rw, rh), 0, 0, gocv.InterpolationLinear)
			grey.Close()
			err := lift(sized, &level)
			sized.Close()
			if err != nil {
				level.Close()
				return nil, err
			}
		} else {
			gocv.Resize(prev, &level, image.Pt(rw, rh), 0, 0, gocv.InterpolationArea)
			prev.Close()
		}
		prev = level
		in := gocv.NewMatWithSize(ih, iw, gocv.MatTypeCV8UC1)
		in.SetTo(gocv.NewScalar(headnet.Mean, 0, 0, 0))
		roi := in.Region(image.Rect(0, 0, rw, rh))
		level.CopyTo(&roi)
		roi.Close()
		out, err := n.rawProposals(in)
		in.Close()
		if err != nil {
			return nil, err
		}
		ow, oh := headnet.OutSize(iw, ih)
		// A cell of the input is rw/w of the frame, not exactly scale.
		fx, fy := float64(w)/float64(rw), float64(h)/float64(rh)
		for _, m := range headnet.Marks(out, ow, oh, headnet.MinScore) {
			cx, cy, half := m.X*fx, m.Y*fy, m.Size*fy/2
			box := image.Rect(int(math.Round(cx-half)), int(math.Round(cy-half)), int(math.Round(cx+half)), int(math.Round(cy+half)))
			all = append(all, Proposal{Box: box, Score: m.Score})
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].Score > all[b].Score })
	var keep []Proposal
	for _, p := range all {
		if len(keep) == maxMarks {
			break
		}
		if !slices.ContainsFunc(keep, func(q Proposal) bool { return Same(p.Box, q.Box) }) {
			keep = append(keep, p)
		}
	}
	return keep, nil
}

// liftTable is headnet.LiftTable, computed once rather than in every frame.
var liftTable = headnet.LiftTable()

// lift writes grey through liftTable to dst.
func lift(grey gocv.Mat, dst *gocv.Mat) error {
	lut, err := gocv.NewMatFromBytes(1, len(liftTable), gocv.MatTypeCV8U, liftTable[:]) // a view, only read
	if err != nil {
		return fmt.Errorf("facenet: lift table: %w", err)
	}
	defer lut.Close()
	gocv.LUT(grey, lut, dst)
	return nil
}

// greyAbove returns img in grey, halved by area averaging while it stays
// at least twice w x h: OpenCV averages a 2x2 block on its fast path, where
// averaging a 720p frame straight down by 3 took 3.0 ms on one core
// against 0.3 for the halving (BenchmarkProposeLevels). The caller closes
// the result.
func greyAbove(img gocv.Mat, w, h int) gocv.Mat {
	src, owned := img, false
	for src.Cols() >= 2*w && src.Rows() >= 2*h {
		half := gocv.NewMat()
		gocv.Resize(src, &half, image.Pt(src.Cols()/2, src.Rows()/2), 0, 0, gocv.InterpolationArea)
		if owned {
			src.Close()
		}
		src, owned = half, true
	}
	grey := gocv.NewMat()
	gocv.CvtColor(src, &grey, gocv.ColorBGRToGray)
	if owned {
		src.Close()
	}
	return grey
}

// rawProposals runs the proposal net on a grey input whose sides are
// multiples of headnet.Stride: two planes (logits, log sizes) of its
// output cells.
func (n *Nets) rawProposals(in gocv.Mat) ([]float32, error) {
	if in.Type() != gocv.MatTypeCV8UC1 || in.Cols()%headnet.Stride != 0 || in.Rows()%headnet.Stride != 0 {
		return nil, fmt.Errorf("facenet: proposal input %dx%d of type %v: grey, sides multiples of %d", in.Cols(), in.Rows(), in.Type(), headnet.Stride)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.work.ProposalPixels += int64(in.Cols() * in.Rows())
	blob := gocv.BlobFromImage(in, 1/headnet.Scale, image.Pt(in.Cols(), in.Rows()), gocv.NewScalar(headnet.Mean, 0, 0, 0), false, false)
	defer blob.Close()
	n.prop.SetInput(blob, "")
	out := n.prop.Forward("")
	defer out.Close()
	v, err := out.DataPtrFloat32()
	if err != nil {
		return nil, fmt.Errorf("facenet: proposal output: %w", err)
	}
	ow, oh := headnet.OutSize(in.Cols(), in.Rows())
	if len(v) != 2*ow*oh {
		return nil, fmt.Errorf("facenet: proposal net gave %d values for %dx%d cells", len(v), ow, oh)
	}
	return append([]float32(nil), v...), nil
}
