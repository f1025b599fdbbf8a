package capture

import (
	"bytes"
	"fmt"
	"image"
	"math"
)

// BasicFeatures scores what pure Go can see cheaply: exposure (mean level
// and clipping) and sharpness (gradient energy relative to a noise
// estimate), with a difference hash for near-duplicates. The daemon uses
// it only when the vision worker cannot run; the worker sees faces,
// smiles and eyes too.
func BasicFeatures(data []byte) (map[string]float64, uint64, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, 0, fmt.Errorf("basic features: %w", err)
	}
	g := toGray(img, 256)
	w, h := g.Rect.Dx(), g.Rect.Dy()
	var sum, clipped float64
	for _, v := range g.Pix {
		sum += float64(v)
		if v <= 5 || v >= 250 {
			clipped++
		}
	}
	n := float64(len(g.Pix))
	mean := sum / n / 255
	exposure := math.Max(0, 1-math.Abs(mean-0.5)*2) * math.Max(0, 1-clipped/n*4)
	// Sharpness: mean absolute gradient over the median absolute
	// second difference (a noise floor noise cannot fake upward much).
	var grad float64
	for y := 1; y < h-1; y++ {
		for x := 1; x < w-1; x++ {
			i := y*g.Stride + x
			grad += math.Abs(float64(g.Pix[i+1])-float64(g.Pix[i-1])) + math.Abs(float64(g.Pix[i+g.Stride])-float64(g.Pix[i-g.Stride]))
		}
	}
	grad /= float64(max(1, (w-2)*(h-2)))
	sharpness := math.Min(1, grad/40)
	return map[string]float64{"exposure": exposure, "sharpness": sharpness}, dHash(g), nil
}

// toGray downsamples img to at most size pixels on the long side, in grey.
func toGray(img image.Image, size int) *image.Gray {
	b := img.Bounds()
	scale := math.Max(1, float64(max(b.Dx(), b.Dy()))/float64(size))
	w, h := max(1, int(float64(b.Dx())/scale)), max(1, int(float64(b.Dy())/scale))
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, gg, bb, _ := img.At(b.Min.X+int(float64(x)*scale), b.Min.Y+int(float64(y)*scale)).RGBA()
			g.Pix[y*g.Stride+x] = uint8((299*r + 587*gg + 114*bb) / 1000 >> 8)
		}
	}
	return g
}

// dHash is the 64-bit difference hash of a grey image (9x8 samples).
func dHash(g *image.Gray) uint64 {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	at := func(x, y int) uint8 { return g.Pix[min(h-1, y*h/8)*g.Stride+min(w-1, x*w/9)] }
	var hash uint64
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			hash <<= 1
			if at(x, y) < at(x+1, y) {
				hash |= 1
			}
		}
	}
	return hash
}
