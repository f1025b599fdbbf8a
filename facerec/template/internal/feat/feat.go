// Package feat turns an aligned grey face crop into local texture
// histograms: the part of the template computation that comes before the
// learnt projection. It is shared by the template package and by the
// generator that learns the projection from background faces, so both see
// exactly the same features.
//
// Pipeline (all sizes fixed, whatever the input size):
//
//  1. The crop is resampled to W x H (46 x 56) grey levels: an integer box
//     shrink first when the crop is at least twice as large (no aliasing),
//     then bilinear sampling.
//  2. Three code maps are computed on that image: uniform LBP(8,1) and
//     LBP(8,2) on the grey levels, and uniform LBP(8,1) on a Tan-Triggs
//     style illumination-normalised copy (gamma 0.2, difference of
//     Gaussians sigma 1 and 2).
//  3. Each code map is pooled into a NX x NY (6 x 7) grid of 59-bin
//     histograms with bilinear (soft) spatial weights, so a one-pixel shift
//     moves weight gradually between neighbouring cells instead of flipping
//     whole pixels from one cell to the next.
//  4. Every cell histogram is L1-normalised and square-rooted (Hellinger
//     mapping), so that squared Euclidean distance between cells is a
//     Hellinger distance and no single frequent code dominates.
//
// Pooling can be repeated on displaced and scaled grids over the same code
// maps (Variants): the template package uses that to tolerate small
// misalignment between two crops at the price of one histogram pass per
// variant, without resampling the image again.
package feat

import (
	"errors"
	"image"
	"math"
)

// Canonical geometry.
const (
	W     = 46 // canonical width in pixels
	H     = 56 // canonical height in pixels
	NX    = 6  // grid columns
	NY    = 7  // grid rows
	Cells = NX * NY
	Bins  = 59 // uniform LBP(8,R) labels: 58 uniform patterns + 1 for the rest
	Maps  = 3  // code maps: LBP(8,1), LBP(8,2) on grey; LBP(8,1) on DoG
)

// Size limits of an input crop.
const (
	MinSide = 32
	MaxSide = 4096
)

// ErrImage reports a crop that cannot be used (nil, empty, too small or too
// large).
var ErrImage = errors.New("feat: face crop must be a grey image between 32x32 and 4096x4096")

// Geo is one pooling grid: the canonical grid scaled by Scale about the
// image centre, then displaced by DX, DY pixels.
type Geo struct {
	DX, DY, Scale float64
}

// Variants are the pooling grids of a probe template: the canonical grid,
// the eight displacements by 4% of the side, and scales 0.92 and 1.08.
// Index 0 is the canonical grid.
var Variants = func() []Geo {
	v := []Geo{{0, 0, 1}}
	dx, dy := 0.04*W, 0.04*H
	for _, d := range [][2]float64{{-1, -1}, {0, -1}, {1, -1}, {-1, 0}, {1, 0}, {-1, 1}, {0, 1}, {1, 1}} {
		v = append(v, Geo{d[0] * dx, d[1] * dy, 1})
	}
	return append(v, Geo{0, 0, 0.92}, Geo{0, 0, 1.08})
}()

// Codes holds the three LBP label maps of one canonical image.
type Codes [Maps][W * H]uint8

// Extract resamples the crop and computes its code maps.
func Extract(face *image.Gray) (*Codes, error) {
	if face == nil {
		return nil, ErrImage
	}
	b := face.Bounds()
	if b.Dx() < MinSide || b.Dy() < MinSide || b.Dx() > MaxSide || b.Dy() > MaxSide ||
		len(face.Pix) < (b.Dy()-1)*face.Stride+b.Dx() {
		return nil, ErrImage
	}
	img := resample(face)
	c := new(Codes)
	lbp(img[:], 1, c[0][:])
	lbp(img[:], 2, c[1][:])
	n := dog(img[:])
	lbp(n[:], 1, c[2][:])
	return c, nil
}

