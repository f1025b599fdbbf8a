// Command pipeline measures face recognition on ORL through the vision
// worker's own pipeline, not on the raw crops: every ORL image is tripled
// into a 1280x720 camera frame (as cmd/aibo-vision's tests do), JPEG
// encoded, then decoded, detected (capture/score), aligned (facerec/align)
// and templated (facerec/template) exactly as cmd/aibo-vision/faces.go does.
//
//	go run ./scripts/facequality/pipeline -data ../shared/testdata
//
// Protocol (as scripts/facequality): s1..s20 enrolled with images 1-5,
// probed with images 6-10; s21..s40 are strangers (all ten images). Galleries
// of 1, 2, 3 and 5 people are random draws among s1..s20 (fixed seed,
// -draws of them), the gallery of 20 is everybody. A frame where no face is
// found near the pasted one gives no template: an enrollment sample is then
// missing, a genuine probe counts as not correct and a stranger as not
// accepted (the count is reported). Decisions use the shipped
// template.Threshold; the leave-one-out rule of scripts/facequality is also
// recomputed on the pipeline's enrollment templates and printed.
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
	"sort"

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
			frame, want := frame720(g)
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

	sel := looRule(tmpl)
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

	fmt.Printf("## ORL through the worker pipeline (frame 1280x720, face x3, JPEG 90 -> score.Detect -> align.Crop -> template.Compute)\n\n")
	fmt.Printf("Faces found: %d of 400 frames (%d missed). Shipped threshold %.3f; leave-one-out rule on the pipeline's enrollment templates (s1..s20, images 1-5): %.4f.\n\n",
		400-missed, missed, template.Threshold, sel)
	fmt.Printf("| people enrolled | galleries | correct | strangers accepted |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Printf("| %d | %d | %s (%d/%d) | %s (%d/%d) |\n", r.k, r.draws,
			pct(r.correct, r.genuine), r.correct, r.genuine, pct(r.accepted, r.strangers), r.accepted, r.strangers)
	}
}

// frame720 pastes face (tripled) into a 1280x720 grey frame at (540,200),
// as cmd/aibo-vision's tests do, and returns the JPEG and the face's place.
func frame720(face *image.Gray) ([]byte, image.Rectangle) {
	w, h := face.Bounds().Dx()*3, face.Bounds().Dy()*3
	im := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	draw.Draw(im, im.Bounds(), image.NewUniform(color.Gray{Y: 70}), image.Point{}, draw.Src)
	x0, y0 := 540, 200
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := face.Pix[(y/3)*face.Stride+x/3]
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

// looRule is scripts/facequality's threshold rule on the enrollment
// templates: midpoint of the two lowest leave-one-person-out impostor
// scores (s1..s20, images 1-5).
func looRule(tmpl map[img]template.Template) float64 {
	var all []int
	for p := 1; p <= 20; p++ {
		all = append(all, p)
	}
	var imp []float64
	for p := 1; p <= 20; p++ {
		g := gallery(tmpl, all, img{}, p)
		for i := 1; i <= 5; i++ {
			t, ok := tmpl[img{p, i}]
			if !ok {
				continue
			}
			m, err := g.Match(t)
			if err != nil {
				log.Fatal(err)
			}
			imp = append(imp, m.Score)
		}
	}
	sort.Float64s(imp)
	return (imp[0] + imp[1]) / 2
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
