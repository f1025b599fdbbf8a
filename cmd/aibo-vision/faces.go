package main

import (
	"cmp"
	"image"
	"math"
	"slices"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/facerec/descriptor"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// faceFinder is the worker's face pipeline: detection (the tiny face
// detector), 68 landmarks, the aligned chip and the 128-D descriptor. Only
// descriptors and head boxes leave it; chips and crops stay in this process
// and are freed before the answer is written.
type faceFinder struct {
	nets *facenet.Nets
	// scorer's own face search (cascades) is added to a thorough search,
	// so a photo about to leave is blurred wherever the scorer counted a
	// face; nil leaves it out.
	scorer *score.Scorer
}

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
	// with glasses, half a VGA frame high). About 1.5 ms.
	nearSide = 160
	// weakScore: the far pass's detections between this and the
	// detector's DefaultMinScore are looked at again, closer (the face
	// brought to closerFace px), at most maxCloser a frame: faces of
	// 12-20% of the height that the far pass only half sees.
	weakScore  = 0.03
	maxCloser  = 3
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

// faces decodes an image and returns its faces' boxes and descriptors.
// With boxesOnly no landmarks or descriptors are computed: nobody may be
// recognised, so every face is a stranger to blur.
func (f *faceFinder) faces(data []byte, maxPixels int, thorough, boxesOnly bool) (vision.FacesResult, error) {
	img, err := score.Decode(data, maxPixels)
	if err != nil {
		return vision.FacesResult{}, err
	}
	defer img.Close()
	return f.facesIn(img, thorough, boxesOnly)
}

// facesIn is faces on an image already decoded (BGR).
func (f *faceFinder) facesIn(img gocv.Mat, thorough, boxesOnly bool) (vision.FacesResult, error) {
	dets, counted, err := f.detect(img, thorough)
	if err != nil {
		return vision.FacesResult{}, err
	}
	out := vision.FacesResult{Width: img.Cols(), Height: img.Rows(), Model: facenet.DescriptorModel}
	for _, d := range dets {
		head := headBox(d.Box, img.Cols(), img.Rows())
		for _, c := range counted {
			// Where the scorer boxed this face differently, the hidden
			// region covers its box too.
			if facenet.Same(c, d.Box) {
				head = head.Union(c)
			}
		}
		face := vision.FaceTemplate{X: head.Min.X, Y: head.Min.Y, W: head.Dx(), H: head.Dy()}
		if boxesOnly {
			out.Faces = append(out.Faces, face)
			continue
		}
		v, _, err := f.nets.Describe(img, d.Box)
		if err == nil {
			face.Template, err = descriptor.Encode(v)
		}
		if err != nil {
			// A face without a descriptor is still a face: it matches
			// nobody, so it is blurred and never recorded.
			face.Template = nil
		}
		out.Faces = append(out.Faces, face)
	}
	return out, nil
}

// detect finds the faces of a frame, largest first: the far and near
// passes and the closer looks for every frame, and for a thorough search
// the enlarged passes and the scorer's cascades too. counted are the
// scorer's boxes (thorough only), each of them also among the detections
// or beside one that is the same face.
func (f *faceFinder) detect(img gocv.Mat, thorough bool) (found []facenet.Detection, counted []image.Rectangle, err error) {
	all, err := f.nets.Detect(img, facenet.DetectOptions{Side: farSide, MinScore: weakScore, MaxFaces: 16})
	if err != nil {
		return nil, nil, err
	}
	var weak []facenet.Detection
	for _, d := range all {
		if d.Score >= facenet.DefaultMinScore {
			found = append(found, d)
		} else {
			weak = append(weak, d)
		}
	}
	near, err := f.nets.Detect(img, facenet.DetectOptions{Side: nearSide})
	if err != nil {
		return nil, nil, err
	}
	found = facenet.Merge(found, near)
	slices.SortStableFunc(weak, func(a, b facenet.Detection) int { return cmp.Compare(b.Score, a.Score) })
	looked := 0
	for _, w := range weak {
		if looked == maxCloser {
			break
		}
		if slices.ContainsFunc(found, func(d facenet.Detection) bool { return facenet.Same(d.Box, w.Box) }) {
			continue
		}
		looked++
		c, side := w.Box.Min.Add(w.Box.Max).Div(2), max(w.Box.Dx(), w.Box.Dy())
		around := image.Rect(c.X-side*5/4, c.Y-side*5/4, c.X+side*5/4, c.Y+side*5/4)
		closer, err := f.nets.DetectIn(img, around, float64(closerFace)/float64(side), facenet.DetectOptions{})
		if err != nil {
			return nil, nil, err
		}
		for _, d := range closer {
			if facenet.Same(d.Box, w.Box) {
				found = facenet.Merge(found, []facenet.Detection{d})
			}
		}
	}
	if !thorough {
		return found, nil, nil
	}
	// Enlarged relative to a 1280 px long side, never beyond smallScale
	// of the image's own pixels: a small image has no small faces to find.
	long := max(img.Cols(), img.Rows())
	k := math.Min(1, 1280/float64(long))
	for _, scale := range []float64{midScale * k, smallScale * k} {
		if float64(long)*scale < farSide*5/4 {
			continue // the far pass saw the frame at about this scale
		}
		more, err := f.nets.DetectTiles(img, scale, tileSide, tileOverlap, facenet.DetectOptions{})
		if err != nil {
			return nil, nil, err
		}
		found = facenet.Merge(found, more)
	}
	f.nets.Shrink() // the large passes' buffers are not kept for the next frame
	if f.scorer != nil {
		if counted, err = f.scorer.Detect(img); err != nil {
			return nil, nil, err
		}
		for _, b := range counted {
			found = facenet.Merge(found, []facenet.Detection{{Box: b, Score: 1}})
		}
	}
	return found, counted, nil
}

// headBox grows the detector's box, which runs from the brows to the chin,
// to the whole head: the box the daemon pixelates (clean.Pixelate grows
// it by a fifth more), so a stranger's forehead, hair and ears go too.
func headBox(face image.Rectangle, w, h int) image.Rectangle {
	dx, up, down := face.Dx()*12/100, face.Dy()*35/100, face.Dy()*5/100
	return image.Rect(face.Min.X-dx, face.Min.Y-up, face.Max.X+dx, face.Max.Y+down).Intersect(image.Rect(0, 0, w, h))
}
