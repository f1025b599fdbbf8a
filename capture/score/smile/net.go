// Package smile tells a smiling face from a neutral one: a small
// convolutional network over a grey face crop, in pure Go (no OpenCV), so the
// same code runs in the vision worker, in bestshot, in the trainer and in
// tests.
//
// The network is trained offline on the GENKI-4K train split by
// scripts/quality/trainsmile and its weights are embedded (model.bin). The
// package never reads files at run time and never touches the network.
//
// Input: a face crop as cut by a frontal-face cascade (the box itself, no
// margin), any size; it is resampled to InputSize x InputSize and normalised
// to zero mean and unit variance, so the camera's exposure does not matter.
package smile

import (
	"fmt"
	"math"

	"github.com/aibo-privacy/aibo-privacyd/internal/weightfile"
)

// InputSize is the side of the square grey input of the network.
const InputSize = 48

// Architecture: four 3x3 convolutions (padding 1) with ReLU, each followed by
// a 2x2 max-pool, then one fully connected layer to a single logit.
//
//	48x48x1 -> 24x24x16 -> 12x12x32 -> 6x6x64 -> 3x3x64 -> 576 -> 1
var layerChannels = [...]int{1, 16, 32, 64, 64}

// Net holds the weights of the network. The zero value is not usable; use
// NewNet (random initialisation) or Default / Decode.
type Net struct {
	conv []convLayer
	fcW  []float32 // len = fcIn
	fcB  []float32 // len 1
	fcIn int
}

type convLayer struct {
	in, out int
	w       []float32 // [out][in][3][3]
	b       []float32 // [out]
}

// NewNet returns a network with He-initialised weights drawn from rnd
// (a function returning standard normal numbers).
func NewNet(rnd func() float64) *Net {
	n := &Net{}
	side := InputSize
	for i := 0; i+1 < len(layerChannels); i++ {
		cin, cout := layerChannels[i], layerChannels[i+1]
		l := convLayer{in: cin, out: cout, w: make([]float32, cout*cin*9), b: make([]float32, cout)}
		std := math.Sqrt(2 / float64(cin*9))
		for j := range l.w {
			l.w[j] = float32(rnd() * std)
		}
		n.conv = append(n.conv, l)
		side /= 2
	}
	n.fcIn = side * side * layerChannels[len(layerChannels)-1]
	n.fcW = make([]float32, n.fcIn)
	n.fcB = make([]float32, 1)
	std := math.Sqrt(1 / float64(n.fcIn))
	for j := range n.fcW {
		n.fcW[j] = float32(rnd() * std)
	}
	return n
}

