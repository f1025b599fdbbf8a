// Package score judges how good a photo is, on the device, with OpenCV
// (gocv): faces (found on a downscaled frame, confirmed at full size, and
// by the worker's face detector, internal/facenet),
// their size and placement, smiles, open eyes, sharpness measured where
// noise cannot fake it, noise, exposure and time of day, plus a perceptual
// hash for near-duplicates. Each feature lands in an explainable breakdown
// in [0, 1]; the score is the logistic model of capture/score/weights over
// it.
//
// It is linked only by the vision worker (cmd/aibo-vision) and by
// cmd/bestshot, never by the daemon: a malformed image that crashes libjpeg
// or OpenCV must take down only the worker. It reads no store, no keys and
// no network; its only files are OpenCV's cascades and the converted face
// nets.
package score

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // DecodeConfig: sizes from the header before OpenCV sees the bytes
	_ "image/png"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/smile"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
)

// DefaultModelDir is where Debian's opencv-data installs the cascades.
const DefaultModelDir = paths.OpenCVData

// MaxPixels is the largest image scored (contract section 2: 40 megapixels).
const MaxPixels = 40_000_000

// Options configure a Scorer. Zero values take the defaults.
type Options struct {
	// ModelDir holds haarcascades/ and lbpcascades/ (DefaultModelDir).
	ModelDir string
	// Nets are the face nets, shared with the caller (the worker's face
	// pipeline); nil: the Scorer loads its own from FaceModels
	// (facenet.DefaultDir) and closes them with itself.
	Nets       *facenet.Nets
	FaceModels string
	// Weights turn the breakdown into the score (weights.Defaults()).
	Weights *weights.Weights
	// MaxPixels bounds the decoded size (MaxPixels).
	MaxPixels int
}

// Face is one confirmed face.
type Face struct {
	Box      image.Rectangle // in pixels of the full image
	Smile    float64         // probability of a smile
	EyesOpen float64         // probability that the eyes are open
	// Sharpness of the face in [0, 1], noise discounted.
	Sharpness float64
}

// Result is the judgement of one photo.
type Result struct {
	Score     float64
	Breakdown map[string]float64 // feature -> [0, 1], see weights.Features
	// Measures are the raw measurements behind the breakdown, for
	// explanation and tuning: "noise_sigma" (grey levels), "luma_mean",
	// "clip_dark", "clip_bright" (fractions of the frame), "sharp_raw" (of
	// the main face, else of the frame), "frame_sharp_raw", "face_luma",
	// "candidates" (cascade hits before confirmation).
	Measures      map[string]float64
	Faces         []Face
	PHash         uint64
	Width, Height int
}

// Errors of Score.
var (
	ErrFormat   = errors.New("score: not a JPEG or PNG image")
	ErrTooLarge = errors.New("score: image too large")
	ErrDecode   = errors.New("score: image does not decode")
)

// Scorer holds the loaded models. One Scorer scores one photo at a time
// (calls are serialised); make several for parallel work.
type Scorer struct {
	mu       sync.Mutex
	detect   gocv.CascadeClassifier // on the downscaled frame
	confirm  gocv.CascadeClassifier // on a full-size crop around a candidate
	confirm2 gocv.CascadeClassifier // second opinion when the first says no
	eyes     gocv.CascadeClassifier
	nets     *facenet.Nets
	ownNets  bool
	smile    *smile.Model
	w        weights.Weights
	max      int
}

// Cascade files, relative to ModelDir.
const (
	detectCascade   = "lbpcascades/lbpcascade_frontalface.xml"
	confirmCascade  = "haarcascades/haarcascade_frontalface_default.xml"
	confirm2Cascade = "haarcascades/haarcascade_frontalface_alt2.xml"
	eyesCascade     = "haarcascades/haarcascade_eye.xml"
)

