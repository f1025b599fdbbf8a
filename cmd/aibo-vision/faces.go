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
	// side is the long side Patrol frames are scaled to for detection;
	// thorough requests add thoroughSide.
	side, thoroughSide int
}

// Detection sides. Measured with scripts/facequality/detectors and the
// benchmarks (README): at a long side of 416 the detector finds faces from
// about 15% of a 720p frame's height in 14-17 ms on one core; at 1280 from
// about 5%, in 100-150 ms. Patrol frames (mostly without a face) take the
// first; a photo about to be uploaded with blur_unknown_faces takes both.
const (
	patrolSide   = 416
	thoroughSide = 1280
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
	dets, err := f.nets.Detect(img, facenet.DetectOptions{Side: f.side})
	if err != nil {
		return vision.FacesResult{}, err
	}
	if long := max(img.Cols(), img.Rows()); thorough && long > f.side {
		// Small faces need the frame near its own size; an image smaller
		// than that gains nothing from growing.
		more, err := f.nets.Detect(img, facenet.DetectOptions{Side: min(f.thoroughSide, long)})
		f.nets.Shrink() // the large pass's buffers are not kept for the next frame
		if err != nil {
			return vision.FacesResult{}, err
		}
		dets = facenet.Merge(dets, more)
	}
	out := vision.FacesResult{Width: img.Cols(), Height: img.Rows(), Model: facenet.DescriptorModel}
	for _, d := range dets {
		head := headBox(d.Box, img.Cols(), img.Rows())
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

// headBox grows the detector's box, which runs from the brows to the chin,
// to the whole head: the box the daemon pixelates (clean.Pixelate grows
// it by a fifth more), so a stranger's forehead, hair and ears go too.
func headBox(face image.Rectangle, w, h int) image.Rectangle {
	dx, up, down := face.Dx()*12/100, face.Dy()*35/100, face.Dy()*5/100
	return image.Rect(face.Min.X-dx, face.Min.Y-up, face.Max.X+dx, face.Max.Y+down).Intersect(image.Rect(0, 0, w, h))
}
