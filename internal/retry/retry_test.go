package retry

import (
	"testing"
	"time"
)

func TestJitterStaysWithinHalfAndWholeAndVaries(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := Jitter(time.Second)
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("Jitter(1s) = %v", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Fatalf("1000 draws gave only %d distinct delays", len(seen))
	}
	if Jitter(1) != 1 || Jitter(0) != 0 {
		t.Fatal("tiny durations are returned as they are")
	}
}

func TestFullJitterCoversTheWholeWindow(t *testing.T) {
	var low, high int
	for range 2000 {
		d := FullJitter(time.Second)
		if d < 0 || d > time.Second {
			t.Fatalf("FullJitter(1s) = %v", d)
		}
		if d < 250*time.Millisecond {
			low++
		}
		if d > 750*time.Millisecond {
			high++
		}
	}
	// A quarter of the draws in each outer quarter, give or take: Jitter
	// would put none in the lower half.
	if low < 400 || high < 400 {
		t.Fatalf("2000 draws: %d under 250ms, %d over 750ms", low, high)
	}
	if FullJitter(0) != 0 || FullJitter(-time.Second) != 0 {
		t.Fatal("no window, no wait")
	}
}
