package main

import (
	"fmt"

	"github.com/aibo-privacy/aibo-privacyd/internal/headnet"
	"github.com/aibo-privacy/aibo-privacyd/internal/tfjs"
)

// The four nets of @vladmandic/face-api@1.7.15 the vision worker runs,
// rebuilt as ONNX graphs from the architecture its src/ states (file names
// below are relative to the package's src/). Tensors are NCHW here where
// tfjs is NHWC; filters go from HWIO to OIHW.

// netBuilder turns a tfjs weight map into an ONNX graph; errors name the
// tensor that is missing or misshapen.
type netBuilder struct {
	g   graph
	w   tfjs.Weights
	err error
}

func (b *netBuilder) get(name string, shape ...int) *tfjs.Tensor {
	if b.err != nil {
		return &tfjs.Tensor{Shape: shape, Data: make([]float32, max(0, numel(shape)))}
	}
	t, err := b.w.Get(name, shape...)
	if err != nil {
		b.err = err
		n := 1
		for _, d := range shape {
			n *= max(d, 1)
		}
		return &tfjs.Tensor{Shape: shape, Data: make([]float32, n)}
	}
	return t
}

// oihw transposes an HWIO filter, multiplying output channel o by scale[o]
// when scale is not nil (a folded scale layer).
func oihw(t *tfjs.Tensor, scale []float32) ([]float32, []int) {
	h, w, i, o := t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
	out := make([]float32, len(t.Data))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < i; c++ {
				for k := 0; k < o; k++ {
					v := float64(t.Data[((y*w+x)*i+c)*o+k])
					if scale != nil {
						v *= float64(scale[k])
					}
					out[((k*i+c)*h+y)*w+x] = float32(v)
				}
			}
		}
	}
	return out, []int{o, i, h, w}
}

// depthwiseOIHW turns an HWC1 depthwise filter into C x 1 x H x W (group = C).
func depthwiseOIHW(t *tfjs.Tensor) ([]float32, []int) {
	h, w, c := t.Shape[0], t.Shape[1], t.Shape[2]
	out := make([]float32, len(t.Data))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for k := 0; k < c; k++ {
				out[(k*h+y)*w+x] = t.Data[(y*w+x)*c+k]
			}
		}
	}
	return out, []int{c, 1, h, w}
}

// conv adds a Conv node. pads are top, left, bottom, right.
func (b *netBuilder) conv(x string, w []float32, dims []int, bias []float32, stride int, pads [4]int, group int) string {
	return b.convTo("", x, w, dims, bias, stride, pads, group)
}

// convTo is conv with a named output ("" for a fresh name).
func (b *netBuilder) convTo(out, x string, w []float32, dims []int, bias []float32, stride int, pads [4]int, group int) string {
	if bias == nil {
		bias = make([]float32, dims[0])
	}
	return b.g.op("Conv", []string{x, b.g.constFloat(w, dims...), b.g.constFloat(bias, len(bias))}, out,
		intsAttr("kernel_shape", int64(dims[2]), int64(dims[3])),
		intsAttr("strides", int64(stride), int64(stride)),
		intsAttr("pads", int64(pads[0]), int64(pads[1]), int64(pads[2]), int64(pads[3])),
		intsAttr("dilations", 1, 1),
		intAttr("group", int64(group)))
}

func (b *netBuilder) relu(x string) string { return b.g.op("Relu", []string{x}, "") }

func (b *netBuilder) add(x, y string) string { return b.g.op("Add", []string{x, y}, "") }

// gemm adds x (N x in) times fc (tfjs [in, out]) plus bias (nil: zero).
func (b *netBuilder) gemm(x string, fc *tfjs.Tensor, bias []float32, out string) string {
	in, o := fc.Shape[0], fc.Shape[1]
	t := make([]float32, len(fc.Data)) // [out, in], used with transB
	for i := 0; i < in; i++ {
		for k := 0; k < o; k++ {
			t[k*in+i] = fc.Data[i*o+k]
		}
	}
	if bias == nil {
		bias = make([]float32, o)
	}
	return b.g.op("Gemm", []string{x, b.g.constFloat(t, o, in), b.g.constFloat(bias, o)}, out,
		floatAttr("alpha", 1), floatAttr("beta", 1), intAttr("transB", 1))
}

// ---------------------------------------------------------------- recognition

