package headnet

import (
	"math"
	"math/rand"
	"testing"
)

// TestGradientMatchesFiniteDifferences: the trainer's backward pass is the
// derivative of its loss, layer by layer (a wrong gradient trains a net
// that marks nothing, silently).
func TestGradientMatchesFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	n := NewNet(rng.NormFloat64)
	for i := range n.B {
		for j := range n.B[i] {
			n.B[i][j] = float32(0.1 * rng.NormFloat64())
		}
	}
	const side = 32
	ow, oh := OutSize(side, side)
	tile := Tile{W: side, H: side, Pix: make([]float32, side*side), Face: make([]float32, ow*oh), Weight: make([]float32, ow*oh), LogSize: make([]float32, ow*oh)}
	for i := range tile.Pix {
		tile.Pix[i] = float32(rng.NormFloat64())
	}
	for i := range tile.Weight {
		tile.Weight[i] = 1
	}
	tile.Face[5], tile.LogSize[5] = 1, 0.3
	tile.Weight[2] = 0
	cfg := DefaultTrainConfig
	grad := NewNet(func() float64 { return 0 })
	a := newActs(side, side, true)
	n.backward(&tile, cfg, a, grad)
	loss := func() float64 {
		return n.backward(&tile, cfg, newActs(side, side, true), NewNet(func() float64 { return 0 }))
	}
	checked := 0
	for li := range n.W {
		for _, p := range []struct{ w, g []float32 }{{n.W[li], grad.W[li]}, {n.B[li], grad.B[li]}} {
			for k := 0; k < 6; k++ {
				j := rng.Intn(len(p.w))
				old := p.w[j]
				const h = 1e-3
				p.w[j] = old + h
				up := loss()
				p.w[j] = old - h
				down := loss()
				p.w[j] = old
				num := (up - down) / (2 * h)
				if got := float64(p.g[j]); math.Abs(got-num) > 2e-2*math.Max(1, math.Abs(num)) {
					t.Errorf("layer %d weight %d: backward %.5f, finite differences %.5f", li, j, got, num)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// TestEncodeDecode: the model file round-trips, and a truncated or foreign
// one is refused.
func TestEncodeDecode(t *testing.T) {
	n := NewNet(rand.New(rand.NewSource(1)).NormFloat64)
	b := n.Encode()
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.W {
		for j := range n.W[i] {
			if n.W[i][j] != m.W[i][j] {
				t.Fatal("weights differ after a round trip")
			}
		}
	}
	if _, err := Decode(b[:len(b)-4]); err == nil {
		t.Error("a truncated model was accepted")
	}
	if _, err := Decode(append([]byte("SMILECNN1"), b[8:]...)); err == nil {
		t.Error("another model's file was accepted")
	}
}
