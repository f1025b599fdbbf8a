// Command detectors compares the face detectors the vision worker could
// use, as issue 10 asks: the converted tiny face detector of face-api
// (internal/facenet) at several input sizes, OpenCV's Haar frontal cascade
// on downscaled frames, and today's scorer search (capture/score.Detect:
// LBP candidates confirmed by Haar). It reports, per detector, the share
// of faces found at each face height (5% to 45% of a 1280x720 frame), false
// detections, and the time per frame with and without a face on one
// OpenCV thread.
//
//	taskset -c 0 go run ./scripts/facequality/detectors -data ../shared/testdata
//
// Frames: each face (ORL s1..s20 image 1, with hair and ears; GENKI-4K test
// crops, tight, the first 10 of each folder that are faces) pasted at a
// random place on one of the three scenes without people (coffee, cat,
// rocket), with its height the given share of 720 px, JPEG 92. A face is
// found when a detection's centre lies in the pasted rectangle and its
// height is 0.3 to 1.5 times the rectangle's. Any other detection is false.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
)

const frameW, frameH = 1280, 720

var heights = []float64{0.05, 0.07, 0.10, 0.15, 0.25, 0.45}

type frame struct {
	jpeg []byte
	want image.Rectangle // empty: no face
	h    int             // index into heights
}

type detector struct {
	name   string
	detect func(gocv.Mat) []image.Rectangle
}

func main() {
	data := flag.String("data", "../shared/testdata", "the shared test data")
	models := flag.String("models", paths.FaceModels(), "the converted face nets (make setup: build/models)")
	only := flag.String("only", "", "run only detectors whose name contains this")
	dump := flag.String("dump", "", "write the frames each detector misses into this folder")
	flag.Parse()
	log.SetFlags(0)
	score.SetThreads(1)

	frames, empty, err := buildFrames(*data)
	if err != nil {
		log.Fatal(err)
	}
	nets, err := facenet.Load(*models)
	if err != nil {
		log.Fatal(err)
	}
	defer nets.Close()
	sc, err := score.New(score.Options{Nets: nets})
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	haar := gocv.NewCascadeClassifier()
	defer haar.Close()
	if !haar.Load(filepath.Join(score.DefaultModelDir, "haarcascades/haarcascade_frontalface_default.xml")) {
		log.Fatal("haar cascade does not load")
	}

	var dets []detector
	type tiny struct {
		side     int
		minScore float64
	}
	for _, c := range []tiny{{416, 0.5}, {416, 0.4}, {416, 0.3}, {512, 0.5}, {640, 0.5}, {800, 0.5}, {1280, 0.5}} {
		dets = append(dets, detector{fmt.Sprintf("tiny face detector, long side %d, score > %.1f", c.side, c.minScore), func(m gocv.Mat) []image.Rectangle {
			d, err := nets.Detect(m, facenet.DetectOptions{Side: c.side, MinScore: c.minScore})
			if err != nil {
				log.Fatal(err)
			}
			var out []image.Rectangle
			for _, x := range d {
				out = append(out, x.Box)
			}
			return out
		}})
	}
	for _, short := range []int{360, 480} {
		dets = append(dets, detector{fmt.Sprintf("Haar frontal default, short side %d", short), func(m gocv.Mat) []image.Rectangle {
			return haarDetect(&haar, m, short)
		}})
	}
	dets = append(dets, detector{"best shot: score.Detect (LBP + Haar confirmation, plus the tiny face detector at 416)", func(m gocv.Mat) []image.Rectangle {
		b, err := sc.Detect(m)
		if err != nil {
			log.Fatal(err)
		}
		return b
	}})

	fmt.Printf("## Face detectors on %d frames with one face and %d without (1280x720, one OpenCV thread)\n\n", len(frames), len(empty))
	fmt.Printf("| detector |")
	for _, h := range heights {
		fmt.Printf(" found at %.0f%% |", 100*h)
	}
	fmt.Printf(" false detections | p50 with a face | p50 without |\n|---|")
	for range heights {
		fmt.Printf("---|")
	}
	fmt.Printf("---|---|---|\n")
	for _, d := range dets {
		if *only != "" && !strings.Contains(d.name, *only) {
			continue
		}
		found := make([]int, len(heights))
		total := make([]int, len(heights))
		falseDet := 0
		var tFace, tEmpty []time.Duration
		run := func(f frame) (bool, int, time.Duration) {
			m, err := score.Decode(f.jpeg, 0)
			if err != nil {
				log.Fatal(err)
			}
			defer m.Close()
			t0 := time.Now()
			boxes := d.detect(m)
			el := time.Since(t0)
			hit, falses := false, 0
			for _, b := range boxes {
				c := image.Pt((b.Min.X+b.Max.X)/2, (b.Min.Y+b.Max.Y)/2)
				r := float64(b.Dy()) / float64(max(1, f.want.Dy()))
				if !f.want.Empty() && c.In(f.want) && r >= 0.3 && r <= 1.5 {
					hit = true
				} else {
					falses++
				}
			}
			return hit, falses, el
		}
		for fi, f := range frames {
			hit, fl, el := run(f)
			if !hit && *dump != "" {
				os.MkdirAll(*dump, 0o755)
				os.WriteFile(filepath.Join(*dump, fmt.Sprintf("%s-%d-h%.0f.jpg", strings.Fields(d.name)[0], fi, 100*heights[f.h])), f.jpeg, 0o644)
			}
			total[f.h]++
			if hit {
				found[f.h]++
			}
			falseDet += fl
			tFace = append(tFace, el)
		}
		for _, f := range empty {
			_, fl, el := run(f)
			falseDet += fl
			tEmpty = append(tEmpty, el)
		}
		fmt.Printf("| %s |", d.name)
		for i := range heights {
			fmt.Printf(" %d/%d |", found[i], total[i])
		}
		fmt.Printf(" %d | %.1f ms | %.1f ms |\n", falseDet, p50(tFace), p50(tEmpty))
	}
}

