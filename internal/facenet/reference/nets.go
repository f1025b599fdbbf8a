package reference

import (
	"fmt"
	"math"

	"github.com/aibo-privacy/aibo-privacyd/internal/tfjs"
)

// Descriptor is FaceRecognitionNet.forwardInput on a 150x150 RGB chip: the
// 128-D face descriptor.
func Descriptor(w tfjs.Weights, chip Image) ([]float64, error) {
	if chip.W != 150 || chip.H != 150 {
		return nil, fmt.Errorf("reference: descriptor input %dx%d, want 150x150", chip.W, chip.H)
	}
	x, err := normalise(chip, MeanFace)
	if err != nil {
		return nil, err
	}
	ws := &weights{w: w}
	// faceRecognitionNet/convLayer.ts: conv, + bias, scale layer, relu.
	convLayer := func(x *fmap, p string, k, cout, s int, withRelu bool, padding string) *fmap {
		f := ws.get(p+"/conv/filters", k, k, x.c, cout)
		pd := pads{}
		if padding == "same" {
			pd = same(x, k, s)
		}
		out := addBias(conv(x, f, s, pd), ws.get(p+"/conv/bias", cout))
		sw, sb := ws.get(p+"/scale/weights", cout), ws.get(p+"/scale/biases", cout)
		for i := range out.d {
			out.d[i] = out.d[i]*float64(sw.Data[i%cout]) + float64(sb.Data[i%cout])
		}
		if withRelu {
			out = relu(out)
		}
		return out
	}
	residual := func(x *fmap, p string) *fmap {
		out := convLayer(x, p+"/conv1", 3, x.c, 1, true, "same")
		out = convLayer(out, p+"/conv2", 3, x.c, 1, false, "same")
		return relu(add(out, x))
	}
	// residualLayer.ts residualDown.
	residualDown := func(x *fmap, p string, cout int) *fmap {
		out := convLayer(x, p+"/conv1", 3, cout, 2, true, "valid")
		out = convLayer(out, p+"/conv2", 3, cout, 1, false, "same")
		pooled := avgPool(x, 2, 2)
		if pooled.h != out.h || pooled.w != out.w {
			// concat a zero row (axis 1), then a zero column (axis 2)
			grown := newMap(out.h+1, out.w+1, out.c)
			for y := 0; y < out.h; y++ {
				copy(grown.d[(y*grown.w)*out.c:], out.d[y*out.w*out.c:(y+1)*out.w*out.c])
			}
			out = grown
		}
		if pooled.c != out.c {
			wide := newMap(pooled.h, pooled.w, out.c)
			for i := 0; i < pooled.h*pooled.w; i++ {
				copy(wide.d[i*out.c:], pooled.d[i*pooled.c:(i+1)*pooled.c])
			}
			pooled = wide
		}
		return relu(add(pooled, out))
	}
	out := convLayer(x, "conv32_down", 7, 32, 2, true, "valid")
	out = maxPool(out, 3, 2, pads{})
	out = residual(out, "conv32_1")
	out = residual(out, "conv32_2")
	out = residual(out, "conv32_3")
	out = residualDown(out, "conv64_down", 64)
	out = residual(out, "conv64_1")
	out = residual(out, "conv64_2")
	out = residual(out, "conv64_3")
	out = residualDown(out, "conv128_down", 128)
	out = residual(out, "conv128_1")
	out = residual(out, "conv128_2")
	out = residualDown(out, "conv256_down", 256)
	out = residual(out, "conv256_1")
	out = residual(out, "conv256_2")
	out = residualDown(out, "conv256_down_out", 256)
	avg := make([]float64, out.c)
	for i, v := range out.d {
		avg[i%out.c] += v / float64(out.h*out.w)
	}
	fc := ws.get("fc", 256, 128)
	if ws.err != nil {
		return nil, ws.err
	}
	return matMul(avg, fc), nil
}

