// Package retry holds the retry-delay helpers the uplink's loops share.
package retry

import (
	"math/rand/v2"
	"time"
)

// Jitter returns a random duration in [d/2, d], so that devices that lost
// the same broker at the same moment do not all come back at once.
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// FullJitter returns a random duration in [0, d] ("full jitter"): a fleet
// that lost its broker at one moment makes its first attempts spread over
// the whole window instead of its second half, half the peak of that
// first wave for the same ceiling (after a long outage the cap, not the
// jitter, bounds the rate: README, "A fleet on a clustered broker").
func FullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}
