// Package reference runs face-api's four nets in plain Go, in float64 and
// NHWC as TensorFlow.js does, written line by line from the package's
// TypeScript (src/faceRecognitionNet, src/faceFeatureExtractor,
// src/faceLandmarkNet, src/faceExpressionNet, src/tinyYolov2), straight from
// the tfjs weights: no folding, no transposes, TF's padding rules computed
// from the sizes. It is the reference the golden tests hold the converted
// ONNX graphs (tools/onnxgen) to, and is far too slow for anything else
// (about a second per descriptor).
//
// It is pure Go and owns nothing but arithmetic: it never reads files
// (weights come from internal/tfjs) and never runs on the robot.
package reference

import (
	"fmt"
	"math"

	"github.com/aibo-privacy/aibo-privacyd/internal/tfjs"
)

// Image is an RGB image, row-major, 3 values a pixel in 0..255.
type Image struct {
	W, H int
	Pix  []float64
}

// Means face-api subtracts before dividing by 255.
var (
	// MeanFace is used by the recognition, landmark and expression nets.
	MeanFace = [3]float64{122.782, 117.001, 104.298}
	// MeanDetector is the tiny face detector's.
	MeanDetector = [3]float64{117.001, 114.697, 97.404}
)

// fmap is an NHWC feature map of one image.
type fmap struct {
	h, w, c int
	d       []float64
}

func newMap(h, w, c int) *fmap { return &fmap{h, w, c, make([]float64, h*w*c)} }

func (m *fmap) at(y, x, c int) float64 { return m.d[(y*m.w+x)*m.c+c] }

func normalise(img Image, mean [3]float64) (*fmap, error) {
	if img.W <= 0 || img.H <= 0 || len(img.Pix) != img.W*img.H*3 {
		return nil, fmt.Errorf("reference: image %dx%d with %d values", img.W, img.H, len(img.Pix))
	}
	m := newMap(img.H, img.W, 3)
	for i, v := range img.Pix {
		m.d[i] = (v - mean[i%3]) / 255
	}
	return m, nil
}

// samePads is TF's 'same' padding along one axis: the total is split with
// the extra pixel after.
func samePads(n, k, s int) (before, after int) {
	out := (n + s - 1) / s
	total := max((out-1)*s+k-n, 0)
	return total / 2, total - total/2
}

type pads struct{ t, l, b, r int }

func same(x *fmap, k, s int) pads {
	t, b := samePads(x.h, k, s)
	l, r := samePads(x.w, k, s)
	return pads{t, l, b, r}
}

// conv is tf.conv2d with an HWIO filter (zero padding).
func conv(x *fmap, f *tfjs.Tensor, s int, p pads) *fmap {
	kh, kw, ci, co := f.Shape[0], f.Shape[1], f.Shape[2], f.Shape[3]
	oh := (x.h+p.t+p.b-kh)/s + 1
	ow := (x.w+p.l+p.r-kw)/s + 1
	out := newMap(oh, ow, co)
	for y := 0; y < oh; y++ {
		for xx := 0; xx < ow; xx++ {
			o := out.d[(y*ow+xx)*co : (y*ow+xx+1)*co]
			for ky := 0; ky < kh; ky++ {
				iy := y*s + ky - p.t
				if iy < 0 || iy >= x.h {
					continue
				}
				for kx := 0; kx < kw; kx++ {
					ix := xx*s + kx - p.l
					if ix < 0 || ix >= x.w {
						continue
					}
					in := x.d[(iy*x.w+ix)*x.c : (iy*x.w+ix+1)*x.c]
					for c := 0; c < ci; c++ {
						v := in[c]
						fr := f.Data[((ky*kw+kx)*ci+c)*co : ((ky*kw+kx)*ci+c+1)*co]
						for k := range o {
							o[k] += v * float64(fr[k])
						}
					}
				}
			}
		}
	}
	return out
}

