package score

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg"
	"math/bits"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/synth"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
)

const testdata = "../../testdata/score"

// faceModels is where make setup converts the face nets.
var faceModels = filepath.Join("..", "..", "build", "models")

var (
	scorerOnce sync.Once
	scorer     *Scorer
	scorerErr  error
)

func testScorer(t testing.TB) *Scorer {
	t.Helper()
	scorerOnce.Do(func() {
		SetThreads(1)
		scorer, scorerErr = New(Options{FaceModels: faceModels})
	})
	if scorerErr != nil {
		t.Fatalf("%v\nrun make setup: it converts the face nets into build/models", scorerErr)
	}
	return scorer
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeRGBA(t testing.TB, data []byte) *image.RGBA {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return synth.RGBA(img)
}

var noon = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func mustScore(t testing.TB, s *Scorer, data []byte) Result {
	t.Helper()
	r, err := s.Score(data, noon)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// cutAtEdge shifts the photo left so its subject's face is half outside the
// frame, filling the right with grey.
func cutAtEdge(src *image.RGBA, shift int) *image.RGBA {
	dst := image.NewRGBA(src.Bounds())
	draw.Draw(dst, dst.Bounds(), &image.Uniform{color.RGBA{128, 128, 128, 255}}, image.Point{}, draw.Src)
	draw.Draw(dst, dst.Bounds(), src, image.Pt(shift, 0), draw.Src)
	return dst
}

// TestCleanBeatsDegraded: the committed portrait beats its blurred, dark,
// overexposed, noisy and cut copies, made here from it.
func TestCleanBeatsDegraded(t *testing.T) {
	s := testScorer(t)
	clean := decodeRGBA(t, readFile(t, "astronaut.jpg"))
	base := mustScore(t, s, synth.JPEG(clean, 92))
	if len(base.Faces) != 1 {
		t.Fatalf("clean portrait: %d faces, want 1 (%+v)", len(base.Faces), base.Faces)
	}
	f := base.Faces[0].Box
	// Eileen Collins' face sits around x 140..210, y 60..150 of the 400 px
	// portrait.
	if c := (f.Min.X + f.Max.X) / 2; c < 140 || c > 220 || f.Dx() < 50 || f.Dx() > 130 {
		t.Errorf("face box %v is not where the face is", f)
	}
	for _, tc := range []struct {
		name string
		img  *image.RGBA
	}{
		{"blurred", synth.Blur(clean, 2)},
		{"dark", synth.Exposure(clean, 0.12)},
		{"overexposed", synth.Exposure(clean, 4)},
		{"noisy", synth.Noise(clean, 18, 1)},
		{"cut", cutAtEdge(clean, f.Min.X+f.Dx()/2)},
	} {
		r := mustScore(t, s, synth.JPEG(tc.img, 92))
		if r.Score >= base.Score {
			t.Errorf("%s copy scores %.3f >= clean %.3f\n clean %v\n %s %v", tc.name, r.Score, base.Score, base.Breakdown, tc.name, r.Breakdown)
		}
	}
}

// TestNoiseDoesNotPassForSharpness: heavy noise raises the variance of the
// Laplacian; the sharpness feature must not rise with it.
func TestNoiseDoesNotPassForSharpness(t *testing.T) {
	s := testScorer(t)
	clean := decodeRGBA(t, readFile(t, "astronaut.jpg"))
	a := mustScore(t, s, synth.JPEG(clean, 92))
	b := mustScore(t, s, synth.JPEG(synth.Noise(clean, 18, 2), 92))
	if b.Breakdown[weights.Sharpness] > a.Breakdown[weights.Sharpness]+0.05 {
		t.Errorf("noisy sharpness %.3f > clean %.3f", b.Breakdown[weights.Sharpness], a.Breakdown[weights.Sharpness])
	}
	if b.Breakdown[weights.Noise] > 0.3 || a.Breakdown[weights.Noise] < 0.9 {
		t.Errorf("noise feature: clean %.2f, noisy %.2f", a.Breakdown[weights.Noise], b.Breakdown[weights.Noise])
	}
	// The noise estimate itself: grey noise of RGB noise sigma 18 is ~12.
	if sg := b.Measures["noise_sigma"]; sg < 8 || sg > 16 {
		t.Errorf("noise sigma estimated %.1f, added ~12", sg)
	}
	c := mustScore(t, s, synth.JPEG(synth.Blur(clean, 2), 92))
	if c.Breakdown[weights.Sharpness] >= a.Breakdown[weights.Sharpness]-0.1 {
		t.Errorf("blurred sharpness %.3f vs clean %.3f", c.Breakdown[weights.Sharpness], a.Breakdown[weights.Sharpness])
	}
}

// TestNoPeopleBelowFace: a good scene without people scores below a good
// photo with a person.
func TestNoPeopleBelowFace(t *testing.T) {
	s := testScorer(t)
	face := mustScore(t, s, readFile(t, "astronaut.jpg"))
	scene := mustScore(t, s, readFile(t, "coffee.jpg"))
	if len(scene.Faces) != 0 {
		t.Errorf("faces found in the coffee cup: %+v", scene.Faces)
	}
	if scene.Breakdown[weights.Faces] != 0 || scene.Breakdown[weights.Smile] != 0 {
		t.Errorf("face features without a face: %v", scene.Breakdown)
	}
	if scene.Score >= face.Score {
		t.Errorf("scene %.3f >= portrait %.3f", scene.Score, face.Score)
	}
}

func TestBreakdownComplete(t *testing.T) {
	s := testScorer(t)
	for _, name := range []string{"astronaut.jpg", "coffee.jpg", "genki-smile-file1633.jpg"} {
		r := mustScore(t, s, readFile(t, name))
		for _, f := range weights.Features {
			v, ok := r.Breakdown[f]
			if !ok || v < 0 || v > 1 {
				t.Errorf("%s: %s = %v (present %v)", name, f, v, ok)
			}
		}
		if r.Score <= 0 || r.Score >= 1 {
			t.Errorf("%s: score %v", name, r.Score)
		}
		if r.Score != weights.Defaults().Score(r.Breakdown) {
			t.Errorf("%s: score is not the weighted breakdown", name)
		}
	}
}

func TestSmilingPortrait(t *testing.T) {
	s := testScorer(t)
	r := mustScore(t, s, readFile(t, "astronaut.jpg"))
	if len(r.Faces) != 1 || r.Faces[0].Smile < 0.5 {
		t.Fatalf("Eileen Collins smiles; got %+v", r.Faces)
	}
	if r.Faces[0].EyesOpen < 0.5 {
		t.Errorf("her eyes are open; got %.2f", r.Faces[0].EyesOpen)
	}
}

func TestWeightsOption(t *testing.T) {
	w := weights.Defaults()
	w.W[weights.Faces] = 10
	s, err := New(Options{Weights: &w, FaceModels: faceModels})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := mustScore(t, s, readFile(t, "astronaut.jpg"))
	b := mustScore(t, testScorer(t), readFile(t, "astronaut.jpg"))
	if a.Score <= b.Score {
		t.Fatalf("heavier face weight did not raise the score: %.4f vs %.4f", a.Score, b.Score)
	}
}

func TestPHash(t *testing.T) {
	s := testScorer(t)
	portrait := decodeRGBA(t, readFile(t, "astronaut.jpg"))
	a := mustScore(t, s, synth.JPEG(portrait, 92))
	b := mustScore(t, s, synth.JPEG(synth.Exposure(synth.Noise(portrait, 4, 3), 1.2), 70))
	c := mustScore(t, s, readFile(t, "coffee.jpg"))
	if d := bits.OnesCount64(a.PHash ^ b.PHash); d > 10 {
		t.Errorf("re-encoded, brighter copy differs in %d bits", d)
	}
	if d := bits.OnesCount64(a.PHash ^ c.PHash); d <= 10 {
		t.Errorf("different photos differ in only %d bits", d)
	}
}

// pngClaiming returns a valid PNG signature and IHDR that claim w x h.
func pngClaiming(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b = append(b, chunk...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
}

// TestCorruptInput: bytes that are not a photo give an error, never a crash
// or a score.
func TestCorruptInput(t *testing.T) {
	s := testScorer(t)
	photo := readFile(t, "astronaut.jpg")
	random := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(random)
	flipped := append([]byte(nil), photo...)
	for i := 600; i < len(flipped); i += 97 {
		flipped[i] ^= 0x5A
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"random", random, ErrFormat},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), ErrFormat},
		{"truncated jpeg", photo[:len(photo)/2], ErrDecode},
		{"jpeg header only", photo[:300], ErrDecode},
		{"png claiming 50000x50000", pngClaiming(50000, 50000), ErrTooLarge},
		{"png without pixels", pngClaiming(64, 64), ErrDecode},
		{"tiny", synth.JPEG(image.NewRGBA(image.Rect(0, 0, 4, 4)), 90), ErrDecode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Score(tc.data, noon)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Damaged scan data decodes to something (libjpeg recovers); it must
	// not crash, whatever it returns.
	s.Score(flipped, noon)
}

func TestFeatureCurves(t *testing.T) {
	if timeOfDay(time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)) >= timeOfDay(noon) {
		t.Error("3 am scores as well as noon")
	}
	if timeOfDay(time.Time{}) != 0.5 {
		t.Error("unknown time is not neutral")
	}
	// The hour is the photo's own clock reading, whatever its zone.
	evening := time.Date(2026, 5, 1, 23, 30, 0, 0, time.FixedZone("PDT", -7*3600))
	if timeOfDay(evening) != 0.2 {
		t.Errorf("23:30 local: %v", timeOfDay(evening))
	}
	full := image.Rect(0, 0, 1280, 720)
	centred := image.Rect(540, 180, 740, 400)
	cut := image.Rect(-100, 180, 100, 400).Intersect(full)
	if placementScore(cut, 1280, 720) >= placementScore(centred, 1280, 720) {
		t.Error("a face at the edge is placed as well as a centred one")
	}
	if faceSizeScore(image.Rect(0, 0, 20, 20), 1280, 720) >= faceSizeScore(centred, 1280, 720) {
		t.Error("a tiny face counts as much as a subject")
	}
	if noiseScore(1) != 1 || noiseScore(20) != 0 {
		t.Error("noise curve")
	}
}

func TestSelectKth(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := 1; n < 200; n += 7 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Intn(20))
		}
		k := rng.Intn(n)
		selectKth(v, k)
		for i := range v {
			if (i < k && v[i] > v[k]) || (i > k && v[i] < v[k]) {
				t.Fatalf("n=%d k=%d: v[%d]=%v vs v[k]=%v", n, k, i, v[i], v[k])
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	photo, err := os.ReadFile(filepath.Join(testdata, "coffee.jpg"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(photo)
	f.Add(photo[:len(photo)/3])
	f.Add(pngClaiming(50000, 50000))
	f.Add([]byte{0xFF, 0xD8, 0xFF})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, 4_000_000)
		if err == nil {
			if m.Empty() || m.Cols()*m.Rows() > 4_000_000 {
				t.Fatalf("accepted %dx%d", m.Cols(), m.Rows())
			}
			m.Close()
		}
	})
}