// recognitionNet is FaceRecognitionNet (faceRecognitionNet/*.ts): dlib's
// ResNet-29 on a 150x150 RGB chip, input (x - mean)/255, 128-D output. Each
// conv is followed by a scale layer (x*weights + biases), folded here into
// the conv's filters and bias.
func recognitionNet(w tfjs.Weights) ([]byte, error) {
	b := &netBuilder{g: graph{name: "face_recognition"}, w: w}
	convLayer := func(x, p string, cin, cout, k, stride int, same, relu bool) string {
		f := b.get(p+"/conv/filters", k, k, cin, cout)
		bias := b.get(p+"/conv/bias", cout)
		sw := b.get(p+"/scale/weights", cout)
		sb := b.get(p+"/scale/biases", cout)
		wf, dims := oihw(f, sw.Data)
		bf := make([]float32, cout)
		for o := range bf {
			bf[o] = float32(float64(bias.Data[o])*float64(sw.Data[o]) + float64(sb.Data[o]))
		}
		pads := [4]int{}
		if same { // stride 1 only: symmetric
			pads = [4]int{k / 2, k / 2, k / 2, k / 2}
		}
		out := b.conv(x, wf, dims, bf, stride, pads, 1)
		if relu {
			out = b.relu(out)
		}
		return out
	}
	residual := func(x, p string, c int) string {
		o := convLayer(x, p+"/conv1", c, c, 3, 1, true, true)
		o = convLayer(o, p+"/conv2", c, c, 3, 1, true, false)
		return b.relu(b.add(o, x))
	}
	// residualDown: conv 3x3 stride 2 'valid', conv 3x3; the shortcut is a
	// 2x2 average pool, its channels zero-padded to cout (a 2x2 stride-2
	// conv with 0.25 on the diagonal does both), and when the conv path comes
	// out one smaller, the TypeScript appends a zero row and column: Pad.
	residualDown := func(x, p string, cin, cout, hw int) (string, int) {
		o := convLayer(x, p+"/conv1", cin, cout, 3, 2, false, true)
		o = convLayer(o, p+"/conv2", cout, cout, 3, 1, true, false)
		pool := make([]float32, cout*cin*4)
		for c := 0; c < cin; c++ {
			for k := 0; k < 4; k++ {
				pool[(c*cin+c)*4+k] = 0.25
			}
		}
		pooled := b.conv(x, pool, []int{cout, cin, 2, 2}, nil, 2, [4]int{}, 1)
		hConv, hPool := (hw-3)/2+1, hw/2
		switch hPool - hConv {
		case 0:
		case 1:
			o = b.g.op("Pad", []string{o, b.g.constInt64(0, 0, 0, 0, 0, 0, 1, 1)}, "", strAttr("mode", "constant"))
		default:
			b.err = fmt.Errorf("onnxgen: %s: conv path %d vs pooled %d", p, hConv, hPool)
		}
		return b.relu(b.add(pooled, o)), hPool
	}
	out := convLayer("input", "conv32_down", 3, 32, 7, 2, false, true) // 150 -> 72
	out = b.g.op("MaxPool", []string{out}, "", intsAttr("kernel_shape", 3, 3), intsAttr("strides", 2, 2), intsAttr("pads", 0, 0, 0, 0))
	hw := 35
	for _, p := range []string{"conv32_1", "conv32_2", "conv32_3"} {
		out = residual(out, p, 32)
	}
	out, hw = residualDown(out, "conv64_down", 32, 64, hw)
	for _, p := range []string{"conv64_1", "conv64_2", "conv64_3"} {
		out = residual(out, p, 64)
	}
	out, hw = residualDown(out, "conv128_down", 64, 128, hw)
	for _, p := range []string{"conv128_1", "conv128_2"} {
		out = residual(out, p, 128)
	}
	out, hw = residualDown(out, "conv256_down", 128, 256, hw)
	for _, p := range []string{"conv256_1", "conv256_2"} {
		out = residual(out, p, 256)
	}
	out, _ = residualDown(out, "conv256_down_out", 256, 256, hw)
	out = b.g.op("GlobalAveragePool", []string{out}, "")
	out = b.g.op("Flatten", []string{out}, "", intAttr("axis", 1))
	b.gemm(out, b.get("fc", 256, 128), nil, "descriptor")
	if b.err != nil {
		return nil, b.err
	}
	return b.g.model(valueInfo("input", 1, 3, 150, 150), valueInfo("descriptor", 1, 128)), nil
}

// ---------------------------------------------------------------- landmarks and expressions