// depthwise is tf.depthwiseConv2d with an HWC1 filter.
func depthwise(x *fmap, f *tfjs.Tensor, s int, p pads) *fmap {
	kh, kw := f.Shape[0], f.Shape[1]
	oh := (x.h+p.t+p.b-kh)/s + 1
	ow := (x.w+p.l+p.r-kw)/s + 1
	out := newMap(oh, ow, x.c)
	for y := 0; y < oh; y++ {
		for xx := 0; xx < ow; xx++ {
			for ky := 0; ky < kh; ky++ {
				iy := y*s + ky - p.t
				if iy < 0 || iy >= x.h {
					continue
				}
				for kx := 0; kx < kw; kx++ {
					ix := xx*s + kx - p.l
					if ix < 0 || ix >= x.w {
						continue
					}
					for c := 0; c < x.c; c++ {
						out.d[(y*ow+xx)*x.c+c] += x.at(iy, ix, c) * float64(f.Data[(ky*kw+kx)*x.c+c])
					}
				}
			}
		}
	}
	return out
}

// separable is tf.separableConv2d: depthwise, then a 1x1 conv.
func separable(x *fmap, dw, pw *tfjs.Tensor, s int, p pads) *fmap {
	return conv(depthwise(x, dw, s, p), pw, 1, pads{})
}

func addBias(x *fmap, b *tfjs.Tensor) *fmap {
	for i := range x.d {
		x.d[i] += float64(b.Data[i%x.c])
	}
	return x
}

func apply(x *fmap, f func(float64) float64) *fmap {
	out := newMap(x.h, x.w, x.c)
	for i, v := range x.d {
		out.d[i] = f(v)
	}
	return out
}

func relu(x *fmap) *fmap { return apply(x, func(v float64) float64 { return math.Max(v, 0) }) }

// leaky is tinyYolov2/leaky.ts: relu(x - 0.1x) + 0.1x, 0.1 as float32.
func leaky(x *fmap) *fmap {
	a := float64(float32(0.1))
	return apply(x, func(v float64) float64 { return math.Max(v-a*v, 0) + a*v })
}

func add(xs ...*fmap) *fmap {
	out := newMap(xs[0].h, xs[0].w, xs[0].c)
	for _, x := range xs {
		for i, v := range x.d {
			out.d[i] += v
		}
	}
	return out
}

// maxPool is tf.maxPool; padded positions never win (TF pads with -inf).
func maxPool(x *fmap, k, s int, p pads) *fmap {
	oh := (x.h+p.t+p.b-k)/s + 1
	ow := (x.w+p.l+p.r-k)/s + 1
	out := newMap(oh, ow, x.c)
	for y := 0; y < oh; y++ {
		for xx := 0; xx < ow; xx++ {
			for c := 0; c < x.c; c++ {
				m := math.Inf(-1)
				for ky := 0; ky < k; ky++ {
					for kx := 0; kx < k; kx++ {
						iy, ix := y*s+ky-p.t, xx*s+kx-p.l
						if iy >= 0 && iy < x.h && ix >= 0 && ix < x.w {
							m = math.Max(m, x.at(iy, ix, c))
						}
					}
				}
				out.d[(y*ow+xx)*x.c+c] = m
			}
		}
	}
	return out
}

// avgPool is tf.avgPool with 'valid' padding.
func avgPool(x *fmap, k, s int) *fmap {
	oh, ow := (x.h-k)/s+1, (x.w-k)/s+1
	out := newMap(oh, ow, x.c)
	for y := 0; y < oh; y++ {
		for xx := 0; xx < ow; xx++ {
			for c := 0; c < x.c; c++ {
				var sum float64
				for ky := 0; ky < k; ky++ {
					for kx := 0; kx < k; kx++ {
						sum += x.at(y*s+ky, xx*s+kx, c)
					}
				}
				out.d[(y*ow+xx)*x.c+c] = sum / float64(k*k)
			}
		}
	}
	return out
}

// matMul multiplies a vector by a tfjs [in, out] matrix.
func matMul(v []float64, m *tfjs.Tensor) []float64 {
	in, o := m.Shape[0], m.Shape[1]
	out := make([]float64, o)
	for i := 0; i < in; i++ {
		for k := 0; k < o; k++ {
			out[k] += v[i] * float64(m.Data[i*o+k])
		}
	}
	return out
}

// weights fetches tensors, remembering the first error.
type weights struct {
	w   tfjs.Weights
	err error
}

func (w *weights) get(name string, shape ...int) *tfjs.Tensor {
	t, err := w.w.Get(name, shape...)
	if err != nil {
		if w.err == nil {
			w.err = err
		}
		n := 1
		for _, d := range shape {
			n *= max(d, 1)
		}
		return &tfjs.Tensor{Shape: shape, Data: make([]float32, n)}
	}
	return t
}
