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
