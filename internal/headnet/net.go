// Package headnet is the proposal net of Patrol's search for small faces:
// a small fully convolutional network, trained here in pure Go
// (scripts/quality/trainheads), that marks where in a frame a face of 12
// to 24 px (in its input) may be and how large it is. The vision worker
// runs it through OpenCV's dnn module (tools/onnxgen writes its graph from
// the embedded weights) on the frame at a third, a sixth and a twelfth of
// its size, and confirms each mark with the tiny face detector on a crop
// (internal/facenet): the net only says where to look, never what a face
// is.
//
// It is pure Go and reads no files at run time: its weights are embedded
// (model.bin). It holds no image data beyond one call.
package headnet

import (
	"fmt"
	"math"

	"github.com/aibo-privacy/aibo-privacyd/internal/weightfile"
)

// Geometry of the net's input and output.
const (
	// Stride is the input pixels per output cell.
	Stride = 8
	// MinFace and MaxFace bound the face heights (brows to chin, in input
	// pixels) the net is trained to mark; RefFace is the size its size
	// output is relative to: size = RefFace * exp(out[1]).
	MinFace, MaxFace, RefFace = 12.0, 24.0, 17.0
	// Mean and Scale normalise a grey input: x' = (x - Mean) / Scale.
	Mean, Scale = 128.0, 64.0
)

// Layer is one convolution of the net: k x k, padding k/2, then ReLU
// (every layer but the last) and a 2x2 max pool with stride 2 when Pool.
type Layer struct {
	In, Out, K, Stride int
	Pool               bool
}

// Arch is the net: a grey input to two output planes per cell, the face
// logit and the log of its size relative to RefFace. Receptive field 49
// input pixels; about 300 multiply-adds per input pixel.
var Arch = []Layer{
	{In: 1, Out: 8, K: 3, Stride: 2, Pool: true},
	{In: 8, Out: 16, K: 3, Stride: 1, Pool: true},
	{In: 16, Out: 32, K: 3, Stride: 1},
	{In: 32, Out: 32, K: 3, Stride: 1},
	{In: 32, Out: 2, K: 1, Stride: 1},
}

// Net holds the weights: for each layer, W [Out][In][K][K] and B [Out].
type Net struct {
	W, B [][]float32
}

// NewNet returns a net with He-initialised weights drawn from rnd (a
// function returning standard normal numbers).
func NewNet(rnd func() float64) *Net {
	n := &Net{}
	for _, l := range Arch {
		w := make([]float32, l.Out*l.In*l.K*l.K)
		std := math.Sqrt(2 / float64(l.In*l.K*l.K))
		for i := range w {
			w[i] = float32(rnd() * std)
		}
		n.W = append(n.W, w)
		n.B = append(n.B, make([]float32, l.Out))
	}
	return n
}

func (n *Net) params() [][]float32 {
	var p [][]float32
	for i := range n.W {
		p = append(p, n.W[i], n.B[i])
	}
	return p
}

// NumParams is the number of weights.
func (n *Net) NumParams() int {
	c := 0
	for _, p := range n.params() {
		c += len(p)
	}
	return c
}

const magic = "HEADNET1"

// Encode serialises the weights (internal/weightfile), layer by layer (W
// then B).
func (n *Net) Encode() []byte { return weightfile.Encode(magic, n.params()) }

// Decode reads weights written by Encode.
func Decode(data []byte) (*Net, error) {
	n := NewNet(func() float64 { return 0 })
	if err := weightfile.Decode(magic, data, n.params()); err != nil {
		return nil, fmt.Errorf("headnet: %w", err)
	}
	return n, nil
}

// OutSize is the output grid of an input of w x h pixels (both multiples
// of Stride).
func OutSize(w, h int) (int, int) { return w / Stride, h / Stride }

// Forward runs the net on a normalised grey input of w x h (multiples of
// Stride) and returns its two output planes, logits then log sizes, each
// of OutSize cells.
func (n *Net) Forward(x []float32, w, h int) []float32 {
	a := newActs(w, h, false)
	return n.forward(x, a)
}

// acts keeps what a forward pass computed, for the backward pass.
type acts struct {
	w, h int
	// for layer i: in[i] its input, col[i] the unrolled input, out[i]
	// its output after ReLU, before pooling; arg[i] the pool's choices.
	in, col, out [][]float32
	arg          [][]int32
	sizes        [][4]int // cin, h, w at the input; ho, wo at the output

	din, dout [][]float32
	dcol      []float32
}

func newActs(w, h int, train bool) *acts {
	a := &acts{w: w, h: h}
	for _, l := range Arch {
		ho, wo := (h+2*(l.K/2)-l.K)/l.Stride+1, (w+2*(l.K/2)-l.K)/l.Stride+1
		a.in = append(a.in, make([]float32, l.In*h*w))
		a.col = append(a.col, make([]float32, l.In*l.K*l.K*ho*wo))
		a.out = append(a.out, make([]float32, l.Out*ho*wo))
		a.sizes = append(a.sizes, [4]int{h, w, ho, wo})
		if l.Pool {
			a.arg = append(a.arg, make([]int32, l.Out*ho*wo/4))
			ho, wo = ho/2, wo/2
		} else {
			a.arg = append(a.arg, nil)
		}
		h, w = ho, wo
		if train {
			a.din = append(a.din, make([]float32, len(a.in[len(a.in)-1])))
			a.dout = append(a.dout, make([]float32, len(a.out[len(a.out)-1])))
			a.dcol = make([]float32, max(len(a.dcol), len(a.col[len(a.col)-1])))
		}
	}
	return a
}

