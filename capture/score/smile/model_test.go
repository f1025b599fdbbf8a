package smile

import (
	"image"
	_ "image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommittedCrops: the embedded model tells the committed GENKI-4K test
// crops (never trained on) apart. The quality report measures the whole
// test split; this guards against a broken model file or input pipeline.
func TestCommittedCrops(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../../../testdata/score/genki-*.jpg")
	if len(files) < 10 {
		t.Fatalf("only %d committed crops", len(files))
	}
	var hit, n [2]float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := image.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		if strings.Contains(f, "genki-smile-") {
			k = 1
		}
		p := m.Prob(CropFromImage(img))
		n[k]++
		if (p > 0.5) == (k == 1) {
			hit[k]++
		} else {
			t.Logf("%s: p(smile) = %.2f", filepath.Base(f), p)
		}
	}
	if bal := (hit[0]/n[0] + hit[1]/n[1]) / 2; bal < 0.8 {
		t.Fatalf("balanced accuracy %.2f on the committed crops", bal)
	}
}

func TestDegenerateCrops(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Crop{{}, {W: 4, H: 4, Pix: make([]float32, 16)}, {W: 10, H: 10, Pix: make([]float32, 3)}} {
		if p := m.Prob(c); p != 0.5 {
			t.Errorf("crop %dx%d: %v, want 0.5", c.W, c.H, p)
		}
	}
	flat := Crop{W: 64, H: 64, Pix: make([]float32, 64*64)}
	if p := m.Prob(flat); p != p || p < 0 || p > 1 {
		t.Errorf("flat crop: %v", p)
	}
	big := Crop{W: 500, H: 400, Pix: make([]float32, 500*400)}
	for i := range big.Pix {
		big.Pix[i] = float32(i % 251)
	}
	if p := m.Prob(big); p < 0 || p > 1 {
		t.Errorf("large crop: %v", p)
	}
}