// params lists every weight slice, in the order of the serialised form.
func (n *Net) params() [][]float32 {
	var p [][]float32
	for i := range n.conv {
		p = append(p, n.conv[i].w, n.conv[i].b)
	}
	p = append(p, n.fcW, n.fcB)
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

const magic = "SMILECNN1"

// Encode serialises the weights (internal/weightfile), layer by layer (W
// then B).
func (n *Net) Encode() []byte { return weightfile.Encode(magic, n.params()) }

// Decode reads weights written by Encode.
func Decode(data []byte) (*Net, error) {
	n := NewNet(func() float64 { return 0 })
	if err := weightfile.Decode(magic, data, n.params()); err != nil {
		return nil, fmt.Errorf("smile: %w", err)
	}
	return n, nil
}

// activations keeps what a forward pass computed, for the backward pass.
type activations struct {
	// in[i] is the input of conv layer i; pre[i] its output after ReLU and
	// before pooling; arg[i] the index in pre[i] each pooled value came from.
	in   [][]float32
	col  [][]float32
	pre  [][]float32
	arg  [][]int32
	fcIn []float32

	// Scratch of the backward pass, only when training.
	dpre, din [][]float32
	dcol      []float32
}

func newActivations(train bool) *activations {
	a := &activations{}
	side := InputSize
	for i := 0; i+1 < len(layerChannels); i++ {
		a.in = append(a.in, make([]float32, layerChannels[i]*side*side))
		a.col = append(a.col, make([]float32, layerChannels[i]*9*side*side))
		a.pre = append(a.pre, make([]float32, layerChannels[i+1]*side*side))
		a.arg = append(a.arg, make([]int32, layerChannels[i+1]*side*side/4))
		side /= 2
	}
	a.fcIn = make([]float32, side*side*layerChannels[len(layerChannels)-1])
	if train {
		for i := range a.pre {
			a.dpre = append(a.dpre, make([]float32, len(a.pre[i])))
			a.din = append(a.din, make([]float32, len(a.in[i])))
			a.dcol = make([]float32, max(len(a.dcol), len(a.col[i])))
		}
	}
	return a
}

// Logit runs the network on a normalised InputSize x InputSize input and
// returns the smile logit (positive: smiling).
func (n *Net) Logit(x []float32) float32 {
	return n.forward(x, newActivations(false))
}

func (n *Net) forward(x []float32, a *activations) float32 {
	copy(a.in[0], x)
	side := InputSize
	for i := range n.conv {
		l := &n.conv[i]
		conv3x3(a.in[i], l.w, l.b, a.pre[i], a.col[i], l.in, l.out, side)
		for j, v := range a.pre[i] {
			if v < 0 {
				a.pre[i][j] = 0
			}
		}
		next := a.fcIn
		if i+1 < len(n.conv) {
			next = a.in[i+1]
		}
		maxPool(a.pre[i], next, a.arg[i], l.out, side)
		side /= 2
	}
	s := n.fcB[0]
	for j, v := range a.fcIn {
		s += v * n.fcW[j]
	}
	return s
}

// conv3x3 computes out[o] = b[o] + sum_i w[o][i] * in[i] with zero padding
// 1, as a matrix product over the unrolled input col ([cin*9][side*side]).
func conv3x3(in, w, b, out, col []float32, cin, cout, side int) {
	im2col(in, col, cin, side)
	plane := side * side
	k := cin * 9
	for o := 0; o < cout; o++ {
		orow := out[o*plane : (o+1)*plane]
		for j := range orow {
			orow[j] = b[o]
		}
		wr := w[o*k : (o+1)*k]
		j := 0
		for ; j+4 <= k; j += 4 {
			w0, w1, w2, w3 := wr[j], wr[j+1], wr[j+2], wr[j+3]
			c0 := col[j*plane : (j+1)*plane]
			c1 := col[(j+1)*plane : (j+2)*plane]
			c2 := col[(j+2)*plane : (j+3)*plane]
			c3 := col[(j+3)*plane : (j+4)*plane]
			c0, c1, c2, c3 = c0[:len(orow)], c1[:len(orow)], c2[:len(orow)], c3[:len(orow)]
			for t := range orow {
				orow[t] += w0*c0[t] + w1*c1[t] + w2*c2[t] + w3*c3[t]
			}
		}
		for ; j < k; j++ {
			wv := wr[j]
			c := col[j*plane : (j+1)*plane]
			c = c[:len(orow)]
			for t := range orow {
				orow[t] += wv * c[t]
			}
		}
	}
}

// im2col unrolls the 3x3 neighbourhoods of in ([cin][side][side]) into col
// ([cin][9][side*side]), zero outside the image.
func im2col(in, col []float32, cin, side int) {
	plane := side * side
	for i := 0; i < cin; i++ {
		ip := in[i*plane : (i+1)*plane]
		for ky := 0; ky < 3; ky++ {
			for kx := 0; kx < 3; kx++ {
				dst := col[(i*9+ky*3+kx)*plane : (i*9+ky*3+kx+1)*plane]
				dy, dx := ky-1, kx-1
				for y := 0; y < side; y++ {
					row := dst[y*side : (y+1)*side]
					sy := y + dy
					if sy < 0 || sy >= side {
						clear(row)
						continue
					}
					src := ip[sy*side : (sy+1)*side]
					for x := range row {
						sx := x + dx
						if sx < 0 || sx >= side {
							row[x] = 0
						} else {
							row[x] = src[sx]
						}
					}
				}
			}
		}
	}
}

func maxPool(in, out []float32, arg []int32, ch, side int) {
	half := side / 2
	for c := 0; c < ch; c++ {
		base := c * side * side
		for y := 0; y < half; y++ {
			for x := 0; x < half; x++ {
				best := int32(base + 2*y*side + 2*x)
				for _, d := range [3]int{1, side, side + 1} {
					if j := int32(base + 2*y*side + 2*x + d); in[j] > in[best] {
						best = j
					}
				}
				k := c*half*half + y*half + x
				out[k] = in[best]
				arg[k] = best
			}
		}
	}
}
