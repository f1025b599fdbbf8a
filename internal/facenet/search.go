package facenet

import (
	"cmp"
	"image"
	"math"
	"slices"

	"gocv.io/x/gocv"
)

// The searches, measured with scripts/facequality/detectors and the
// benchmarks (README). The tiny face detector finds a face when it is
// about 48 to 150 px high in its input, so each search is the frame at a
// scale that brings one range of face sizes there.
const (
	// farSide: the whole frame at a long side of 416 px, for faces from
	// about 15-20% of a 720p frame's height (11 ms on one core).
	farSide = 416
	// patrolFarSide: Patrol's far pass, for faces from about 27% to 80%
	// of the height (61 thousand input pixels instead of 106, 7 ms on one
	// core): the proposal net covers 5-40% (internal/headnet). A Tracker
	// runs it in every other frame.
	patrolFarSide = 320
	// nearSide: the whole frame again at 160 px, for faces larger than
	// about a third of its height, which the far pass at farSide misses
	// once they are over about 150 px in its input (issue 18: a clear
	// frontal face with glasses, half a VGA frame high). About 1.5 ms (15
	// thousand input pixels for 720p). The closer looks alone find most
	// of those faces too (ORL faces 240, 300 and 360 px high in VGA
	// frames, 160 of each: 160, 159, 157 without this pass, 160 of each
	// with it); at 112 px the pass is half the cost but boxes a whole
	// scene as a face. Patrol leaves it out: its far pass sees faces up to
	// about 80% of the height, and a face is followed from the frame that
	// found it.
	nearSide = 160
	// weakScore: the far pass's detections between this and the
	// detector's DefaultMinScore are looked at again, closer (the face
	// brought to closerFace px in a 128 px input, about 1.5 ms each), at
	// most maxCloser a frame, so a cluttered scene costs at most 33
	// thousand input pixels more: faces of 12-20% of the height that the
	// far pass only half sees (80% of 15% faces found, 30% without; a
	// third look found no more).
	weakScore  = 0.03
	maxCloser  = 2
	closerFace = 64
	// A thorough search (a photo about to leave the device) adds the
	// frame at midScale and, tile by tile, at smallScale, relative to a
	// 1280 px long side: faces down to 5% of a 720p frame's height (36 px)
	// reach the detector at 54 px.
	midScale    = 0.75
	smallScale  = 1.5
	tileSide    = 640
	tileOverlap = 96
)

// Reach says how far a search looks.
type Reach int

const (
	// Patrol: the far pass (at patrolFarSide), the closer looks, and the
	// proposal net's marks confirmed by the detector, for faces from
	// about 5% of a 720p frame's height, within a Patrol frame's budget.
	Patrol Reach = iota
	// Enrol adds the frame at midScale, for faces from about 10% of the
	// height: a person enrolling where the robot stands.
	Enrol
	// Thorough adds the frame at midScale and, tile by tile, at
	// smallScale, for faces down to 4-5%: a photo about to leave.
	Thorough
)

// Search finds the faces of a frame, largest first, as far as reach: at
// most the detector's 8 largest for Patrol and enrollment (each costs a
// descriptor), every one for a thorough search. For Patrol, this is a
// frame on its own; a Tracker also follows the faces of the frame before.
func (n *Nets) Search(img gocv.Mat, reach Reach) ([]Detection, error) {
	found, _, err := n.search(img, reach, plan{far: true, confirm: maxProposals})
	return found, err
}

// plan is what a search does beyond its reach's passes: a Tracker's
// frame looks where the last frame's faces were, spreads the far pass and
// the proposals' confirmations over two frames, and does not look closer
// again at places recent frames found empty.
type plan struct {
	tracks  []image.Rectangle // the last frame's faces
	far     bool              // Patrol's far pass runs (every other frame of a Tracker)
	confirm int               // proposals confirmed at most
	empty   []emptyPlace      // looked at closely in recent frames, no face there
}

// emptyPlace is a place of the frame the detector looked at closely (a
// proposal confirmed, a weak detection looked at again) and found nothing
// in, not even a weak detection: a box and the score that asked for the
// look (the net's mark, or the far pass's weak detection: a mark, near 1,
// is looked at again where only a weak detection was found empty, never
// the other way round, and both looks are the same crop). No pixels.
type emptyPlace struct {
	box   image.Rectangle
	score float64
	frame int // the Tracker's frame it was looked at in
}

