package main

import (
	"fmt"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/agent/vision"
	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/facerec/align"
	"github.com/aibo-privacy/aibo-privacyd/facerec/template"
)

// faces finds the faces of an image with the scorer's detector (downscaled
// detection, confirmed at full size), aligns each by its eyes and returns
// only their templates and boxes. Crops stay in this process.
func faces(s *score.Scorer, al *align.Aligner, data []byte, maxPixels int) (vision.FacesResult, error) {
	img, err := score.Decode(data, maxPixels)
	if err != nil {
		return vision.FacesResult{}, err
	}
	defer img.Close()
	return facesIn(s, al, img)
}

// facesIn is faces on an image already decoded (BGR).
func facesIn(s *score.Scorer, al *align.Aligner, img gocv.Mat) (vision.FacesResult, error) {
	boxes, err := s.Detect(img) // detection only: no smile, eyes or sharpness
	if err != nil {
		return vision.FacesResult{}, err
	}
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(img, &grey, gocv.ColorBGRToGray)
	out := vision.FacesResult{Width: img.Cols(), Height: img.Rows()}
	for _, box := range boxes {
		crop, err := al.Crop(grey, box)
		if err != nil {
			continue // too small to recognise: treated as nobody
		}
		t, err := template.Compute(crop)
		if err != nil {
			return vision.FacesResult{}, fmt.Errorf("template: %w", err)
		}
		out.Faces = append(out.Faces, vision.FaceTemplate{X: box.Min.X, Y: box.Min.Y, W: box.Dx(), H: box.Dy(), Template: t})
	}
	return out, nil
}
