package facenet

import (
	"image"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/internal/facenet/reference"
	"github.com/aibo-privacy/aibo-privacyd/internal/headnet"
	"github.com/aibo-privacy/aibo-privacyd/internal/pgm"
	"github.com/aibo-privacy/aibo-privacyd/internal/tfjs"
)

// Where make setup leaves the package's tfjs files and the converted nets.
var (
	tfjsDir   = filepath.Join("..", "..", "build", "face-api", "model")
	modelsDir = filepath.Join("..", "..", "build", "models")
)

// loadNets loads the converted nets; their absence is a failure, not a
// skip: make test runs make setup first.
func loadNets(t testing.TB) *Nets {
	t.Helper()
	n, err := Load(modelsDir)
	if err != nil {
		t.Fatalf("face models: %v\nrun make setup: it fetches face-api and converts its nets into build/models", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func loadWeights(t testing.TB, name string) tfjs.Weights {
	t.Helper()
	w, err := tfjs.Load(tfjsDir, name)
	if err != nil {
		t.Fatalf("tfjs weights: %v\nrun make setup: it fetches face-api into build/face-api", err)
	}
	return w
}

func orl(t testing.TB, person string, n int) *image.Gray {
	t.Helper()
	return readPGM(t, filepath.Join("..", "..", "testdata", "faces", "orl-"+person+"-"+strconv.Itoa(n)+".pgm"))
}

func readPGM(t testing.TB, path string) *image.Gray {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := pgm.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// colourInput resizes a grey face to w x h and gives its three channels
// different content (so a swapped R and B shows), as a BGR Mat and as the
// reference's RGB image of the same bytes.
func colourInput(t testing.TB, g *image.Gray, w, h int) (gocv.Mat, reference.Image) {
	t.Helper()
	grey, err := gocv.ImageGrayToMatGray(g)
	if err != nil {
		t.Fatal(err)
	}
	defer grey.Close()
	sized := gocv.NewMat()
	defer sized.Close()
	gocv.Resize(grey, &sized, image.Pt(w, h), 0, 0, gocv.InterpolationLinear)
	pix := sized.ToBytes()
	bgr := make([]byte, 3*w*h)
	ref := reference.Image{W: w, H: h, Pix: make([]float64, 3*w*h)}
	for i, v := range pix {
		x, y := i%w, i/w
		r := v
		gch := byte(min(255, int(v)/2+x%64))
		b := byte((int(v) + 3*y) % 256)
		bgr[3*i], bgr[3*i+1], bgr[3*i+2] = b, gch, r
		ref.Pix[3*i], ref.Pix[3*i+1], ref.Pix[3*i+2] = float64(r), float64(gch), float64(b)
	}
	m, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, bgr)
	if err != nil {
		t.Fatal(err)
	}
	return m, ref
}

func maxAbs(t *testing.T, what string, got []float32, want []float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, reference %d", what, len(got), len(want))
	}
	var m float64
	for i := range got {
		m = math.Max(m, math.Abs(float64(got[i])-want[i]))
	}
	return m
}

// golden is the tolerance the converted nets must meet against the
// reference, which runs face-api's TypeScript arithmetic from the same
// tfjs weights.
const golden = 1e-5

var goldenFaces = []struct {
	p string
	n int
}{{"s2", 1}, {"s7", 2}, {"s30", 6}}

func TestGoldenDescriptor(t *testing.T) {
	nets := loadNets(t)
	w := loadWeights(t, "face_recognition_model")
	// One chip: the reference takes seconds a descriptor (a minute under
	// -race); its three channels differ, so one input checks the RGB
	// order, the padding and every layer.
	for _, f := range goldenFaces[:1] {
		m, ref := colourInput(t, orl(t, f.p, f.n), ChipSide, ChipSide)
		got, err := nets.RawDescriptor(m)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, err := reference.Descriptor(w, ref)
		if err != nil {
			t.Fatal(err)
		}
		d := maxAbs(t, "descriptor", got, want)
		t.Logf("%s/%d descriptor: max |onnx - reference| = %.2e", f.p, f.n, d)
		if d > golden {
			t.Errorf("%s/%d: descriptor differs from the reference by %.2e (> %g)", f.p, f.n, d, golden)
		}
	}
}

func TestGoldenLandmarksAndExpressions(t *testing.T) {
	nets := loadNets(t)
	exprNet, err := LoadExpressions(modelsDir)
	if err != nil {
		t.Fatalf("%v\nrun make setup", err)
	}
	defer exprNet.Close()
	wl := loadWeights(t, "face_landmark_68_model")
	we := loadWeights(t, "face_expression_model")
	for _, f := range goldenFaces[:2] {
		m, ref := colourInput(t, orl(t, f.p, f.n), FaceSide, FaceSide)
		got, err := nets.RawLandmarks(m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := reference.Landmarks(wl, ref)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbs(t, "landmarks", got, want); d > golden {
			t.Errorf("%s/%d: landmarks differ from the reference by %.2e", f.p, f.n, d)
		} else {
			t.Logf("%s/%d landmarks: %.2e", f.p, f.n, d)
		}
		got, err = exprNet.RawExpressions(m)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, err = reference.Expressions(we, ref)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbs(t, "expressions", got, want); d > golden {
			t.Errorf("%s/%d: expressions differ from the reference by %.2e", f.p, f.n, d)
		} else {
			t.Logf("%s/%d expressions: %.2e", f.p, f.n, d)
		}
	}
}

// TestGoldenDetector covers both parities of TF's 'same' pooling: 224 and
// 160 give odd sizes after the first pool, 192 even ones.
func TestGoldenDetector(t *testing.T) {
	nets := loadNets(t)
	w := loadWeights(t, "tiny_face_detector_model")
	for _, sz := range []image.Point{{224, 160}, {192, 256}} {
		m, ref := colourInput(t, orl(t, "s12", 1), sz.X, sz.Y)
		got, rows, cols, err := nets.RawDetector(m)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		want, rr, rc, err := reference.Detector(w, ref)
		if err != nil {
			t.Fatal(err)
		}
		if rows != rr || cols != rc {
			t.Fatalf("%v: grid %dx%d, reference %dx%d", sz, rows, cols, rr, rc)
		}
		// ONNX gives planes (NCHW), the reference cells (NHWC).
		nhwc := make([]float32, len(got))
		for c := 0; c < 25; c++ {
			for i := 0; i < rows*cols; i++ {
				nhwc[i*25+c] = got[c*rows*cols+i]
			}
		}
		if d := maxAbs(t, "detector", nhwc, want); d > golden {
			t.Errorf("%v: detector differs from the reference by %.2e", sz, d)
		} else {
			t.Logf("%v detector: %.2e", sz, d)
		}
	}
}

// TestGoldenProposals: the proposal net OpenCV runs (tools/onnxgen's graph
// of internal/headnet's embedded weights) computes what headnet's own Go
// code computes, at two input sizes: a model file made from other weights,
// or a graph that pads or pools differently, fails here.
func TestGoldenProposals(t *testing.T) {
	nets := loadNets(t)
	ref, err := headnet.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, sz := range []image.Point{{432, 240}, {112, 64}} {
		in := gocv.NewMatWithSize(sz.Y, sz.X, gocv.MatTypeCV8UC1)
		x := make([]float32, sz.X*sz.Y)
		for y := 0; y < sz.Y; y++ {
			for xx := 0; xx < sz.X; xx++ {
				v := uint8((xx*7 + y*13 + (xx*y)%29) % 256)
				in.SetUCharAt(y, xx, v)
				x[y*sz.X+xx] = (float32(v) - headnet.Mean) / headnet.Scale
			}
		}
		got, err := nets.rawProposals(in)
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := ref.Forward(x, sz.X, sz.Y)
		if len(got) != len(want) {
			t.Fatalf("%v: %d outputs, want %d", sz, len(got), len(want))
		}
		worst := 0.0
		for i := range got {
			worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
		}
		t.Logf("%v: max abs difference %.2g", sz, worst)
		if worst > 1e-3 {
			t.Errorf("%v: OpenCV's proposal net differs from headnet's by %.3g", sz, worst)
		}
	}
}
