// Command pipeline measures face recognition on ORL through the vision
// worker's own pipeline, not on the raw crops: every ORL image is tripled
// into a 1280x720 camera frame, JPEG encoded, then decoded, detected
// (capture/score), aligned (facerec/align) and templated (facerec/template)
// exactly as cmd/aibo-vision/faces.go does.
//
//	go run ./scripts/facequality/pipeline -data ../shared/testdata
//	go run ./scripts/facequality/pipeline -data ../shared/testdata -context flat
//
// ORL images end at the hair and ears. By default the face's edge pixels
// are carried outwards around it, as a scene continues around a head; with
// -context flat the face sits on uniform grey (as cmd/aibo-vision's tests
// paste it), which puts a hard edge inside the head frame.
//
// Protocol (as scripts/facequality): s1..s20 enrolled with images 1-5,
// probed with images 6-10; s21..s40 are strangers (all ten images). Galleries
// of 1, 2, 3 and 5 people are random draws among s1..s20 (fixed seed,
// -draws of them), the gallery of 20 is everybody. A frame where no face is
// found near the pasted one gives no template: an enrollment sample is then
// missing, a genuine probe counts as not correct and a stranger as not
// accepted (the count is reported). Decisions use the shipped
// template.Threshold and Reference; template.Calibrate is also run on the
// pipeline's enrollment templates and its values printed.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/facerec/align"
	"github.com/aibo-privacy/aibo-privacyd/facerec/template"
	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
)

type img struct{ s, i int }

func main() {
	data := flag.String("data", "../shared/testdata", "folder holding orl_faces/")
	draws := flag.Int("draws", 20, "random galleries per small size")
	context := flag.String("context", "replicate", "what surrounds the pasted face: replicate (its edge pixels carried outwards, as a scene continues around a head) or flat (uniform grey, a hard edge inside the head frame)")
	flag.Parse()
	log.SetFlags(0)

	s, err := score.New(score.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	al, err := align.New(score.DefaultModelDir)
	if err != nil {
		log.Fatal(err)
	}
	defer al.Close()

	tmpl := map[img]template.Template{}
	missed := 0
	for sj := 1; sj <= 40; sj++ {
		for i := 1; i <= 10; i++ {
			g, err := readPGM(filepath.Join(*data, "orl_faces", fmt.Sprintf("s%d", sj), fmt.Sprintf("%d.pgm", i)))
			if err != nil {
				log.Fatal(err)
			}
			frame, want := frame720(g, *context == "replicate")
			t, err := pipelineTemplate(s, al, frame, want)
			if err != nil {
				log.Fatalf("s%d/%d: %v", sj, i, err)
			}
			if t == nil {
				missed++
				continue
			}
			tmpl[img{sj, i}] = t
		}
	}

	cal, err := calibrate(tmpl)
	if err != nil {
		log.Fatal(err)
	}
	type row struct {
		k, draws                              int
		genuine, correct, strangers, accepted int
	}
	var rows []row
	for _, k := range []int{1, 2, 3, 5, 20} {
		n := *draws
		if k == 20 {
			n = 1
		}
		r := row{k: k, draws: n}
		rnd := rand.New(rand.NewPCG(uint64(k), 1))
		for d := 0; d < n; d++ {
			people := rnd.Perm(20)[:k]
			for i := range people {
				people[i]++
			}
			g, c, st, a := protocol(tmpl, people)
			r.genuine += g
			r.correct += c
			r.strangers += st
			r.accepted += a
		}
		rows = append(rows, r)
	}

	fmt.Printf("## ORL through the worker pipeline (frame 1280x720, face x3, context %s, JPEG 90 -> score.Detect -> align.Crop -> template.Compute)\n\n", *context)
	fmt.Printf("Faces found: %d of 400 frames (%d missed). Shipped: Threshold %.3f, Reference %.1f. template.Calibrate on the pipeline's enrollment templates (s1..s20, images 1-5): Threshold %.4f, Reference %.2f.\n\n",
		400-missed, missed, template.Threshold, template.Reference, cal.Threshold, cal.Reference)
	fmt.Printf("| people enrolled | galleries | correct | strangers accepted |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Printf("| %d | %d | %s (%d/%d) | %s (%d/%d) |\n", r.k, r.draws,
			pct(r.correct, r.genuine), r.correct, r.genuine, pct(r.accepted, r.strangers), r.accepted, r.strangers)
	}
}