// stillEmpty says whether a look at box, asked for with score, would look
// again at a place already found empty: about the same size (within a
// quarter), its centre within 0.7 of the box's side (the proposal net's
// marks sit on cells a third to two thirds of the box apart, and a jitter
// of a pixel moves a mark to the next cell), and not asked for more
// strongly than then.
func stillEmpty(empty []emptyPlace, box image.Rectangle, score float64) bool {
	c := centre(box)
	return slices.ContainsFunc(empty, func(e emptyPlace) bool {
		side := float64(max(1, e.box.Dy()))
		ratio := float64(box.Dy()) / side
		d := c.Sub(centre(e.box))
		return ratio > 0.8 && ratio < 1.25 && math.Abs(float64(d.X)) <= 0.7*side && math.Abs(float64(d.Y)) <= 0.7*side && score <= e.score+emptyRise
	})
}

// search is Search as planned: looking also where the faces of the frame
// before were when the frame's own passes did not find them again,
// Patrol's far pass only when p.far, confirming at most p.confirm of its
// proposals and passing over p.empty. It also returns the places it
// looked at closely and found empty.
func (n *Nets) search(img gocv.Mat, reach Reach, p plan) ([]Detection, []emptyPlace, error) {
	far := farSide
	if reach == Patrol {
		far = patrolFarSide
	}
	var all []Detection
	if p.far || reach != Patrol {
		var err error
		if all, err = n.Detect(img, DetectOptions{Side: far, MinScore: weakScore, MaxFaces: 16}); err != nil {
			return nil, nil, err
		}
	}
	var found, weak []Detection
	for _, d := range all {
		if d.Score >= DefaultMinScore {
			found = append(found, d)
		} else {
			weak = append(weak, d)
		}
	}
	if reach != Patrol {
		near, err := n.Detect(img, DetectOptions{Side: nearSide})
		if err != nil {
			return nil, nil, err
		}
		found = Merge(found, near)
	}
	slices.SortStableFunc(weak, func(a, b Detection) int { return cmp.Compare(b.Score, a.Score) })
	var empty []emptyPlace
	looked := 0
	for _, w := range weak {
		if looked == maxCloser {
			break
		}
		if slices.ContainsFunc(found, func(d Detection) bool { return Same(d.Box, w.Box) }) || stillEmpty(p.empty, w.Box, w.Score) {
			continue
		}
		looked++
		closer, nothing, err := n.lookCloser(img, w.Box)
		if err != nil {
			return nil, nil, err
		}
		for _, d := range closer {
			if Same(d.Box, w.Box) {
				found = Merge(found, []Detection{d})
			}
		}
		if nothing {
			empty = append(empty, emptyPlace{box: w.Box, score: w.Score})
		}
	}
	for _, t := range p.tracks {
		if slices.ContainsFunc(found, func(d Detection) bool { return Same(d.Box, t) }) {
			continue
		}
		again, err := n.lookAt(img, t)
		if err != nil {
			return nil, nil, err
		}
		for _, d := range again {
			if Same(d.Box, t) {
				found = Merge(found, []Detection{d})
			}
		}
	}
	if reach == Patrol {
		// Faces of 5-20% of the height, too small for the far pass: the
		// proposal net says where to look, the detector decides.
		props, err := n.Propose(img)
		if err != nil {
			return nil, nil, err
		}
		confirm := p.confirm
		for _, m := range props {
			if slices.ContainsFunc(found, func(d Detection) bool { return Same(d.Box, m.Box) }) || stillEmpty(p.empty, m.Box, m.Score) {
				continue
			}
			if confirm == 0 {
				break
			}
			confirm--
			confirmed, nothing, err := n.lookCloser(img, m.Box)
			if err != nil {
				return nil, nil, err
			}
			if nothing {
				empty = append(empty, emptyPlace{box: m.Box, score: m.Score})
			}
			found = Merge(found, confirmed)
		}
	}
	if reach == Patrol {
		return found[:min(len(found), defaultMaxFaces)], empty, nil
	}
	// Enlarged relative to a 1280 px long side, never beyond smallScale
	// of the image's own pixels: a small image has no small faces to find.
	long := max(img.Cols(), img.Rows())
	k := math.Min(1, 1280/float64(long))
	scales := []float64{midScale * k, smallScale * k}
	if reach == Enrol {
		scales = scales[:1]
	}
	for _, scale := range scales {
		if float64(long)*scale < farSide*5/4 {
			continue // the far pass saw the frame at about this scale
		}
		more, err := n.DetectTiles(img, scale, tileSide, tileOverlap, DetectOptions{})
		if err != nil {
			return nil, nil, err
		}
		found = Merge(found, more)
	}
	n.Shrink() // the large passes' buffers are not kept for the next frame
	if reach == Enrol {
		found = found[:min(len(found), defaultMaxFaces)]
	}
	// A thorough search keeps every face: each one not recognised is
	// blurred.
	return found, empty, nil
}

