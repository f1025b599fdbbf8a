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
	// patrolFarSide: Patrol's far pass, for faces from about 27% of the
	// height (61 thousand input pixels instead of 106): the proposal net
	// covers 5-40% (internal/headnet), so the far pass is paid for.
	patrolFarSide = 320
	// nearSide: the whole frame again at 160 px, for faces larger than
	// about a third of its height, which the far pass misses once they
	// are over about 150 px in its input (issue 18: a clear frontal face
	// with glasses, half a VGA frame high). About 1.5 ms (15 thousand
	// input pixels for 720p). The closer looks alone find most of those
	// faces too (ORL faces 240, 300 and 360 px high in VGA frames, 160
	// of each: 160, 159, 157 without this pass, 160 of each with it); at
	// 112 px the pass is half the cost but boxes a whole scene as a face.
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
	// Patrol: the far pass (at patrolFarSide) and the near pass, the
	// closer looks, and the proposal net's marks confirmed by the
	// detector, for faces from about 5% of a 720p frame's height, within
	// a Patrol frame's budget.
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
	return n.search(img, reach, plan{confirm: maxProposals, near: true})
}

// plan is what a search does beyond its reach's passes: a Tracker's
// frame looks where the last frame's faces were, and spreads the near
// pass and the proposals' confirmations over two frames.
type plan struct {
	tracks  []image.Rectangle // the last frame's faces
	confirm int               // proposals confirmed at most
	near    bool              // the near pass runs
}

// search is Search as planned: looking also where the faces of the frame
// before were when the frame's own passes did not find them again,
// confirming at most p.confirm of Patrol's proposals, the near pass only
// when p.near.
func (n *Nets) search(img gocv.Mat, reach Reach, p plan) ([]Detection, error) {
	far := farSide
	if reach == Patrol {
		far = patrolFarSide
	}
	all, err := n.Detect(img, DetectOptions{Side: far, MinScore: weakScore, MaxFaces: 16})
	if err != nil {
		return nil, err
	}
	var found, weak []Detection
	for _, d := range all {
		if d.Score >= DefaultMinScore {
			found = append(found, d)
		} else {
			weak = append(weak, d)
		}
	}
	if p.near || reach != Patrol {
		near, err := n.Detect(img, DetectOptions{Side: nearSide})
		if err != nil {
			return nil, err
		}
		found = Merge(found, near)
	}
	slices.SortStableFunc(weak, func(a, b Detection) int { return cmp.Compare(b.Score, a.Score) })
	looked := 0
	for _, w := range weak {
		if looked == maxCloser {
			break
		}
		if slices.ContainsFunc(found, func(d Detection) bool { return Same(d.Box, w.Box) }) {
			continue
		}
		looked++
		closer, err := n.lookAt(img, w.Box)
		if err != nil {
			return nil, err
		}
		for _, d := range closer {
			if Same(d.Box, w.Box) {
				found = Merge(found, []Detection{d})
			}
		}
	}
	for _, t := range p.tracks {
		if slices.ContainsFunc(found, func(d Detection) bool { return Same(d.Box, t) }) {
			continue
		}
		again, err := n.lookAt(img, t)
		if err != nil {
			return nil, err
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
			return nil, err
		}
		confirm := p.confirm
		for _, m := range props {
			if slices.ContainsFunc(found, func(d Detection) bool { return Same(d.Box, m.Box) }) {
				continue
			}
			if confirm == 0 {
				break
			}
			confirm--
			confirmed, err := n.lookAt(img, m.Box)
			if err != nil {
				return nil, err
			}
			found = Merge(found, confirmed)
		}
	}
	if reach == Patrol {
		return found[:min(len(found), defaultMaxFaces)], nil
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
			return nil, err
		}
		found = Merge(found, more)
	}
	n.Shrink() // the large passes' buffers are not kept for the next frame
	if reach == Enrol {
		found = found[:min(len(found), defaultMaxFaces)]
	}
	// A thorough search keeps every face: each one not recognised is
	// blurred.
	return found, nil
}

// lookAt runs the detector on the square around a face's box (twice its
// side), brought to a closerInput px input: the face is then about
// closerFace px there, where the detector finds it best.
func (n *Nets) lookAt(img gocv.Mat, face image.Rectangle) ([]Detection, error) {
	c, side := face.Min.Add(face.Max).Div(2), max(face.Dx(), face.Dy(), 4)
	around := image.Rect(c.X-side, c.Y-side, c.X+side, c.Y+side)
	return n.DetectIn(img, around, float64(closerFace)/float64(side), DetectOptions{})
}

// maxTracks bounds the faces a Patrol follows from frame to frame.
const maxTracks = 4

// Tracker searches the frames of a patrol one after the other, as the
// worker receives them. A face found in one frame that the next frame's
// own passes do not find again is looked for where it was (the detector
// on a crop around it, about 1.5 ms), so a person who stays in view is
// found again even when the proposals miss them this time; a face is
// reported only where the detector finds one in this frame. It spreads
// the near pass and the confirmation of the proposals over two frames. It keeps only
// the boxes of the last frame's faces: no pixels, no descriptors. Not
// safe for concurrent use.
type Tracker struct {
	nets   *Nets
	size   image.Point
	tracks []image.Rectangle
	frames int
}

// NewTracker starts a patrol with nothing followed.
func NewTracker(n *Nets) *Tracker { return &Tracker{nets: n} }

// Search finds the faces of the patrol's next frame (as Nets.Search with
// Patrol, looking also where the faces of the frame before were).
func (p *Tracker) Search(img gocv.Mat) ([]Detection, error) {
	size := image.Pt(img.Cols(), img.Rows())
	if size != p.size {
		p.tracks = nil
	}
	// Spread over two frames: the best proposal is confirmed in every
	// frame, the second in every other one (a face the net ranks second is
	// still looked at within two frames, for 1.5 confirmations a frame
	// rather than 2), and the near pass, for faces over about half the
	// height, runs in the frames that confirm one (such a face is followed
	// from the frame that found it; the far pass sees up to about 80%).
	p.frames++
	odd := p.frames%2 == 1
	confirm := maxProposals
	if odd {
		confirm--
	}
	found, err := p.nets.search(img, Patrol, plan{tracks: p.tracks, confirm: confirm, near: odd})
	if err != nil {
		p.tracks = nil
		return nil, err
	}
	p.size, p.tracks = size, p.tracks[:0]
	for _, d := range found[:min(len(found), maxTracks)] {
		p.tracks = append(p.tracks, d.Box)
	}
	return found, nil
}