// featureExtractor is FaceFeatureExtractor (faceFeatureExtractor/*.ts): four
// dense blocks of depthwise-separable convs on a 112x112 RGB input, then a
// 7x7 stride-2 average pool: 256 features. TF's 'same' padding with
// stride 2 on an even size pads one row and column at the bottom and right
// only.
func (b *netBuilder) featureExtractor() string {
	sep := func(x, p string, c, cout, stride int) string {
		dw, ddims := depthwiseOIHW(b.get(p+"/depthwise_filter", 3, 3, c, 1))
		pw, pdims := oihw(b.get(p+"/pointwise_filter", 1, 1, c, cout), nil)
		pads := [4]int{1, 1, 1, 1}
		if stride == 2 {
			pads = [4]int{0, 0, 1, 1}
		}
		o := b.conv(x, dw, ddims, nil, stride, pads, c)
		return b.conv(o, pw, pdims, b.get(p+"/bias", cout).Data, 1, [4]int{}, 1)
	}
	dense4 := func(x, p string, cin, cout int, first bool) string {
		var out1 string
		if first {
			f, dims := oihw(b.get(p+"/conv0/filters", 3, 3, cin, cout), nil)
			out1 = b.relu(b.conv(x, f, dims, b.get(p+"/conv0/bias", cout).Data, 2, [4]int{0, 0, 1, 1}, 1))
		} else {
			out1 = b.relu(sep(x, p+"/conv0", cin, cout, 2))
		}
		out2 := sep(out1, p+"/conv1", cout, cout, 1)
		s12 := b.add(out1, out2)
		out3 := sep(b.relu(s12), p+"/conv2", cout, cout, 1)
		s123 := b.add(s12, out3)
		out4 := sep(b.relu(s123), p+"/conv3", cout, cout, 1)
		return b.relu(b.add(s123, out4))
	}
	out := dense4("input", "dense0", 3, 32, true)
	out = dense4(out, "dense1", 32, 64, false)
	out = dense4(out, "dense2", 64, 128, false)
	out = dense4(out, "dense3", 128, 256, false)
	out = b.g.op("AveragePool", []string{out}, "", intsAttr("kernel_shape", 7, 7), intsAttr("strides", 2, 2), intsAttr("pads", 0, 0, 0, 0))
	return b.g.op("Flatten", []string{out}, "", intAttr("axis", 1))
}

// landmarkNet is FaceLandmark68Net: the feature extractor and a fully
// connected layer to 136 values, x0 y0 x1 y1 ... relative to the input.
func landmarkNet(w tfjs.Weights) ([]byte, error) {
	b := &netBuilder{g: graph{name: "face_landmark_68"}, w: w}
	feat := b.featureExtractor()
	b.gemm(feat, b.get("fc/weights", 256, 136), b.get("fc/bias", 136).Data, "landmarks")
	if b.err != nil {
		return nil, b.err
	}
	return b.g.model(valueInfo("input", 1, 3, 112, 112), valueInfo("landmarks", 1, 136)), nil
}

// expressionNet is FaceExpressionNet: the same extractor (its own weights),
// a fully connected layer to 7 classes and a softmax, in the order neutral,
// happy, sad, angry, fearful, disgusted, surprised.
func expressionNet(w tfjs.Weights) ([]byte, error) {
	b := &netBuilder{g: graph{name: "face_expression"}, w: w}
	feat := b.featureExtractor()
	logits := b.gemm(feat, b.get("fc/weights", 256, 7), b.get("fc/bias", 7).Data, "")
	b.g.op("Softmax", []string{logits}, "expressions", intAttr("axis", 1))
	if b.err != nil {
		return nil, b.err
	}
	return b.g.model(valueInfo("input", 1, 3, 112, 112), valueInfo("expressions", 1, 7)), nil
}

// ---------------------------------------------------------------- detector

// DetectorDeclaredSide is the input size written into the detector's graph.
// The graph is fully convolutional and OpenCV runs it on any input whose
// sides are multiples of 32; the pooling below pads exactly as TF's 'same'
// does for either parity.
const DetectorDeclaredSide = 416