// lookAt runs the detector on the square around a face's box (twice its
// side), brought to a closerInput px input: the face is then about
// closerFace px there, where the detector finds it best.
func (n *Nets) lookAt(img gocv.Mat, face image.Rectangle) ([]Detection, error) {
	found, _, err := n.lookCloser(img, face)
	return found, err
}

// lookCloser is lookAt, and also says whether the place is empty: not even
// a weak detection (weakScore) there. A face the detector only half sees
// (a small one, in a frame where it misses it, or one under a hard side
// light) is not empty, and is looked at once more with the crop's
// contrast equalised (equalised).
func (n *Nets) lookCloser(img gocv.Mat, face image.Rectangle) (found []Detection, empty bool, err error) {
	c, side := face.Min.Add(face.Max).Div(2), max(face.Dx(), face.Dy(), 4)
	around := image.Rect(c.X-side, c.Y-side, c.X+side, c.Y+side)
	k := float64(closerFace) / float64(side)
	n.countLook()
	all, err := n.DetectIn(img, around, k, DetectOptions{MinScore: weakScore, MaxFaces: 16})
	if err != nil {
		return nil, false, err
	}
	empty, there := true, false
	for _, d := range all {
		if d.Score >= DefaultMinScore {
			found = append(found, d)
			there = there || Same(d.Box, face)
		}
		if Same(d.Box, face) {
			empty = false
		}
	}
	if !empty && !there {
		n.countLook()
		again, err := n.equalised(img, around, k)
		if err != nil {
			return nil, false, err
		}
		for _, d := range again {
			if Same(d.Box, face) {
				found = Merge(found, []Detection{d})
			}
		}
	}
	return found[:min(len(found), defaultMaxFaces)], empty, nil
}

func (n *Nets) countLook() {
	n.mu.Lock()
	n.work.CloserLooks++
	n.mu.Unlock()
}

// equalised runs the detector on the part r of img scaled by k, as
// DetectIn, with the crop's contrast equalised first (CLAHE on its grey,
// clip limit 4, 4x4 tiles). A face under a hard light from one side (half
// of it in deep shadow) is often only half seen by the detector: on ORL's
// probe images (s1-s20, 6-10) relit from one side (synth.SideLight) and
// placed at 6% and 10% of a 720p frame's height, the plain crop confirmed
// 84 and 86 of 100 where the detector half saw 16 and 14 more, and
// equalised it found nearly all of those. The clip limit and tiles were
// chosen on the enrollment images (s1-s20, 1-5, and their mirror images,
// relit, at 6% and 10%: 393 of 400 confirmed with clip 4 and 4x4 or clip 2
// and 8x8 tiles, 391 with clip 2 and 4x4; 399 under even light); none
// confirmed any of the 58 places the proposal net marks in the three
// scenes without anyone. Only places where the detector half sees
// something are looked at again (issue 19, point 2).
func (n *Nets) equalised(img gocv.Mat, r image.Rectangle, k float64) ([]Detection, error) {
	r = r.Intersect(image.Rect(0, 0, img.Cols(), img.Rows()))
	if r.Dx() < 16 || r.Dy() < 16 {
		return nil, nil
	}
	region := img.Region(r)
	defer region.Close()
	bgr, owned, err := viewBGR(region)
	if err != nil {
		return nil, err
	}
	if owned {
		defer bgr.Close()
	}
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(bgr, &grey, gocv.ColorBGRToGray)
	clahe := gocv.NewCLAHEWithParams(4, image.Pt(4, 4))
	defer clahe.Close()
	eq := gocv.NewMat()
	defer eq.Close()
	clahe.Apply(grey, &eq)
	dets, err := n.Detect(eq, DetectOptions{Side: max(64, int(math.Round(float64(max(r.Dx(), r.Dy()))*k)))})
	for i := range dets {
		dets[i].Box = dets[i].Box.Add(r.Min)
	}
	return dets, err
}