func (n *Net) forward(x []float32, a *acts) []float32 {
	copy(a.in[0], x)
	last := len(Arch) - 1
	for i, l := range Arch {
		s := a.sizes[i]
		im2col(a.in[i], a.col[i], l.In, s[0], s[1], l.K, l.Stride, s[2], s[3])
		matmul(n.W[i], n.B[i], a.col[i], a.out[i], l.Out, l.In*l.K*l.K, s[2]*s[3])
		if i == last {
			break
		}
		for j, v := range a.out[i] {
			if v < 0 {
				a.out[i][j] = 0
			}
		}
		if l.Pool {
			maxPool(a.out[i], a.in[i+1], a.arg[i], l.Out, s[2], s[3])
		} else {
			copy(a.in[i+1], a.out[i])
		}
	}
	return a.out[last]
}

// im2col unrolls the k x k neighbourhoods (padding k/2, stride s) of in
// ([cin][h][w]) into col ([cin*k*k][ho*wo]), zero outside the image.
func im2col(in, col []float32, cin, h, w, k, s, ho, wo int) {
	p := k / 2
	plane := ho * wo
	for c := 0; c < cin; c++ {
		ip := in[c*h*w : (c+1)*h*w]
		for ky := 0; ky < k; ky++ {
			for kx := 0; kx < k; kx++ {
				dst := col[((c*k+ky)*k+kx)*plane : ((c*k+ky)*k+kx+1)*plane]
				for oy := 0; oy < ho; oy++ {
					row := dst[oy*wo : (oy+1)*wo]
					sy := oy*s + ky - p
					if sy < 0 || sy >= h {
						clear(row)
						continue
					}
					src := ip[sy*w : (sy+1)*w]
					for ox := range row {
						if sx := ox*s + kx - p; sx >= 0 && sx < w {
							row[ox] = src[sx]
						} else {
							row[ox] = 0
						}
					}
				}
			}
		}
	}
}

// col2im adds dcol back onto din, the inverse mapping of im2col.
func col2im(dcol, din []float32, cin, h, w, k, s, ho, wo int) {
	p := k / 2
	plane := ho * wo
	clear(din[:cin*h*w])
	for c := 0; c < cin; c++ {
		ip := din[c*h*w : (c+1)*h*w]
		for ky := 0; ky < k; ky++ {
			for kx := 0; kx < k; kx++ {
				src := dcol[((c*k+ky)*k+kx)*plane : ((c*k+ky)*k+kx+1)*plane]
				for oy := 0; oy < ho; oy++ {
					sy := oy*s + ky - p
					if sy < 0 || sy >= h {
						continue
					}
					dst := ip[sy*w : (sy+1)*w]
					for ox, v := range src[oy*wo : (oy+1)*wo] {
						if sx := ox*s + kx - p; sx >= 0 && sx < w {
							dst[sx] += v
						}
					}
				}
			}
		}
	}
}

// matmul computes out[o][j] = b[o] + sum_r w[o][r] * col[r][j].
func matmul(w, b, col, out []float32, cout, rows, plane int) {
	for o := 0; o < cout; o++ {
		orow := out[o*plane : (o+1)*plane]
		for j := range orow {
			orow[j] = b[o]
		}
		wr := w[o*rows : (o+1)*rows]
		r := 0
		for ; r+4 <= rows; r += 4 {
			w0, w1, w2, w3 := wr[r], wr[r+1], wr[r+2], wr[r+3]
			c0 := col[r*plane : (r+1)*plane][:len(orow)]
			c1 := col[(r+1)*plane : (r+2)*plane][:len(orow)]
			c2 := col[(r+2)*plane : (r+3)*plane][:len(orow)]
			c3 := col[(r+3)*plane : (r+4)*plane][:len(orow)]
			for t := range orow {
				orow[t] += w0*c0[t] + w1*c1[t] + w2*c2[t] + w3*c3[t]
			}
		}
		for ; r < rows; r++ {
			wv := wr[r]
			c := col[r*plane : (r+1)*plane][:len(orow)]
			for t := range orow {
				orow[t] += wv * c[t]
			}
		}
	}
}

func maxPool(in, out []float32, arg []int32, ch, h, w int) {
	ho, wo := h/2, w/2
	for c := 0; c < ch; c++ {
		base := c * h * w
		for y := 0; y < ho; y++ {
			for x := 0; x < wo; x++ {
				best := int32(base + 2*y*w + 2*x)
				for _, d := range [3]int{1, w, w + 1} {
					if j := int32(base + 2*y*w + 2*x + d); in[j] > in[best] {
						best = j
					}
				}
				k := c*ho*wo + y*wo + x
				out[k] = in[best]
				arg[k] = best
			}
		}
	}
}
