package weightfile

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// TestRoundTripAndRefusals: what Encode writes, Decode reads back into
// tensors of the same shapes; a file of another net, cut short, too long,
// or holding a NaN is refused and leaves the tensors as they were.
func TestRoundTripAndRefusals(t *testing.T) {
	src := [][]float32{{1, -2.5, 3}, {0.125}, {}}
	b := Encode("TESTNET1", src)
	dst := [][]float32{make([]float32, 3), make([]float32, 1), {}}
	if err := Decode("TESTNET1", b, dst); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if !slices.Equal(src[i], dst[i]) {
			t.Fatalf("tensor %d: %v, want %v", i, dst[i], src[i])
		}
	}
	nan := Encode("TESTNET1", [][]float32{{1, float32(math.NaN()), 3}, {4}})
	for name, data := range map[string][]byte{
		"other net": Encode("OTHERNET", src),
		"cut short": b[:len(b)-4],
		"too long":  append(slices.Clone(b), 0, 0, 0, 0),
		"a NaN":     nan,
		"empty":     nil,
	} {
		keep := [][]float32{{7, 7, 7}, {7}}
		if err := Decode("TESTNET1", data, keep); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", name, err)
		}
		if keep[0][0] != 7 || keep[0][2] != 7 || keep[1][0] != 7 {
			t.Errorf("%s: tensors changed by a refused file: %v", name, keep)
		}
	}
	if err := Decode("TESTNET1", b, [][]float32{make([]float32, 5)}); !errors.Is(err, ErrFormat) {
		t.Errorf("a net of another size: %v", err)
	}
}
