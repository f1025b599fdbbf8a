package score

import (
	"bytes"
	"image"
	"image/jpeg"
	"runtime"
	"sort"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
)

// photos720p builds 1280x720 JPEG photos from the committed images: the
// portrait's head pasted onto the coffee scene at two places, each clean,
// blurred, dark, overexposed, noisy and cut, plus the scene alone.
func photos720p(b *testing.B) [][]byte {
	portrait := decodeRGBA(b, readFile(b, "astronaut.jpg"))
	head := portrait.SubImage(image.Rect(109, 8, 242, 180))
	scene := synth.Fill(decodeRGBA(b, readFile(b, "coffee.jpg")), 1280, 720)
	var out [][]byte
	for _, r := range []image.Rectangle{image.Rect(420, 150, 680, 486), image.Rect(700, 260, 870, 480)} {
		clean := synth.RGBA(scene)
		synth.Paste(clean, head, r, 0.12)
		cut := synth.RGBA(scene)
		synth.Paste(cut, head, r.Sub(image.Pt(r.Min.X+r.Dx()/2, 0)), 0.12)
		for _, img := range []*image.RGBA{clean, synth.Blur(clean, 2.5), synth.Exposure(clean, 0.12),
			synth.Exposure(clean, 4), synth.Noise(clean, 18, 1), cut} {
			out = append(out, synth.JPEG(img, 90))
		}
	}
	return append(out, synth.JPEG(scene, 90))
}

func percentileMS(d []time.Duration, p float64) float64 {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[min(len(s)-1, int(p*float64(len(s))))].Nanoseconds()) / 1e6
}

// BenchmarkScore720p measures scoring one 1280x720 photo on one core with
// one OpenCV thread, decode excluded, and the JPEG decode of the same
// photos in the same run, to publish p50/p99 and the ratio:
//
//	go test -run '^$' -bench Score720p -benchtime 300x ./capture/score/
func BenchmarkScore720p(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := testScorer(b)
	photos := photos720p(b)
	var scoreT, decodeT, goDecodeT []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := photos[i%len(photos)]
		t0 := time.Now()
		m, err := Decode(p, 0)
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.ScoreMat(m, noon); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		m.Close()
		b.StopTimer()
		t3 := time.Now()
		if _, err := jpeg.Decode(bytes.NewReader(p)); err != nil {
			b.Fatal(err)
		}
		goDecodeT = append(goDecodeT, time.Since(t3))
		b.StartTimer()
		decodeT = append(decodeT, t1.Sub(t0))
		scoreT = append(scoreT, t2.Sub(t1))
	}
	b.StopTimer()
	p50 := percentileMS(scoreT, 0.5)
	d50 := percentileMS(decodeT, 0.5)
	b.ReportMetric(p50, "score-p50-ms")
	b.ReportMetric(percentileMS(scoreT, 0.99), "score-p99-ms")
	b.ReportMetric(d50, "decode-p50-ms")
	b.ReportMetric(percentileMS(goDecodeT, 0.5), "go-decode-p50-ms")
	b.ReportMetric(p50/d50, "score/decode")
}

// BenchmarkDetect720p measures the face search alone (what the worker's
// faces operation runs), one OpenCV thread, against TARGETS.md's 40 ms:
//
//	go test -run '^$' -bench Detect720p -benchtime 300x ./capture/score/
func BenchmarkDetect720p(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := testScorer(b)
	var mats []gocv.Mat
	for _, p := range photos720p(b) {
		m, err := Decode(p, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		mats = append(mats, m)
	}
	var withFace, without []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		boxes, err := s.Detect(mats[i%len(mats)])
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if len(boxes) > 0 {
			withFace = append(withFace, d)
		} else {
			without = append(without, d)
		}
	}
	b.StopTimer()
	if len(withFace) > 0 {
		b.ReportMetric(percentileMS(withFace, 0.5), "face-p50-ms")
	}
	if len(without) > 0 {
		b.ReportMetric(percentileMS(without, 0.5), "noface-p50-ms")
	}
}
