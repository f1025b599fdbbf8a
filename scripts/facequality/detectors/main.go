// Command detectors compares the face detectors the vision worker could
// use, as issues 10 and 19 ask: the converted tiny face detector of
// face-api (internal/facenet) at several input sizes, the worker's own
// searches built on it (facenet.Search: Patrol's, and the thorough one for
// photos about to leave, which also takes the scorer's faces), Patrol's
// proposal net alone (internal/headnet), OpenCV's
// Haar frontal cascade on the full frame and on a 640x360 downscale (the
// issue's anchors, measured the same way), and the scorer's search
// (capture/score.Detect: LBP candidates confirmed by Haar, plus the tiny
// face detector at 416). It reports, per detector, the share of faces
// found at each face height (4% to 45% of a 1280x720 frame), false boxes
// per frame, and the time per frame (p50, one OpenCV thread).
//
//	taskset -c 0 go run ./scripts/facequality/detectors -data ../shared/testdata
//
// Frames: each of ORL s1..s20 image 1, with some head around it (its
// edges carried outwards by a fifth of its size, synth.Place), placed at a
// random position in one of the three scenes without people (coffee, cat,
// rocket) with its face (brows to chin) the given share of 720 px, JPEG
// 90; and 15 frames without anyone (the scenes, jittered). A face is found
// when a box's centre lies in the face grown by a quarter and its height
// is 0.5 to 2 times the face's. Any other box is false.
package main

import (
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
	fq "github.com/aibo-privacy/aibo-privacyd/scripts/facequality/internal/frame"
)

const frameW, frameH = 1280, 720

var heights = []float64{0.04, 0.05, 0.06, 0.07, 0.10, 0.15, 0.20, 0.25, 0.45}

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
	boxes := func(d []facenet.Detection, err error) []image.Rectangle {
		if err != nil {
			log.Fatal(err)
		}
		var out []image.Rectangle
		for _, x := range d {
			out = append(out, x.Box)
		}
		return out
	}

	var dets []detector
	for _, side := range []int{160, 416, 640, 1280} {
		dets = append(dets, detector{fmt.Sprintf("tiny face detector, long side %d", side), func(m gocv.Mat) []image.Rectangle {
			return boxes(nets.Detect(m, facenet.DetectOptions{Side: side}))
		}})
	}
	dets = append(dets,
		detector{"proposal net alone (internal/headnet at 1/3, 1/6, 1/12 of the frame; its 2 best marks, each a box)", func(m gocv.Mat) []image.Rectangle {
			p, err := nets.Propose(m)
			if err != nil {
				log.Fatal(err)
			}
			var out []image.Rectangle
			for _, x := range p[:min(len(p), 2)] {
				out = append(out, x.Box)
			}
			return out
		}},
		detector{"Patrol search, one frame (facenet.Search: 320 + closer looks at weak detections + the proposals confirmed on crops, a second look equalised)", func(m gocv.Mat) []image.Rectangle {
			return boxes(nets.Search(m, facenet.Patrol))
		}},
		detector{"thorough search (photos about to leave: Search thorough + the scorer's faces)", func(m gocv.Mat) []image.Rectangle {
			b := boxes(nets.Search(m, facenet.Thorough))
			more, err := sc.Detect(m)
			if err != nil {
				log.Fatal(err)
			}
			for _, x := range more {
				if !slices.ContainsFunc(b, func(y image.Rectangle) bool { return facenet.Same(x, y) }) {
					b = append(b, x)
				}
			}
			return b
		}},
		detector{"Haar frontal default, full 1280x720 (anchor)", func(m gocv.Mat) []image.Rectangle {
			return haarDetect(&haar, m, 720)
		}},
		detector{"Haar frontal default, 640x360 downscale (anchor)", func(m gocv.Mat) []image.Rectangle {
			return haarDetect(&haar, m, 360)
		}},
		detector{"scorer's search: score.Detect (LBP + Haar confirmation, plus the tiny face detector at 416)", func(m gocv.Mat) []image.Rectangle {
			b, err := sc.Detect(m)
			if err != nil {
				log.Fatal(err)
			}
			return b
		}},
	)

	fmt.Printf("## Face detectors on %d frames with one face (ORL with some head around it, in scenes) and %d without anyone (1280x720, one OpenCV thread)\n\n", len(frames), len(empty))
	fmt.Printf("| detector |")
	for _, h := range heights {
		fmt.Printf(" %.0f%% |", 100*h)
	}
	fmt.Printf(" false boxes per frame | ms a frame with a face (p50) | ms a frame without (p50) |\n|---|")
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
			near := f.want.Inset(-f.want.Dx() / 4)
			for _, b := range boxes {
				c := image.Pt((b.Min.X+b.Max.X)/2, (b.Min.Y+b.Max.Y)/2)
				r := float64(b.Dy()) / float64(max(1, f.want.Dy()))
				if !f.want.Empty() && c.In(near) && r >= 0.5 && r <= 2 {
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
			fmt.Printf(" %.0f%% |", 100*float64(found[i])/float64(total[i]))
		}
		fmt.Printf(" %.2f | %.1f | %.1f |\n", float64(falseDet)/float64(len(frames)+len(empty)), p50(tFace), p50(tEmpty))
	}
}

func p50(d []time.Duration) float64 {
	slices.Sort(d)
	return float64(d[len(d)/2].Microseconds()) / 1000
}

// haarDetect runs the Haar cascade on the frame scaled to the given short
// side (scale 1.1, 5 neighbours, faces of 24 px and up there), as the
// issue's anchors were measured.
func haarDetect(c *gocv.CascadeClassifier, m gocv.Mat, short int) []image.Rectangle {
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(m, &grey, gocv.ColorBGRToGray)
	f := float64(short) / float64(min(m.Cols(), m.Rows()))
	small := grey
	if f != 1 {
		small = gocv.NewMat()
		defer small.Close()
		gocv.Resize(grey, &small, image.Pt(int(float64(m.Cols())*f), int(float64(m.Rows())*f)), 0, 0, gocv.InterpolationArea)
	}
	var out []image.Rectangle
	for _, r := range c.DetectMultiScaleWithParams(small, 1.1, 5, 0, image.Pt(24, 24), image.Point{}) {
		out = append(out, image.Rect(int(float64(r.Min.X)/f), int(float64(r.Min.Y)/f), int(float64(r.Max.X)/f), int(float64(r.Max.Y)/f)))
	}
	return out
}

func buildFrames(data string) (frames, empty []frame, err error) {
	scenes, err := fq.Scenes(data, fq.LoadImage)
	if err != nil {
		return nil, nil, err
	}
	rnd := rand.New(rand.NewPCG(19, 6))
	for _, sc := range scenes {
		jpgs, _ := synth.Nobody(sc).Frames(5, rnd)
		for _, j := range jpgs {
			empty = append(empty, frame{jpeg: j})
		}
	}
	for s := 1; s <= 20; s++ {
		img, err := fq.ORL(data, s, 1)
		if err != nil {
			return nil, nil, err
		}
		for hi, hf := range heights {
			p := synth.Place(scenes[(s+hi)%len(scenes)], img, int(hf*frameH), rnd)
			jpgs, at := p.Frames(1, rnd)
			frames = append(frames, frame{jpeg: jpgs[0], want: at[0], h: hi})
		}
	}
	return frames, empty, nil
}