// Pool writes the Hellinger-mapped histograms of all maps on grid g into
// out, laid out [map][cell][bin]; out must have Maps*Cells*Bins elements.
func (c *Codes) Pool(g Geo, out []float32) {
	if len(out) != Maps*Cells*Bins {
		panic("feat: Pool: wrong output length")
	}
	clear(out)
	cw := g.Scale * W / NX
	ch := g.Scale * H / NY
	// position of pixel centre x in grid units, minus 0.5 so that integer
	// values are cell centres
	ox := W/2 + g.DX - g.Scale*W/2
	oy := H/2 + g.DY - g.Scale*H/2
	// each pixel column spreads over at most two cell columns
	var cxs [W][2]int
	var wxs [W][2]float32
	for x := 0; x < W; x++ {
		f := (float64(x)+0.5-ox)/cw - 0.5
		fl := math.Floor(f)
		t := float32(f - fl)
		for d := 0; d < 2; d++ {
			cx := int(fl) + d
			w := 1 - t
			if d == 1 {
				w = t
			}
			if cx < 0 || cx >= NX {
				cx, w = 0, 0
			}
			cxs[x][d], wxs[x][d] = cx, w
		}
	}
	for y := 0; y < H; y++ {
		f := (float64(y)+0.5-oy)/ch - 0.5
		fl := math.Floor(f)
		ty := float32(f - fl)
		for dy := 0; dy < 2; dy++ {
			cy := int(fl) + dy
			if cy < 0 || cy >= NY {
				continue
			}
			wy := 1 - ty
			if dy == 1 {
				wy = ty
			}
			if wy == 0 {
				continue
			}
			row := cy * NX
			for m := 0; m < Maps; m++ {
				codes := c[m][y*W : (y+1)*W]
				hm := out[m*Cells*Bins : (m+1)*Cells*Bins]
				for x, code := range codes {
					w := &wxs[x]
					cx := &cxs[x]
					hm[(row+cx[0])*Bins+int(code)] += wy * w[0]
					hm[(row+cx[1])*Bins+int(code)] += wy * w[1]
				}
			}
		}
	}
	for k := 0; k < Maps*Cells; k++ {
		h := out[k*Bins : (k+1)*Bins]
		var s float32
		for _, v := range h {
			s += v
		}
		if s <= 0 {
			continue // a cell the grid left empty stays zero
		}
		inv := 1 / s
		for i, v := range h {
			h[i] = float32(math.Sqrt(float64(v * inv)))
		}
	}
}

// resample maps the crop onto the canonical W x H grid of grey levels.
func resample(face *image.Gray) *[W * H]float32 {
	b := face.Bounds()
	sw, sh := b.Dx(), b.Dy()
	// integer box shrink while the source is at least twice the target
	f := min(sw/W, sh/H)
	if f < 1 {
		f = 1
	}
	bw, bh := sw/f, sh/f
	src := make([]float32, bw*bh)
	inv := 1 / float32(f*f)
	for y := 0; y < bh; y++ {
		for x := 0; x < bw; x++ {
			var s int
			for yy := y * f; yy < y*f+f; yy++ {
				row := face.Pix[yy*face.Stride+x*f : yy*face.Stride+x*f+f]
				for _, p := range row {
					s += int(p)
				}
			}
			src[y*bw+x] = float32(s) * inv
		}
	}
	// the whole box-shrunk image (bw*f x bh*f of the source) maps onto W x H
	out := new([W * H]float32)
	ux := float64(bw) / W
	uy := float64(bh) / H
	at := func(x, y int) float32 {
		x = max(0, min(bw-1, x))
		y = max(0, min(bh-1, y))
		return src[y*bw+x]
	}
	for v := 0; v < H; v++ {
		sy := (float64(v)+0.5)*uy - 0.5
		y0 := math.Floor(sy)
		ty := float32(sy - y0)
		yi := int(y0)
		for u := 0; u < W; u++ {
			sx := (float64(u)+0.5)*ux - 0.5
			x0 := math.Floor(sx)
			tx := float32(sx - x0)
			xi := int(x0)
			out[v*W+u] = (1-ty)*((1-tx)*at(xi, yi)+tx*at(xi+1, yi)) + ty*((1-tx)*at(xi, yi+1)+tx*at(xi+1, yi+1))
		}
	}
	return out
}

// uniform maps an 8-bit LBP code to its uniform label (0..57) or 58.
var uniform = func() (u [256]uint8) {
	n := uint8(0)
	for i := 0; i < 256; i++ {
		t := 0
		for k := 0; k < 8; k++ {
			if (i>>k)&1 != (i>>((k+1)%8))&1 {
				t++
			}
		}
		if t <= 2 {
			u[i] = n
			n++
		} else {
			u[i] = Bins - 1
		}
	}
	return u
}()

// pad is the border added around the canonical image for LBP sampling:
// radius 2 plus one pixel for bilinear interpolation.
const (
	pad = 3
	pw  = W + 2*pad
)

// lbp writes uniform LBP(8,r) labels of img into out. Neighbours off the
// grid sample the nearest border pixel; off-grid positions are bilinear.
func lbp(img []float32, r float64, out []uint8) {
	var p [pw * (H + 2*pad)]float32
	for y := -pad; y < H+pad; y++ {
		src := img[max(0, min(H-1, y))*W:]
		row := p[(y+pad)*pw:]
		for x := -pad; x < W+pad; x++ {
			row[x+pad] = src[max(0, min(W-1, x))]
		}
	}
	type tap struct {
		off                int // offset of the top-left tap in p
		w00, w01, w10, w11 float32
	}
	var taps [8]tap
	for k := 0; k < 8; k++ {
		a := 2 * math.Pi * float64(k) / 8
		x, y := r*math.Cos(a), -r*math.Sin(a)
		// snap values that are integers up to rounding error
		if math.Abs(x-math.Round(x)) < 1e-9 {
			x = math.Round(x)
		}
		if math.Abs(y-math.Round(y)) < 1e-9 {
			y = math.Round(y)
		}
		fx, fy := math.Floor(x), math.Floor(y)
		tx, ty := x-fx, y-fy
		taps[k] = tap{int(fy)*pw + int(fx),
			float32((1 - tx) * (1 - ty)), float32(tx * (1 - ty)), float32((1 - tx) * ty), float32(tx * ty)}
	}
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			o := (y+pad)*pw + x + pad
			c := p[o]
			code := 0
			for k := range taps {
				t := &taps[k]
				q := o + t.off
				v := t.w00*p[q] + t.w01*p[q+1] + t.w10*p[q+pw] + t.w11*p[q+pw+1]
				if v >= c {
					code |= 1 << k
				}
			}
			out[y*W+x] = uniform[code]
		}
	}
}

