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
	// Patrol: the far and near passes and the closer looks, for faces
	// from about 15% of a 720p frame's height, within a Patrol frame's
	// budget.
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
// descriptor), every one for a thorough search.
func (n *Nets) Search(img gocv.Mat, reach Reach) ([]Detection, error) {
	all, err := n.Detect(img, DetectOptions{Side: farSide, MinScore: weakScore, MaxFaces: 16})
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
	near, err := n.Detect(img, DetectOptions{Side: nearSide})
	if err != nil {
		return nil, err
	}
	found = Merge(found, near)
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
		c, side := w.Box.Min.Add(w.Box.Max).Div(2), max(w.Box.Dx(), w.Box.Dy())
		around := image.Rect(c.X-side, c.Y-side, c.X+side, c.Y+side)
		closer, err := n.DetectIn(img, around, float64(closerFace)/float64(side), DetectOptions{})
		if err != nil {
			return nil, err
		}
		for _, d := range closer {
			if Same(d.Box, w.Box) {
				found = Merge(found, []Detection{d})
			}
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
