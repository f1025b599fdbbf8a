package smile

import (
	"image"
	"image/draw"
	"math"
)

// Crop is a grey image: Pix holds W*H luma values, row by row.
type Crop struct {
	W, H int
	Pix  []float32
}

// CropFromGray converts an image.Gray (for example a face box cut from a
// photo) into a Crop.
func CropFromGray(g *image.Gray) Crop {
	b := g.Bounds()
	c := Crop{W: b.Dx(), H: b.Dy(), Pix: make([]float32, b.Dx()*b.Dy())}
	for y := 0; y < c.H; y++ {
		off := g.PixOffset(b.Min.X, b.Min.Y+y)
		row := g.Pix[off : off+c.W]
		for x, v := range row {
			c.Pix[y*c.W+x] = float32(v)
		}
	}
	return c
}

// CropFromImage converts any image to a grey Crop (ITU-R 601 luma, as
// image/color's grey model and OpenCV's BGR2GRAY compute it).
func CropFromImage(img image.Image) Crop {
	g, ok := img.(*image.Gray)
	if !ok {
		g = image.NewGray(img.Bounds())
		draw.Draw(g, g.Bounds(), img, img.Bounds().Min, draw.Src)
	}
	return CropFromGray(g)
}

// shrink halves the crop (2x2 box average) until it is at most twice the
// network's input, so bilinear sampling does not alias.
func shrink(c Crop) Crop {
	for c.W >= 4*InputSize && c.H >= 4*InputSize {
		n := Crop{W: c.W / 2, H: c.H / 2}
		n.Pix = make([]float32, n.W*n.H)
		for y := 0; y < n.H; y++ {
			for x := 0; x < n.W; x++ {
				i := 2*y*c.W + 2*x
				n.Pix[y*n.W+x] = (c.Pix[i] + c.Pix[i+1] + c.Pix[i+c.W] + c.Pix[i+c.W+1]) / 4
			}
		}
		c = n
	}
	return c
}

// warp describes how an input pixel maps into the crop: rotation (radians),
// scale (>1 zooms out), shift (in input pixels) and a horizontal mirror.
type warp struct {
	angle, scale float64
	dx, dy       float64
	mirror       bool
}

// sample writes the InputSize x InputSize network input for crop c under
// warp t into dst, normalised to zero mean and unit variance.
func sample(c Crop, t warp, dst []float32) {
	c = shrink(c)
	sx := float64(c.W) / InputSize
	sy := float64(c.H) / InputSize
	cos, sin := math.Cos(t.angle)*t.scale, math.Sin(t.angle)*t.scale
	cx, cy := float64(c.W)/2, float64(c.H)/2
	for v := 0; v < InputSize; v++ {
		for u := 0; u < InputSize; u++ {
			fu := float64(u) + 0.5 - InputSize/2 + t.dx
			if t.mirror {
				fu = -fu
			}
			fv := float64(v) + 0.5 - InputSize/2 + t.dy
			x := cx + (cos*fu-sin*fv)*sx - 0.5
			y := cy + (sin*fu+cos*fv)*sy - 0.5
			dst[v*InputSize+u] = bilinear(c, x, y)
		}
	}
	normalise(dst)
}

func bilinear(c Crop, x, y float64) float32 {
	x = math.Max(0, math.Min(x, float64(c.W-1)))
	y = math.Max(0, math.Min(y, float64(c.H-1)))
	x0, y0 := int(x), int(y)
	x1, y1 := min(x0+1, c.W-1), min(y0+1, c.H-1)
	fx, fy := float32(x-float64(x0)), float32(y-float64(y0))
	a := c.Pix[y0*c.W+x0]*(1-fx) + c.Pix[y0*c.W+x1]*fx
	b := c.Pix[y1*c.W+x0]*(1-fx) + c.Pix[y1*c.W+x1]*fx
	return a*(1-fy) + b*fy
}

func normalise(p []float32) {
	var s, ss float64
	for _, v := range p {
		s += float64(v)
		ss += float64(v) * float64(v)
	}
	n := float64(len(p))
	mean := s / n
	sd := math.Sqrt(math.Max(ss/n-mean*mean, 0)) + 4 // +4: flat crops stay flat
	for i, v := range p {
		p[i] = float32((float64(v) - mean) / sd)
	}
}