// features is FaceFeatureExtractor.forwardInput on a 112x112 RGB input.
func features(ws *weights, img Image) ([]float64, error) {
	if img.W != 112 || img.H != 112 {
		return nil, fmt.Errorf("reference: input %dx%d, want 112x112", img.W, img.H)
	}
	x, err := normalise(img, MeanFace)
	if err != nil {
		return nil, err
	}
	// common/depthwiseSeparableConv.ts: separableConv2d 'same', + bias.
	sep := func(x *fmap, p string, cout, s int) *fmap {
		dw := ws.get(p+"/depthwise_filter", 3, 3, x.c, 1)
		pw := ws.get(p+"/pointwise_filter", 1, 1, x.c, cout)
		return addBias(separable(x, dw, pw, s, same(x, 3, s)), ws.get(p+"/bias", cout))
	}
	// faceFeatureExtractor/denseBlock.ts denseBlock4.
	dense4 := func(x *fmap, p string, cout int, first bool) *fmap {
		var out1 *fmap
		if first {
			f := ws.get(p+"/conv0/filters", 3, 3, x.c, cout)
			out1 = relu(addBias(conv(x, f, 2, same(x, 3, 2)), ws.get(p+"/conv0/bias", cout)))
		} else {
			out1 = relu(sep(x, p+"/conv0", cout, 2))
		}
		out2 := sep(out1, p+"/conv1", cout, 1)
		in3 := relu(add(out1, out2))
		out3 := sep(in3, p+"/conv2", cout, 1)
		in4 := relu(add(out1, out2, out3))
		out4 := sep(in4, p+"/conv3", cout, 1)
		return relu(add(out1, out2, out3, out4))
	}
	out := dense4(x, "dense0", 32, true)
	out = dense4(out, "dense1", 64, false)
	out = dense4(out, "dense2", 128, false)
	out = dense4(out, "dense3", 256, false)
	out = avgPool(out, 7, 2)
	return out.d, nil
}

// Landmarks is FaceLandmark68Net's raw output on a 112x112 RGB face: 136
// values, x0 y0 x1 y1 ..., as fractions of the input's side.
func Landmarks(w tfjs.Weights, face Image) ([]float64, error) {
	ws := &weights{w: w}
	f, err := features(ws, face)
	if err != nil {
		return nil, err
	}
	fc, bias := ws.get("fc/weights", 256, 136), ws.get("fc/bias", 136)
	if ws.err != nil {
		return nil, ws.err
	}
	out := matMul(f, fc)
	for i := range out {
		out[i] += float64(bias.Data[i])
	}
	return out, nil
}

// Expressions is FaceExpressionNet.forwardInput on a 112x112 RGB face: the
// softmax over neutral, happy, sad, angry, fearful, disgusted, surprised.
func Expressions(w tfjs.Weights, face Image) ([]float64, error) {
	ws := &weights{w: w}
	f, err := features(ws, face)
	if err != nil {
		return nil, err
	}
	fc, bias := ws.get("fc/weights", 256, 7), ws.get("fc/bias", 7)
	if ws.err != nil {
		return nil, ws.err
	}
	out := matMul(f, fc)
	var sum float64
	m := math.Inf(-1)
	for i := range out {
		out[i] += float64(bias.Data[i])
		m = math.Max(m, out[i])
	}
	for i := range out {
		out[i] = math.Exp(out[i] - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out, nil
}

// Detector is TinyFaceDetector's raw output (TinyYolov2Base.runMobilenet) on
// an RGB input: rows x cols x 25 values (5 anchors x x, y, w, h, score), in
// that order.
func Detector(w tfjs.Weights, img Image) (out []float64, rows, cols int, err error) {
	x, err := normalise(img, MeanDetector)
	if err != nil {
		return nil, 0, 0, err
	}
	ws := &weights{w: w}
	o := leaky(addBias(conv(x, ws.get("conv0/filters", 3, 3, 3, 16), 1, pads{}), ws.get("conv0/bias", 16)))
	o = maxPool(o, 2, 2, same(o, 2, 2))
	for i, cout := range []int{32, 64, 128, 256, 512} {
		p := fmt.Sprintf("conv%d", i+1)
		// tinyYolov2/depthwiseSeparableConv.ts: pad 1, separable 'valid', bias, leaky
		dw := ws.get(p+"/depthwise_filter", 3, 3, o.c, 1)
		pw := ws.get(p+"/pointwise_filter", 1, 1, o.c, cout)
		o = leaky(addBias(separable(o, dw, pw, 1, pads{1, 1, 1, 1}), ws.get(p+"/bias", cout)))
		if cout < 512 {
			o = maxPool(o, 2, 2, same(o, 2, 2))
		} else {
			o = maxPool(o, 2, 1, same(o, 2, 1))
		}
	}
	o = addBias(conv(o, ws.get("conv8/filters", 1, 1, 512, 25), 1, pads{}), ws.get("conv8/bias", 25))
	if ws.err != nil {
		return nil, 0, 0, ws.err
	}
	return o.d, o.h, o.w, nil
}