// detectorNet is TinyFaceDetector (tinyFaceDetector/*.ts, tinyYolov2/
// TinyYolov2Base.ts runMobilenet): a 3x3 'valid' conv, five
// depthwise-separable convs (explicit 1-pixel pad, then 'valid'), each
// followed by leaky ReLU (0.1) and a 2x2 max pool ('same': stride 2 for the
// first five, stride 1 for the last), and a 1x1 conv to 5 anchors x (x, y,
// w, h, score) per 32x32 cell.
func detectorNet(w tfjs.Weights) ([]byte, error) {
	b := &netBuilder{g: graph{name: "tiny_face_detector"}, w: w}
	leaky := func(x string) string { return b.g.op("LeakyRelu", []string{x}, "", floatAttr("alpha", 0.1)) }
	// TF 'same' 2x2/2: ceil_mode adds the last, half-outside window of an
	// odd side (max over what is inside, as TF's -inf padding gives).
	pool2 := func(x string) string {
		return b.g.op("MaxPool", []string{x}, "", intsAttr("kernel_shape", 2, 2), intsAttr("strides", 2, 2), intsAttr("pads", 0, 0, 0, 0), intAttr("ceil_mode", 1))
	}
	f, dims := oihw(b.get("conv0/filters", 3, 3, 3, 16), nil)
	out := pool2(leaky(b.conv("input", f, dims, b.get("conv0/bias", 16).Data, 1, [4]int{}, 1)))
	cin := 16
	for i, cout := range []int{32, 64, 128, 256, 512} {
		p := fmt.Sprintf("conv%d", i+1)
		dw, ddims := depthwiseOIHW(b.get(p+"/depthwise_filter", 3, 3, cin, 1))
		pw, pdims := oihw(b.get(p+"/pointwise_filter", 1, 1, cin, cout), nil)
		o := b.conv(out, dw, ddims, nil, 1, [4]int{1, 1, 1, 1}, cin)
		out = leaky(b.conv(o, pw, pdims, b.get(p+"/bias", cout).Data, 1, [4]int{}, 1))
		if cout < 512 {
			out = pool2(out)
		} else {
			out = b.g.op("MaxPool", []string{out}, "", intsAttr("kernel_shape", 2, 2), intsAttr("strides", 1, 1), intsAttr("pads", 0, 0, 1, 1))
		}
		cin = cout
	}
	f, dims = oihw(b.get("conv8/filters", 1, 1, 512, 25), nil)
	b.convTo("boxes", out, f, dims, b.get("conv8/bias", 25).Data, 1, [4]int{}, 1)
	if b.err != nil {
		return nil, b.err
	}
	s := DetectorDeclaredSide
	g := DetectorGrid(s)
	return b.g.model(valueInfo("input", 1, 3, s, s), valueInfo("boxes", 1, 25, g, g)), nil
}

// DetectorGrid is the number of cells along a side of n input pixels: the
// 'valid' first conv takes 2, each of the five stride-2 pools halves,
// rounding up.
func DetectorGrid(n int) int {
	n -= 2
	for i := 0; i < 5; i++ {
		n = (n + 1) / 2
	}
	return n
}

// ------------------------------------------------------------------ proposals

// proposalsFile is facenet.ProposalsFile (onnxgen links no OpenCV, so it
// cannot import facenet).
const proposalsFile = "face_proposals.onnx"

// proposalNet is internal/headnet's net from its embedded weights: each
// layer a convolution (padding k/2) followed by ReLU and, where the layer
// says, a 2x2 max pool, the last one linear. Its input is declared at a
// third of a 1280x720 frame; OpenCV runs it on any size whose sides are
// multiples of headnet.Stride.
func proposalNet() ([]byte, error) {
	net, err := headnet.Default()
	if err != nil {
		return nil, err
	}
	g := graph{name: "face_proposals"}
	x := "input"
	last := len(headnet.Arch) - 1
	for i, l := range headnet.Arch {
		out := ""
		if i == last {
			out = "marks"
		}
		p := int64(l.K / 2)
		x = g.op("Conv", []string{x, g.constFloat(net.W[i], l.Out, l.In, l.K, l.K), g.constFloat(net.B[i], l.Out)}, out,
			intsAttr("kernel_shape", int64(l.K), int64(l.K)),
			intsAttr("strides", int64(l.Stride), int64(l.Stride)),
			intsAttr("pads", p, p, p, p),
			intsAttr("dilations", 1, 1),
			intAttr("group", 1))
		if i == last {
			break
		}
		x = g.op("Relu", []string{x}, "")
		if l.Pool {
			x = g.op("MaxPool", []string{x}, "", intsAttr("kernel_shape", 2, 2), intsAttr("strides", 2, 2), intsAttr("pads", 0, 0, 0, 0))
		}
	}
	const w, h = 432, 240
	ow, oh := headnet.OutSize(w, h)
	return g.model(valueInfo("input", 1, 1, h, w), valueInfo("marks", 1, 2, oh, ow)), nil
}
