package smile

import (
	"math"
	"math/rand"
	"testing"
)

// TestGradient compares the backward pass with finite differences.
func TestGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	n := NewNet(rng.NormFloat64)
	for i := range n.conv {
		for j := range n.conv[i].b {
			n.conv[i].b[j] = 0.1
		}
	}
	x := make([]float32, InputSize*InputSize)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	a := newActivations(true)
	grad := NewNet(func() float64 { return 0 })
	n.backward(x, true, a, grad)
	loss := func() float64 {
		l := float64(n.Logit(x))
		return math.Log1p(math.Exp(-l))
	}
	pp, gp := n.params(), grad.params()
	checked := 0
	for pi := range pp {
		for _, j := range []int{0, len(pp[pi]) / 3, len(pp[pi]) - 1} {
			old := pp[pi][j]
			const h = 3e-3
			pp[pi][j] = old + h
			lp := loss()
			pp[pi][j] = old - h
			lm := loss()
			pp[pi][j] = old
			num := (lp - lm) / (2 * h)
			got := float64(gp[pi][j])
			if math.Abs(num-got) > 1e-3+0.05*math.Abs(num) {
				t.Errorf("param %d[%d]: backward %g, numeric %g", pi, j, got, num)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

func TestEncodeDecode(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	n := NewNet(rng.NormFloat64)
	m, err := Decode(n.Encode())
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, InputSize*InputSize)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	if a, b := n.Logit(x), m.Logit(x); a != b {
		t.Fatalf("decoded net differs: %v vs %v", a, b)
	}
	if _, err := Decode([]byte("garbage")); err == nil {
		t.Fatal("garbage decoded")
	}
	if _, err := Decode(n.Encode()[:100]); err == nil {
		t.Fatal("truncated model decoded")
	}
}

func BenchmarkBackward(b *testing.B) {
	rng := rand.New(rand.NewSource(3))
	n := NewNet(rng.NormFloat64)
	x := make([]float32, InputSize*InputSize)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	a := newActivations(true)
	grad := NewNet(func() float64 { return 0 })
	for b.Loop() {
		n.backward(x, true, a, grad)
	}
}

func BenchmarkForward(b *testing.B) {
	rng := rand.New(rand.NewSource(3))
	n := NewNet(rng.NormFloat64)
	x := make([]float32, InputSize*InputSize)
	a := newActivations(false)
	for b.Loop() {
		n.forward(x, a)
	}
}