func p50(d []time.Duration) float64 {
	slices.Sort(d)
	return float64(d[len(d)/2].Microseconds()) / 1000
}

// haarDetect runs the Haar cascade on the frame scaled to the given short
// side, for faces of 24 px and up there.
func haarDetect(c *gocv.CascadeClassifier, m gocv.Mat, short int) []image.Rectangle {
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(m, &grey, gocv.ColorBGRToGray)
	f := float64(short) / float64(min(m.Cols(), m.Rows()))
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(grey, &small, image.Pt(int(float64(m.Cols())*f), int(float64(m.Rows())*f)), 0, 0, gocv.InterpolationArea)
	gocv.EqualizeHist(small, &small)
	var out []image.Rectangle
	for _, r := range c.DetectMultiScaleWithParams(small, 1.1, 5, 0, image.Pt(24, 24), image.Point{}) {
		out = append(out, image.Rect(int(float64(r.Min.X)/f), int(float64(r.Min.Y)/f), int(float64(r.Max.X)/f), int(float64(r.Max.Y)/f)))
	}
	return out
}

func buildFrames(data string) (frames, empty []frame, err error) {
	var scenes []*image.RGBA
	for _, s := range []string{"coffee.png", "chelsea.png", "rocket.jpg"} {
		img, err := loadImage(filepath.Join(data, "scenes", s))
		if err != nil {
			return nil, nil, err
		}
		bg := synth.Fill(img, frameW, frameH)
		scenes = append(scenes, bg)
		empty = append(empty, frame{jpeg: synth.JPEG(bg, 92)})
	}
	type face struct {
		img     image.Image
		feather float64
	}
	var faces []face
	for s := 1; s <= 20; s++ {
		img, err := loadImage(filepath.Join(data, "orl_faces", fmt.Sprintf("s%d", s), "1.pgm"))
		if err != nil {
			return nil, nil, err
		}
		faces = append(faces, face{img, 0.12})
	}
	notFaces, err := lines(filepath.Join(data, "genki4k", "no_haar_face_detected.txt"))
	if err != nil {
		return nil, nil, err
	}
	for _, folder := range []string{"0", "1"} {
		dir := filepath.Join(data, "genki4k", "test_folder", folder)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, nil, err
		}
		n := 0
		for _, e := range ents {
			if n == 10 {
				break
			}
			if notFaces[e.Name()] {
				continue
			}
			img, err := loadImage(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, nil, err
			}
			faces = append(faces, face{img, 0.05})
			n++
		}
	}
	rnd := rand.New(rand.NewPCG(10, 1))
	for fi, f := range faces {
		for hi, hf := range heights {
			b := f.img.Bounds()
			h := int(hf * frameH)
			w := h * b.Dx() / b.Dy()
			x := rnd.IntN(frameW-w-20) + 10
			y := rnd.IntN(frameH-h-20) + 10
			rect := image.Rect(x, y, x+w, y+h)
			img := synth.RGBA(scenes[(fi+hi)%len(scenes)])
			synth.Paste(img, f.img, rect, f.feather)
			frames = append(frames, frame{jpeg: synth.JPEG(img, 92), want: rect, h: hi})
		}
	}
	return frames, empty, nil
}

func lines(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out[filepath.Base(strings.TrimSpace(sc.Text()))] = true
	}
	return out, sc.Err()
}

func loadImage(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if filepath.Ext(path) == ".pgm" {
		return pgm.Decode(f)
	}
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}
