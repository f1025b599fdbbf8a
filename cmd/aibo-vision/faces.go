package main

import (
	"image"

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
	// patrol searches Patrol frames one after the other, following the
	// faces of the frame before (their boxes only); nil searches each
	// frame on its own.
	patrol *facenet.Tracker
}

// faces decodes an image and returns its faces' boxes and descriptors,
// searched as far as reach. With boxesOnly no landmarks or descriptors are
// computed: nobody may be recognised, so every face is a stranger to blur.
func (f *faceFinder) faces(data []byte, maxPixels int, reach facenet.Reach, boxesOnly bool) (vision.FacesResult, error) {
	img, err := score.Decode(data, maxPixels)
	if err != nil {
		return vision.FacesResult{}, err
	}
	defer img.Close()
	return f.facesIn(img, reach, boxesOnly)
}

// facesIn is faces on an image already decoded (BGR).
func (f *faceFinder) facesIn(img gocv.Mat, reach facenet.Reach, boxesOnly bool) (vision.FacesResult, error) {
	dets, counted, err := f.detect(img, reach)
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
			face.Template, err = descriptor.Encode(v, d.Box.Dy())
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

// detect finds the faces of a frame, largest first (facenet.Search), and
// for a thorough search adds the scorer's own: counted are the scorer's
// boxes, each of them also among the detections or beside one that is the
// same face.
func (f *faceFinder) detect(img gocv.Mat, reach facenet.Reach) (found []facenet.Detection, counted []image.Rectangle, err error) {
	if reach == facenet.Patrol && f.patrol != nil {
		found, err = f.patrol.Search(img)
		return found, nil, err
	}
	if found, err = f.nets.Search(img, reach); err != nil || reach != facenet.Thorough || f.scorer == nil {
		return found, nil, err
	}
	if counted, err = f.scorer.Detect(img); err != nil {
		return nil, nil, err
	}
	for _, b := range counted {
		found = facenet.Merge(found, []facenet.Detection{{Box: b, Score: 1}})
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

// reachOf is how far a request asks the search to look.
func reachOf(req vision.Faces) facenet.Reach {
	switch {
	case req.Thorough:
		return facenet.Thorough
	case req.Enrollment:
		return facenet.Enrol
	}
	return facenet.Patrol
}
