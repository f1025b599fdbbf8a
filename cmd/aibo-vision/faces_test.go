package main

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/facerec/align"
	"github.com/aibo-privacy/aibo-privacyd/facerec/template"
	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
)

func orlFace(t testing.TB, person string, n int) *image.Gray {
	f, err := os.Open("../../testdata/faces/orl-" + person + "-" + strconv.Itoa(n) + ".pgm")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := pgm.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// frame720 is a 1280x720 camera frame with one face (tripled, as a person
// a couple of metres from the robot) in it.
func frame720(t testing.TB, face *image.Gray) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.Gray{Y: 70}), image.Point{}, draw.Src)
	for y := 0; y < 336; y++ {
		for x := 0; x < 276; x++ {
			v := face.Pix[(y/3)*face.Stride+x/3]
			i := img.PixOffset(540+x, 200+y)
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = v, v, v, 255
		}
	}
	var buf bytes.Buffer
	jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	return buf.Bytes()
}

func models(t testing.TB) (*score.Scorer, *align.Aligner) {
	s, err := score.New(score.Options{})
	if err != nil {
		t.Fatal(err)
	}
	al, err := align.New(score.DefaultModelDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); al.Close() })
	return s, al
}

func TestP7_FacesGiveTemplatesThatTellPeopleApart(t *testing.T) {
	s, al := models(t)
	tpl := func(person string, n int) template.Template {
		r, err := faces(s, al, frame720(t, orlFace(t, person, n)), score.MaxPixels)
		if err != nil || len(r.Faces) != 1 {
			t.Fatalf("%s/%d: %d faces, %v", person, n, len(r.Faces), err)
		}
		f := r.Faces[0]
		if f.X < 520 || f.X > 760 || f.Y < 180 || f.Y > 460 {
			t.Fatalf("%s/%d: face found at %d,%d", person, n, f.X, f.Y)
		}
		return f.Template
	}
	g := template.NewGallery()
	for _, p := range []string{"s2", "s7"} {
		var samples []template.Template
		for n := 1; n <= 3; n++ {
			c, _ := template.Compact(tpl(p, n))
			samples = append(samples, c)
		}
		if err := g.Enroll(p, samples); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"s2", "s7"} {
		if id, _, ok := g.Identify(tpl(p, 4)); !ok || id != p {
			t.Errorf("%s/4 identified as %q (ok %v)", p, id, ok)
		}
	}
	if id, _, ok := g.Identify(tpl("s30", 1)); ok {
		t.Errorf("a stranger was taken for %s", id)
	}
	// No face, no template.
	var buf bytes.Buffer
	jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 640, 480)), nil)
	if r, err := faces(s, al, buf.Bytes(), score.MaxPixels); err != nil || len(r.Faces) != 0 {
		t.Fatalf("empty frame: %v %v", r.Faces, err)
	}
}

// BenchmarkFrame measures detect + align + template on a 1280x720 frame and
// the match against 100 people x 5 samples, on one OpenCV thread.
//
//	go test -run '^$' -bench Frame -benchtime 30x ./cmd/aibo-vision/
func BenchmarkFrame(b *testing.B) {
	score.SetThreads(1)
	s, al := models(b)
	frame := frame720(b, orlFace(b, "s2", 4))
	g := template.NewGallery()
	people := []string{"s2", "s7", "s12"}
	var samples [][]template.Template
	for _, p := range people {
		var ts []template.Template
		for n := 1; n <= 3; n++ {
			r, err := faces(s, al, frame720(b, orlFace(b, p, n)), score.MaxPixels)
			if err != nil || len(r.Faces) != 1 {
				b.Fatal("enrollment frame without one face")
			}
			c, _ := template.Compact(r.Faces[0].Template)
			ts = append(ts, c, c)
		}
		samples = append(samples, ts[:5])
	}
	for i := 0; i < 100; i++ {
		g.Enroll("p"+strconv.Itoa(i), samples[i%len(samples)])
	}
	g.Identify(samples[0][0]) // build the gallery's spreads once
	var decode, detect, match []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		img, err := score.Decode(frame, score.MaxPixels)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		r, err := facesIn(s, al, img)
		img.Close()
		if err != nil || len(r.Faces) != 1 {
			b.Fatal("no face")
		}
		t2 := time.Now()
		g.Identify(r.Faces[0].Template)
		t3 := time.Now()
		decode, detect, match = append(decode, t1.Sub(t0)), append(detect, t2.Sub(t1)), append(match, t3.Sub(t2))
	}
	b.StopTimer()
	p50 := func(d []time.Duration) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	b.ReportMetric(p50(decode), "decode-p50-ms")
	b.ReportMetric(p50(detect), "detect+align+template-p50-ms")
	b.ReportMetric(p50(match), "match100x5-p50-ms")
}
