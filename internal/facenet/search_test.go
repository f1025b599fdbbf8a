package facenet

import (
	"image"
	"math"
	"testing"
)

// TestTilesCoverTheFrameWithOverlap: an enlarged search sees every pixel,
// no tile is larger than its bound in the detector's input, and two
// neighbouring tiles overlap by at least the overlap asked for, so a face
// up to that size lies whole in one of them.
func TestTilesCoverTheFrameWithOverlap(t *testing.T) {
	for _, c := range []struct {
		n            int
		k            float64
		tile, overlp int
	}{{1280, 1.5, 640, 96}, {720, 1.5, 640, 96}, {7300, 0.26, 640, 96}, {512, 1.5, 640, 96}, {100, 0.75, 640, 96}, {1281, 1, 640, 96}} {
		s := spans(c.n, c.k, c.tile, c.overlp)
		if s[0][0] != 0 || s[len(s)-1][1] != c.n {
			t.Fatalf("%+v: spans %v do not reach both ends", c, s)
		}
		for i, sp := range s {
			if in := float64(sp[1]-sp[0]) * c.k; in > float64(c.tile)+2*c.k+1 {
				t.Errorf("%+v: span %v is %.0f input pixels", c, sp, in)
			}
			if i > 0 {
				if ov := float64(s[i-1][1]-sp[0]) * c.k; ov < float64(c.overlp)-2*c.k-1 {
					t.Errorf("%+v: spans %v and %v overlap by %.0f input pixels", c, s[i-1], sp, ov)
				}
			}
		}
	}
}

// TestOneFaceIsNeverTwo: passes at different scales box a face
// differently; Merge keeps one.
func TestOneFaceIsNeverTwo(t *testing.T) {
	tight := Detection{Box: image.Rect(100, 100, 200, 200)}
	loose := Detection{Box: image.Rect(60, 80, 260, 300)} // IoU 0.23, centre inside
	other := Detection{Box: image.Rect(400, 100, 480, 180)}
	got := Merge([]Detection{tight}, []Detection{loose, other})
	if len(got) != 2 {
		t.Fatalf("merged %v", got)
	}
	if IoU(tight.Box, loose.Box) > 0.3 || math.IsNaN(IoU(tight.Box, loose.Box)) {
		t.Fatal("the case does not test containment")
	}
}