// frame720 pastes face (tripled) into a 1280x720 grey frame at (540,200)
// and returns the JPEG and the face's place. With replicate, the face's
// edge pixels are carried 120 px outwards first: ORL images end right at
// the hair and ears, and a flat background would put a hard edge inside
// the head frame that no camera frame has.
func frame720(face *image.Gray, replicate bool) ([]byte, image.Rectangle) {
	w, h := face.Bounds().Dx()*3, face.Bounds().Dy()*3
	im := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	draw.Draw(im, im.Bounds(), image.NewUniform(color.Gray{Y: 70}), image.Point{}, draw.Src)
	x0, y0 := 540, 200
	m := 0
	if replicate {
		m = 120
	}
	for y := -m; y < h+m; y++ {
		for x := -m; x < w+m; x++ {
			yy, xx := min(max(y, 0), h-1), min(max(x, 0), w-1)
			v := face.Pix[(yy/3)*face.Stride+xx/3]
			i := im.PixOffset(x0+x, y0+y)
			im.Pix[i], im.Pix[i+1], im.Pix[i+2], im.Pix[i+3] = v, v, v, 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, im, &jpeg.Options{Quality: 90}); err != nil {
		log.Fatal(err)
	}
	return buf.Bytes(), image.Rect(x0, y0, x0+w, y0+h)
}

// pipelineTemplate does what cmd/aibo-vision/faces.go does and returns the
// template of the detected face whose centre lies in want and is nearest
// its centre, or nil when there is none.
func pipelineTemplate(s *score.Scorer, al *align.Aligner, data []byte, want image.Rectangle) (template.Template, error) {
	m, err := score.Decode(data, score.MaxPixels)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	boxes, err := s.Detect(m)
	if err != nil {
		return nil, err
	}
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(m, &grey, gocv.ColorBGRToGray)
	c := image.Pt((want.Min.X+want.Max.X)/2, (want.Min.Y+want.Max.Y)/2)
	best, bestD := -1, math.Inf(1)
	for i, b := range boxes {
		bc := image.Pt((b.Min.X+b.Max.X)/2, (b.Min.Y+b.Max.Y)/2)
		if !bc.In(want) {
			continue
		}
		d := math.Hypot(float64(bc.X-c.X), float64(bc.Y-c.Y))
		if d < bestD {
			best, bestD = i, d
		}
	}
	if best < 0 {
		return nil, nil
	}
	crop, err := al.Crop(grey, boxes[best])
	if err != nil {
		return nil, nil
	}
	return template.Compute(crop)
}

func gallery(tmpl map[img]template.Template, people []int, skip img, skipPerson int) *template.Gallery {
	g := template.NewGallery()
	for _, p := range people {
		if p == skipPerson {
			continue
		}
		var samples []template.Template
		for i := 1; i <= 5; i++ {
			k := img{p, i}
			t, ok := tmpl[k]
			if !ok || k == skip {
				continue
			}
			c, err := template.Compact(t)
			if err != nil {
				log.Fatal(err)
			}
			samples = append(samples, c)
		}
		if len(samples) == 0 {
			continue
		}
		if err := g.Enroll(fmt.Sprintf("s%d", p), samples); err != nil {
			log.Fatal(err)
		}
	}
	return g
}

// protocol enrols people (images 1-5) and returns genuine probes, correct,
// stranger probes and strangers accepted at the shipped threshold.
func protocol(tmpl map[img]template.Template, people []int) (gen, correct, str, acc int) {
	g := gallery(tmpl, people, img{}, 0)
	for _, p := range people {
		for i := 6; i <= 10; i++ {
			gen++
			t, ok := tmpl[img{p, i}]
			if !ok {
				continue
			}
			if id, _, ok := g.Identify(t); ok && id == fmt.Sprintf("s%d", p) {
				correct++
			}
		}
	}
	for p := 21; p <= 40; p++ {
		for i := 1; i <= 10; i++ {
			str++
			t, ok := tmpl[img{p, i}]
			if !ok {
				continue
			}
			if _, _, ok := g.Identify(t); ok {
				acc++
			}
		}
	}
	return
}

// calibrate runs template.Calibrate on the enrollment templates
// (s1..s20, images 1-5).
func calibrate(tmpl map[img]template.Template) (template.Calibration, error) {
	enroll := map[string][]template.Template{}
	for p := 1; p <= 20; p++ {
		for i := 1; i <= 5; i++ {
			if t, ok := tmpl[img{p, i}]; ok {
				enroll[fmt.Sprintf("s%d", p)] = append(enroll[fmt.Sprintf("s%d", p)], t)
			}
		}
	}
	return template.Calibrate(enroll)
}

func readPGM(path string) (*image.Gray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return pgm.Decode(f)
}

func pct(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}