// New loads the cascades and the smile model.
func New(opts Options) (*Scorer, error) {
	if opts.ModelDir == "" {
		opts.ModelDir = DefaultModelDir
	}
	if opts.MaxPixels <= 0 {
		opts.MaxPixels = MaxPixels
	}
	if opts.FaceModels == "" {
		opts.FaceModels = facenet.DefaultDir
	}
	s := &Scorer{max: opts.MaxPixels, w: weights.Defaults(), nets: opts.Nets}
	if opts.Weights != nil {
		s.w = opts.Weights.Clone()
	}
	m, err := smile.Default()
	if err != nil {
		return nil, err
	}
	s.smile = m
	if err := CheckModels(opts.ModelDir); err != nil {
		return nil, err
	}
	if s.nets == nil {
		if s.nets, err = facenet.Load(opts.FaceModels); err != nil {
			return nil, fmt.Errorf("score: %w", err)
		}
		s.ownNets = true
	}
	s.detect = gocv.NewCascadeClassifier()
	s.confirm = gocv.NewCascadeClassifier()
	s.confirm2 = gocv.NewCascadeClassifier()
	s.eyes = gocv.NewCascadeClassifier()
	for _, c := range []struct {
		cc   *gocv.CascadeClassifier
		file string
	}{{&s.detect, detectCascade}, {&s.confirm, confirmCascade}, {&s.confirm2, confirm2Cascade}, {&s.eyes, eyesCascade}} {
		path := filepath.Join(opts.ModelDir, c.file)
		if !c.cc.Load(path) {
			s.Close()
			return nil, fmt.Errorf("score: cascade %s does not load", path)
		}
	}
	return s, nil
}

// CheckModels reports whether every cascade New needs is a readable file
// under dir. (OpenCV only logs and returns false for a missing file.)
func CheckModels(dir string) error {
	for _, f := range []string{detectCascade, confirmCascade, confirm2Cascade, eyesCascade} {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("score: cascade: %w", err)
		}
		fh.Close()
	}
	return nil
}

// Close frees the cascades.
func (s *Scorer) Close() error {
	s.detect.Close()
	s.confirm.Close()
	s.confirm2.Close()
	s.eyes.Close()
	if s.ownNets {
		s.nets.Close()
	}
	return nil
}

// Weights returns the weights the scorer uses.
func (s *Scorer) Weights() weights.Weights { return s.w.Clone() }

