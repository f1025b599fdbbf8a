package main

import (
	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/agent/vision"
	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/facerec/descriptor"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
)

// faceFinder is the worker's face pipeline: detection (the tiny face
// detector), 68 landmarks, the aligned chip and the 128-D descriptor. Only
// descriptors and boxes leave it; chips and crops stay in this process and
// are freed before the answer is written.
type faceFinder struct {
	nets *facenet.Nets
	// side is the long side Patrol frames are scaled to for detection;
	// thorough requests add thoroughSide.
	side, thoroughSide int
}

// Detection sides. Measured with scripts/facequality/detectors (README):
// at a long side of 416 the detector finds faces from about 15% of a
// 720p frame's height in 16-18 ms on one core; at 1280 from 5%, in about
// 100 ms. Patrol frames (mostly without a face) take the first; a photo
// about to be uploaded with blur_unknown_faces takes both.
const (
	patrolSide   = 416
	thoroughSide = 1280
)

// faces decodes an image and returns its faces' boxes and descriptors.
func (f *faceFinder) faces(data []byte, maxPixels int, thorough bool) (vision.FacesResult, error) {
	img, err := score.Decode(data, maxPixels)
	if err != nil {
		return vision.FacesResult{}, err
	}
	defer img.Close()
	return f.facesIn(img, thorough)
}

// facesIn is faces on an image already decoded (BGR).
func (f *faceFinder) facesIn(img gocv.Mat, thorough bool) (vision.FacesResult, error) {
	dets, err := f.nets.Detect(img, facenet.DetectOptions{Side: f.side})
	if err != nil {
		return vision.FacesResult{}, err
	}
	if thorough {
		more, err := f.nets.Detect(img, facenet.DetectOptions{Side: f.thoroughSide})
		if err != nil {
			return vision.FacesResult{}, err
		}
		dets = facenet.Merge(dets, more)
	}
	out := vision.FacesResult{Width: img.Cols(), Height: img.Rows(), Model: facenet.DescriptorModel}
	for _, d := range dets {
		face := vision.FaceTemplate{X: d.Box.Min.X, Y: d.Box.Min.Y, W: d.Box.Dx(), H: d.Box.Dy()}
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
