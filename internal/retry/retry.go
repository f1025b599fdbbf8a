// Package retry holds the one retry-delay helper the uplink's loops share.
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
