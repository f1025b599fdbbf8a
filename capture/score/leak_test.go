//go:build matprofile

package score

import (
	"testing"

	"gocv.io/x/gocv"
)

// TestNoMatLeak: scoring frees every Mat it makes (the worker runs for
// hours). Run with: go test -tags matprofile -run NoMatLeak ./capture/score/
func TestNoMatLeak(t *testing.T) {
	s := testScorer(t)
	photos := [][]byte{readFile(t, "astronaut.jpg"), readFile(t, "coffee.jpg"), readFile(t, "genki-smile-file1633.jpg"), []byte("junk")}
	s.Score(photos[0], noon) // warm up: the models' own Mats
	before := gocv.MatProfile.Count()
	for i := 0; i < 3; i++ {
		for _, p := range photos {
			s.Score(p, noon)
		}
	}
	if after := gocv.MatProfile.Count(); after != before {
		t.Fatalf("%d Mats leaked over 12 calls", after-before)
	}
}