// maxTracks bounds the faces a Patrol follows from frame to frame.
const maxTracks = 4

// A place a Patrol looked at closely and found empty (not even a weak
// detection there) is not looked at again for emptyFrames frames, unless
// it is asked for with a score more than emptyRise higher; at most
// maxEmpty such places are kept. A room has places the proposal net takes
// for a face (a lamp, a pattern; the rocket scene the benchmarks use has
// six marked over 0.89): on a robot that stands still, confirming them
// again in every frame was most of the cost of a frame without anyone
// (2.3 ms each), and the looks go to the next marks instead. A face that
// comes to lie exactly there, at that size, waits at most emptyFrames
// frames (a person stays in view for seconds).
const (
	emptyFrames = 15
	emptyRise   = 0.05
	maxEmpty    = 16
)

// Tracker searches the frames of a patrol one after the other, as the
// worker receives them. A face found in one frame that the next frame's
// own passes do not find again is looked for where it was (the detector
// on a crop around it, about 1.5 ms), so a person who stays in view is
// found again even when the proposals miss them this time; a face is
// reported only where the detector finds one in this frame. It spreads
// the far pass and the confirmation of the proposals over two frames, and
// does not look closer again, for a few frames, at a place it found empty.
// It keeps only boxes: the last frame's faces and the recent empty places;
// no pixels, no descriptors. Not safe for concurrent use.
type Tracker struct {
	nets   *Nets
	size   image.Point
	tracks []image.Rectangle
	empty  []emptyPlace
	frames int
}

// NewTracker starts a patrol with nothing followed.
func NewTracker(n *Nets) *Tracker { return &Tracker{nets: n} }

// Search finds the faces of the patrol's next frame (as Nets.Search with
// Patrol, looking also where the faces of the frame before were).
func (p *Tracker) Search(img gocv.Mat) ([]Detection, error) {
	size := image.Pt(img.Cols(), img.Rows())
	if size != p.size {
		p.tracks, p.empty = nil, nil
	}
	// Spread over two frames: the far pass (faces from about 27% of the
	// height, and the weak detections looked at closer) runs in every
	// other frame, where one proposal is confirmed; the frames between
	// confirm two (a face the net ranks second is still looked at within
	// two frames, for 1.5 confirmations a frame rather than 2). A face one
	// frame found is looked for where it was in the next (the tracks), and
	// the proposal net covers 5-40% of the height in every frame. While a
	// face of the far pass's sizes (a quarter of the height or more) is
	// followed, the far pass runs in every frame: that face's box then
	// comes from the same pass in every frame (with the far pass in every
	// other frame only, side-lit strangers' close-ups were taken for
	// family 1-8 times in 4,000 by scripts/facequality, none with it in
	// every frame).
	p.frames++
	far := p.frames%2 == 1 || slices.ContainsFunc(p.tracks, func(t image.Rectangle) bool { return t.Dy()*4 >= size.Y })
	confirm := maxProposals
	if far {
		confirm--
	}
	p.empty = slices.DeleteFunc(p.empty, func(e emptyPlace) bool { return p.frames-e.frame >= emptyFrames })
	found, empty, err := p.nets.search(img, Patrol, plan{tracks: p.tracks, far: far, confirm: confirm, empty: p.empty})
	if err != nil {
		p.tracks, p.empty = nil, nil
		return nil, err
	}
	p.size, p.tracks = size, p.tracks[:0]
	for _, d := range found[:min(len(found), maxTracks)] {
		p.tracks = append(p.tracks, d.Box)
	}
	for _, e := range empty {
		e.frame = p.frames
		p.empty = append(p.empty, e)
	}
	p.empty = p.empty[max(0, len(p.empty)-maxEmpty):]
	return found, nil
}