// dog returns the illumination-normalised image: gamma 0.2, then the
// difference of Gaussian blurs with sigma 1 and 2.
func dog(img []float32) *[W * H]float32 {
	var g [W * H]float32
	for i, v := range img {
		g[i] = float32(math.Pow(float64(v)+1, 0.2))
	}
	a := blur(g[:], kern1)
	b := blur(g[:], kern2)
	out := new([W * H]float32)
	for i := range out {
		out[i] = a[i] - b[i]
	}
	return out
}

var (
	kern1 = gauss(3, 1)
	kern2 = gauss(6, 2)
)

// gauss returns a normalised Gaussian kernel of radius r.
func gauss(r int, sigma float64) []float32 {
	n := 2*r + 1
	k := make([]float32, n)
	var s float32
	for i := 0; i < n; i++ {
		d := float64(i - r)
		k[i] = float32(math.Exp(-d * d / (2 * sigma * sigma)))
		s += k[i]
	}
	for i := range n {
		k[i] /= s
	}
	return k
}

// blur is a separable convolution with border replication.
func blur(img []float32, k []float32) *[W * H]float32 {
	r := len(k) / 2
	var tmp [W * H]float32
	for y := 0; y < H; y++ {
		row := img[y*W : (y+1)*W]
		for x := 0; x < W; x++ {
			var a float32
			for i, kv := range k {
				xx := max(0, min(W-1, x+i-r))
				a += kv * row[xx]
			}
			tmp[y*W+x] = a
		}
	}
	out := new([W * H]float32)
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			var a float32
			for i, kv := range k {
				yy := max(0, min(H-1, y+i-r))
				a += kv * tmp[yy*W+x]
			}
			out[y*W+x] = a
		}
	}
	return out
}

// K is the number of projected coordinates kept per cell histogram
// (Projector.Project is unrolled for 12).
const K = 12

// Dims is the length of one projected feature vector.
const Dims = Maps * Cells * K

// Model is the learnt per-cell projection: for each code map, a basis of K
// orthonormal directions in histogram space and the mean it is centred on,
// shared by all cells (so it learns which texture patterns co-vary, not
// where they are on the face), and the scale that maps projected values to
// int8.
type Model struct {
	Mean  [Maps][Bins]float32
	Basis [Maps][K][Bins]float32
	Scale float32 // int8 units per unit of projected value
}

// Projector is a Model prepared for fast projection.
type Projector struct {
	basisT [Maps][Bins][K]float32 // basis transposed
	offset [Maps][K]float32       // basis times mean
	scale  float32
}

// Prepare returns m's Projector.
func (m *Model) Prepare() *Projector {
	p := &Projector{scale: m.Scale}
	for mp := 0; mp < Maps; mp++ {
		for k := 0; k < K; k++ {
			var o float64
			for i := 0; i < Bins; i++ {
				p.basisT[mp][i][k] = m.Basis[mp][k][i]
				o += float64(m.Basis[mp][k][i]) * float64(m.Mean[mp][i])
			}
			p.offset[mp][k] = float32(o)
		}
	}
	return p
}

// Project maps pooled histograms (layout of Pool) to quantised coordinates
// (the basis applied to the centred histogram, times Scale, rounded and
// clamped to +-127), laid out [map][cell][k]; out must have Dims elements.
// Empty bins are skipped: a cell histogram has a few dozen non-zero bins.
func (p *Projector) Project(hist []float32, out []int8) {
	if len(hist) != Maps*Cells*Bins || len(out) != Dims {
		panic("feat: Project: wrong lengths")
	}
	for mp := 0; mp < Maps; mp++ {
		for c := 0; c < Cells; c++ {
			h := hist[(mp*Cells+c)*Bins : (mp*Cells+c+1)*Bins]
			// K = 12 accumulators kept in registers
			var a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 float32
			bt := &p.basisT[mp]
			for i, v := range h {
				if v == 0 {
					continue
				}
				b := &bt[i]
				a0 += v * b[0]
				a1 += v * b[1]
				a2 += v * b[2]
				a3 += v * b[3]
				a4 += v * b[4]
				a5 += v * b[5]
				a6 += v * b[6]
				a7 += v * b[7]
				a8 += v * b[8]
				a9 += v * b[9]
				a10 += v * b[10]
				a11 += v * b[11]
			}
			acc := [K]float32{a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11}
			o := out[(mp*Cells+c)*K : (mp*Cells+c+1)*K]
			for k := range acc {
				q := math.Round(float64((acc[k] - p.offset[mp][k]) * p.scale))
				o[k] = int8(max(-127, min(127, q)))
			}
		}
	}
}
