package template

import (
	"fmt"
	"image"
	"math/rand/v2"
	"testing"
)

func BenchmarkCompute(b *testing.B) {
	g := loadFace(b, "s12-1")
	for b.Loop() {
		if _, err := Compute(g); err != nil {
			b.Fatal(err)
		}
	}
}

// jitter returns a copy of g cropped at a random offset of up to 4 pixels
// with a random brightness change, so that every sample is different.
func jitter(g *image.Gray, r *rand.Rand) *image.Gray {
	b := g.Bounds()
	dx, dy := r.IntN(5), r.IntN(5)
	gain := 0.8 + 0.4*r.Float64()
	out := image.NewGray(image.Rect(0, 0, b.Dx()-4, b.Dy()-4))
	for y := 0; y < out.Rect.Dy(); y++ {
		for x := 0; x < out.Rect.Dx(); x++ {
			v := float64(g.Pix[(y+dy)*g.Stride+x+dx]) * gain
			out.Pix[y*out.Stride+x] = uint8(min(255, v))
		}
	}
	return out
}

// BenchmarkIdentify100x5 identifies a probe against 100 people with 5
// samples each (plus the cohort), as the Patrol does for every face.
func BenchmarkIdentify100x5(b *testing.B) {
	var faces []*image.Gray
	for _, p := range []string{"s2", "s7", "s12"} {
		for i := 1; i <= 4; i++ {
			faces = append(faces, loadFace(b, fmt.Sprintf("%s-%d", p, i)))
		}
	}
	r := rand.New(rand.NewPCG(7, 7))
	g := NewGallery()
	for p := 0; p < 100; p++ {
		var samples []Template
		for s := 0; s < 5; s++ {
			tm, err := Compute(jitter(faces[r.IntN(len(faces))], r))
			if err != nil {
				b.Fatal(err)
			}
			samples = append(samples, compact(b, tm))
		}
		if err := g.Enroll(fmt.Sprintf("p%03d", p), samples); err != nil {
			b.Fatal(err)
		}
	}
	probe := face(b, "s30-1")
	g.Identify(probe) // pay the one-off spread computation outside the loop
	for b.Loop() {
		g.Identify(probe)
	}
}
