package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// TestClockEnv is TEST-ONLY: it lets make soak run a simulated week in
// minutes. "2026-11-22T08:00:00Z@1440" starts the daemon's clock at that
// instant and runs it 1440 times faster than real time (a day a minute).
// Every decision reads this clock (days, the cap, ages, retention); real
// timers (select_at, tickers) still wait in real time. Never set it on a
// robot: the daemon logs a warning at start when it is set.
const TestClockEnv = "AIBO_TEST_CLOCK"

// clockFromEnv returns the daemon's clock: time.Now, or the test clock.
func clockFromEnv() (func() time.Time, string, error) {
	v := os.Getenv(TestClockEnv)
	if v == "" {
		return time.Now, "", nil
	}
	at, speedText, _ := strings.Cut(v, "@")
	start, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", TestClockEnv, err)
	}
	speed := 1.0
	if speedText != "" {
		if speed, err = strconv.ParseFloat(speedText, 64); err != nil || speed <= 0 {
			return nil, "", fmt.Errorf("%s: speed %q must be a positive number", TestClockEnv, speedText)
		}
	}
	real0 := time.Now()
	return func() time.Time {
		return start.Add(time.Duration(float64(time.Since(real0)) * speed))
	}, v, nil
}

// wallNow is d.now read at every call: the services get it rather than
// d.now itself, so that one clock, set once, moves them all.
func (d *Daemon) wallNow() time.Time { return d.now() }