// Decode checks the header (JPEG or PNG only, at most maxPixels) with Go's
// own decoders, then decodes the pixels with OpenCV into a BGR Mat the
// caller must Close.
func Decode(data []byte, maxPixels int) (gocv.Mat, error) {
	if maxPixels <= 0 {
		maxPixels = MaxPixels
	}
	isJPEG := len(data) > 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF
	isPNG := len(data) > 8 && string(data[:8]) == "\x89PNG\r\n\x1a\n"
	if !isJPEG && !isPNG {
		return gocv.Mat{}, ErrFormat
	}
	if isJPEG && !jpegComplete(data) {
		return gocv.Mat{}, fmt.Errorf("%w: JPEG ends before its last scan does", ErrDecode)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("%w: header: %v", ErrDecode, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return gocv.Mat{}, fmt.Errorf("%w: %dx%d (limit %d pixels)", ErrTooLarge, cfg.Width, cfg.Height, maxPixels)
	}
	m, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if m.Empty() {
		m.Close()
		return gocv.Mat{}, ErrDecode
	}
	if m.Cols()*m.Rows() > maxPixels {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("%w: decoded %dx%d", ErrTooLarge, m.Cols(), m.Rows())
	}
	return m, nil
}

// jpegComplete reports whether an end-of-image marker follows the last
// start-of-scan marker. libjpeg pads a cut file with grey and calls it a
// success; a photo cut short is invalid. (0xFF inside scan data is always
// followed by 0x00, so neither marker can appear there by accident.)
func jpegComplete(data []byte) bool {
	sos := bytes.LastIndex(data, []byte{0xFF, 0xDA})
	eoi := bytes.LastIndex(data, []byte{0xFF, 0xD9})
	return sos > 0 && eoi > sos
}

// Score decodes an encoded photo and scores it.
func (s *Scorer) Score(data []byte, takenAt time.Time) (Result, error) {
	img, err := Decode(data, s.max)
	if err != nil {
		return Result{}, err
	}
	defer img.Close()
	return s.ScoreMat(img, takenAt)
}

// ScoreMat scores a decoded BGR (or grey) image.
func (s *Scorer) ScoreMat(img gocv.Mat, takenAt time.Time) (Result, error) {
	grey, err := toGrey(img)
	if err != nil {
		return Result{}, err
	}
	defer grey.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := newAnalysis(grey)
	a.source = img
	defer a.close()

	r := Result{Width: grey.Cols(), Height: grey.Rows(), Measures: map[string]float64{}}
	r.Faces = s.faces(a)
	r.Measures["candidates"] = float64(a.candidates)
	if len(r.Faces) > 0 {
		r.Measures["sharp_raw"] = a.faceSharpRaw
	}
	r.PHash = a.phash()
	r.Breakdown = s.breakdown(a, &r, takenAt)
	r.Score = s.w.Score(r.Breakdown)
	return r, nil
}

// Detect finds the faces of a decoded BGR (or grey) image, largest first,
// without measuring them: the same search Score makes (candidates on a
// downscaled frame, confirmed at full size), for callers that need only the
// boxes (face templates).
func (s *Scorer) Detect(img gocv.Mat) ([]image.Rectangle, error) {
	grey, err := toGrey(img)
	if err != nil {
		return nil, err
	}
	defer grey.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := newAnalysis(grey)
	a.source = img
	defer a.close()
	var boxes []image.Rectangle
	for _, f := range s.detectFaces(a) {
		boxes = append(boxes, f.Box)
	}
	return boxes, nil
}

// toGrey returns a new 8-bit grey copy of img.
func toGrey(img gocv.Mat) (gocv.Mat, error) {
	if img.Empty() || img.Cols() < 16 || img.Rows() < 16 {
		return gocv.Mat{}, fmt.Errorf("%w: image smaller than 16x16", ErrDecode)
	}
	if img.Type() != gocv.MatTypeCV8UC1 && img.Type() != gocv.MatTypeCV8UC3 && img.Type() != gocv.MatTypeCV8UC4 {
		return gocv.Mat{}, fmt.Errorf("%w: pixel type %v", ErrDecode, img.Type())
	}
	grey := gocv.NewMat()
	switch img.Channels() {
	case 1:
		img.CopyTo(&grey)
	case 3:
		gocv.CvtColor(img, &grey, gocv.ColorBGRToGray)
	default:
		gocv.CvtColor(img, &grey, gocv.ColorBGRAToGray)
	}
	return grey, nil
}

// breakdown turns measurements into features in [0, 1].
func (s *Scorer) breakdown(a *analysis, r *Result, takenAt time.Time) map[string]float64 {
	b := make(map[string]float64, len(weights.Features))
	for _, f := range weights.Features {
		b[f] = 0 // every feature present, 0 when it does not apply
	}
	sigma := a.noiseSigma()
	r.Measures["noise_sigma"] = sigma
	b[weights.Noise] = noiseScore(sigma)

	ex := a.exposure(image.Rectangle{})
	r.Measures["luma_mean"] = ex.mean
	r.Measures["clip_dark"] = ex.dark
	r.Measures["clip_bright"] = ex.bright
	exposure := ex.score()

	b[weights.TimeOfDay] = timeOfDay(takenAt)
	if len(r.Faces) == 0 {
		raw := a.sharpness(image.Rect(0, 0, a.w, a.h), sigma)
		r.Measures["sharp_raw"] = raw
		b[weights.Sharpness] = sharpScore(raw)
		b[weights.Exposure] = exposure
		return b
	}
	b[weights.Faces] = 1
	// Faces weigh by area: the main subject counts most.
	var wsum, smileSum, eyesSum, sharpSum, faceLuma float64
	placement := 1.0
	var faceEx exposureStats
	for i, f := range r.Faces {
		wt := float64(f.Box.Dx() * f.Box.Dy())
		wsum += wt
		smileSum += wt * f.Smile
		eyesSum += wt * f.EyesOpen
		sharpSum += wt * f.Sharpness
		placement = math.Min(placement, placementScore(f.Box, a.w, a.h))
		if i == 0 {
			faceEx = a.exposure(f.Box)
			faceLuma = faceEx.mean
		}
	}
	b[weights.FaceSize] = faceSizeScore(r.Faces[0].Box, a.w, a.h)
	b[weights.Placement] = placement
	b[weights.Smile] = smileSum / wsum
	b[weights.EyesOpen] = eyesSum / wsum
	// Mostly the faces' own detail (a soft background is fine), a little
	// the frame's: camera shake blurs everything.
	frame := a.sharpness(image.Rect(0, 0, a.w, a.h), sigma)
	r.Measures["frame_sharp_raw"] = frame
	b[weights.Sharpness] = 0.75*sharpSum/wsum + 0.25*sharpScore(frame)
	r.Measures["face_luma"] = faceLuma
	// The face's own exposure matters more than the frame's.
	b[weights.Exposure] = 0.4*exposure + 0.6*faceEx.faceScore()
	return b
}

// faces finds faces on a downscaled, equalised frame, confirms each at full
// size and measures it. Faces are returned largest first.
func (s *Scorer) faces(a *analysis) []Face {
	faces := s.detectFaces(a)
	sigma := a.noiseSigma()
	for i := range faces {
		f := &faces[i]
		crop := a.faceCrop(f.Box, smileCropSize)
		f.Smile = s.smile.Prob(crop)
		f.EyesOpen = s.eyesOpen(a, f.Box)
		raw := a.sharpness(f.Box, sigma)
		if i == 0 {
			a.faceSharpRaw = raw
		}
		f.Sharpness = sharpScore(raw)
	}
	return faces
}

// detectFaces finds the faces, largest first, at most maxFaces.
func (s *Scorer) detectFaces(a *analysis) []Face {
	var faces []Face
	for i, p := range detectPasses {
		if i == len(detectPasses)-1 && len(faces) == 0 {
			// Last resort before calling the photo empty: the slower,
			// more sensitive Haar cascade, on a small frame.
			for _, cand := range s.haarCandidates(a) {
				a.candidates++
				if box, ok := s.confirmFace(a, cand); ok && !overlapsAny(box, faces) {
					faces = append(faces, Face{Box: box})
				}
			}
		}
		if p.maxFace > 0 && len(faces) > 0 {
			// Small faces beside a subject already found change little
			// of the score; skip the costliest pass.
			continue
		}
		for _, cand := range s.candidates(a, p.side, p.step, p.maxFace) {
			a.candidates++
			if overlapsAny(cand, faces) {
				continue // already confirmed through another pass
			}
			box, ok := s.confirmFace(a, cand)
			if !ok || overlapsAny(box, faces) {
				continue
			}
			faces = append(faces, Face{Box: box})
		}
	}
	// The worker's face detector (the one the face pipeline and blurring
	// use) finds faces the cascades miss: turned, shaded, partly hidden.
	if dets, err := s.nets.Detect(a.source, facenet.DetectOptions{Side: netSide, MaxFaces: maxFaces}); err == nil {
		for _, d := range dets {
			a.candidates++
			if !overlapsAny(d.Box, faces) {
				faces = append(faces, Face{Box: d.Box})
			}
		}
	}
	sort.Slice(faces, func(i, j int) bool {
		return faces[i].Box.Dx()*faces[i].Box.Dy() > faces[j].Box.Dx()*faces[j].Box.Dy()
	})
	if len(faces) > maxFaces {
		faces = faces[:maxFaces]
	}
	return faces
}

// detectPasses are the LBP cascade's searches for candidates, each on the
// frame scaled so its short side is side pixels, with the given scale step,
// for faces up to maxFace pixels there (0: any). The cascade's window is 24
// px: the first pass finds faces from 13% of the frame's short side up, the
// second the same faces at other offsets (the two miss different ones),
// the third, on a frame twice as large, only the small faces (6.7% to 13%)
// the first cannot see; it runs only when the first two found no face.
// Before it, when nothing is found yet, the Haar cascade searches the frame
// at haarSide. Measured on one core at 1280x720: about 13, 6, (15) and 25 ms.
var detectPasses = []struct {
	side, step float64
	maxFace    int
}{{180, 1.1, 0}, {135, 1.1, 0}, {360, 1.1, 49}}

// Detection tunables.
const (
	// detectSide: candidates are searched on the frame scaled so its short
	// side is this long (1280x720 -> 320x180), see detectPasses.
	detectSide = 180
	// haarSide: the short side of the frame the Haar fallback searches.
	haarSide = 135
	maxFaces = 8
	// netSide: the long side the face detector sees (as Patrol frames).
	netSide = 416
	// smileCropSize: face crops are resampled to this square, the size of
	// the GENKI-4K crops the smile network learnt from.
	smileCropSize = 64
	// confirmSide: a candidate is confirmed on a crop where the face is at
	// most this many pixels wide.
	confirmSide = 72
	// confirmNeighbors: overlapping Haar hits a candidate needs at full
	// size. Real faces gather many; a cat's eye or a pattern gathers few.
	confirmNeighbors = 6
)

// candidates runs the LBP cascade on the frame scaled so its short side is
// side pixels, for faces up to maxFace pixels there (0: any), and returns
// the hits in full-size pixels.
func (s *Scorer) candidates(a *analysis, side, step float64, maxFace int) []image.Rectangle {
	small, scale := a.small()
	short := float64(min(small.Cols(), small.Rows())) // detectSide or less
	f := side / detectSide
	if f > 1 {
		// Enlarged passes look for faces the first cannot see; there is
		// nothing to enlarge in a frame that is already small.
		f = math.Min(f, float64(min(a.w, a.h))/short)
		if f < 1.2 {
			return nil
		}
	}
	m := small
	if f != 1 {
		m = gocv.NewMat()
		defer m.Close()
		src := small
		if f > 1 {
			src = a.grey // enlarge from the full frame, not from small
		}
		gocv.Resize(src, &m, image.Pt(int(float64(small.Cols())*f), int(float64(small.Rows())*f)), 0, 0, gocv.InterpolationArea)
	}
	eq := gocv.NewMat()
	defer eq.Close()
	gocv.EqualizeHist(m, &eq)
	maxSize := image.Point{}
	if maxFace > 0 {
		maxSize = image.Pt(maxFace, maxFace)
	}
	var out []image.Rectangle
	for _, c := range s.detect.DetectMultiScaleWithParams(eq, step, 1, 0, image.Pt(24, 24), maxSize) {
		k := scale / f
		out = append(out, image.Rect(int(float64(c.Min.X)*k), int(float64(c.Min.Y)*k), int(float64(c.Max.X)*k), int(float64(c.Max.Y)*k)))
	}
	return out
}

// haarCandidates runs the second confirmation cascade (Haar, slower than
// LBP but finding some faces it misses) on the frame scaled to a short side
// of haarSide pixels.
func (s *Scorer) haarCandidates(a *analysis) []image.Rectangle {
	small, scale := a.small()
	f := haarSide / float64(min(small.Cols(), small.Rows()))
	if f > 1 {
		f = 1
	}
	m := gocv.NewMat()
	defer m.Close()
	gocv.Resize(small, &m, image.Pt(int(float64(small.Cols())*f), int(float64(small.Rows())*f)), 0, 0, gocv.InterpolationArea)
	gocv.EqualizeHist(m, &m)
	var out []image.Rectangle
	for _, c := range s.confirm2.DetectMultiScaleWithParams(m, 1.1, 2, 0, image.Pt(20, 20), image.Point{}) {
		k := scale / f
		out = append(out, image.Rect(int(float64(c.Min.X)*k), int(float64(c.Min.Y)*k), int(float64(c.Max.X)*k), int(float64(c.Max.Y)*k)))
	}
	return out
}

// confirmFace runs the Haar cascade on a crop around a candidate, at full
// resolution (or scaled so the face is at most confirmSide wide), looking
// only for faces of about the candidate's size. It returns the confirmed
// box in full-image pixels.
func (s *Scorer) confirmFace(a *analysis, cand image.Rectangle) (image.Rectangle, bool) {
	pad := cand.Dx() * 3 / 10
	region := image.Rect(cand.Min.X-pad, cand.Min.Y-pad, cand.Max.X+pad, cand.Max.Y+pad).Intersect(image.Rect(0, 0, a.w, a.h))
	if region.Dx() < 24 || region.Dy() < 24 {
		return image.Rectangle{}, false
	}
	roi := a.grey.Region(region)
	defer roi.Close()
	work := roi
	f := 1.0
	if cand.Dx() > confirmSide {
		f = float64(confirmSide) / float64(cand.Dx())
		scaled := gocv.NewMat()
		defer scaled.Close()
		gocv.Resize(roi, &scaled, image.Pt(int(float64(region.Dx())*f), int(float64(region.Dy())*f)), 0, 0, gocv.InterpolationArea)
		work = scaled
	}
	side := float64(cand.Dx()) * f
	minS := int(side * 0.6)
	maxS := int(side*1.5) + 1
	if minS < 24 {
		minS = 24
	}
	best, bestIoU := image.Rectangle{}, 0.0
	for _, cc := range []*gocv.CascadeClassifier{&s.confirm, &s.confirm2} {
		for _, h := range cc.DetectMultiScaleWithParams(work, 1.08, confirmNeighbors, 0, image.Pt(minS, minS), image.Pt(maxS, maxS)) {
			box := image.Rect(region.Min.X+int(float64(h.Min.X)/f), region.Min.Y+int(float64(h.Min.Y)/f),
				region.Min.X+int(float64(h.Max.X)/f), region.Min.Y+int(float64(h.Max.Y)/f))
			if v := iou(box, cand); v > bestIoU {
				best, bestIoU = box, v
			}
		}
		if bestIoU > 0.3 {
			break
		}
	}
	if bestIoU <= 0.3 {
		return image.Rectangle{}, false
	}
	return best, true
}

// eyesOpen looks for open eyes in the upper half of the face: the Haar eye
// cascade finds open eyes and mostly misses closed ones.
func (s *Scorer) eyesOpen(a *analysis, box image.Rectangle) float64 {
	upper := image.Rect(box.Min.X, box.Min.Y+box.Dy()/6, box.Max.X, box.Min.Y+box.Dy()*11/20)
	crop := a.resizedRegion(upper, 96, 0)
	defer crop.Close()
	if crop.Empty() {
		return 0.5
	}
	eyes := s.eyes.DetectMultiScaleWithParams(crop, 1.1, 3, 0, image.Pt(12, 12), image.Pt(48, 48))
	// Keep at most one eye per side of the face.
	var left, right bool
	for _, e := range eyes {
		cx := (e.Min.X + e.Max.X) / 2
		if cx < crop.Cols()/2 {
			left = true
		} else {
			right = true
		}
	}
	switch {
	case left && right:
		return 1
	case left || right:
		return 0.6
	}
	return 0.1
}

func overlapsAny(b image.Rectangle, faces []Face) bool {
	for _, f := range faces {
		if iou(b, f.Box) > 0.3 {
			return true
		}
	}
	return false
}

func iou(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	ia := float64(in.Dx() * in.Dy())
	return ia / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ia)
}