// TestSmallFaceFound: a person across the room (a face of about 9% of the
// frame's height) is still found, by the detection pass on the larger
// frame.
func TestSmallFaceFound(t *testing.T) {
	s := testScorer(t)
	portrait := decodeRGBA(t, readFile(t, "astronaut.jpg"))
	head := portrait.SubImage(image.Rect(109, 8, 242, 180))
	frame := synth.Fill(decodeRGBA(t, readFile(t, "coffee.jpg")), 1280, 720)
	at := image.Rect(300, 200, 300+88, 200+114) // the face itself is ~65 px high
	synth.Paste(frame, head, at, 0.1)
	r := mustScore(t, s, synth.JPEG(frame, 90))
	if len(r.Faces) != 1 || !r.Faces[0].Box.Overlaps(at) {
		t.Fatalf("faces %+v, want one inside %v", r.Faces, at)
	}
}

// TestDetectMatchesScore: Detect finds the same boxes Score measures.
func TestDetectMatchesScore(t *testing.T) {
	s := testScorer(t)
	for _, name := range []string{"astronaut.jpg", "coffee.jpg"} {
		data := readFile(t, name)
		img, err := Decode(data, 0)
		if err != nil {
			t.Fatal(err)
		}
		boxes, err := s.Detect(img)
		img.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := mustScore(t, s, data)
		if len(boxes) != len(r.Faces) {
			t.Fatalf("%s: Detect %v, Score %+v", name, boxes, r.Faces)
		}
		for i := range boxes {
			if boxes[i] != r.Faces[i].Box {
				t.Errorf("%s: box %d: %v vs %v", name, i, boxes[i], r.Faces[i].Box)
			}
		}
	}
}
