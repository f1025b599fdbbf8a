package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture"
)

// TestClockEnv is TEST-ONLY: it lets make soak run a simulated week in
// minutes. "2026-11-22T08:00:00Z@1440" starts the daemon's clock at that
// instant and runs it 1440 times faster than real time (a day a minute).
// Every decision reads this clock (days, the cap, ages, retention); real
// timers (select_at, tickers) still wait in real time. Never set it on a
// robot: the daemon logs a warning at start when it is set.
const TestClockEnv = "AIBO_TEST_CLOCK"

// clockFromEnv returns the daemon's wall and boot clocks: time.Now and
// CLOCK_BOOTTIME, or the test clock and a boot clock running at its speed
// (so that a simulated day is a day to the day clock too).
func clockFromEnv() (func() time.Time, func() time.Duration, string, error) {
	v := os.Getenv(TestClockEnv)
	if v == "" {
		return time.Now, capture.BootTime, "", nil
	}
	at, speedText, _ := strings.Cut(v, "@")
	start, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", TestClockEnv, err)
	}
	speed := 1.0
	if speedText != "" {
		if speed, err = strconv.ParseFloat(speedText, 64); err != nil || speed <= 0 {
			return nil, nil, "", fmt.Errorf("%s: speed %q must be a positive number", TestClockEnv, speedText)
		}
	}
	real0, boot0 := time.Now(), capture.BootTime()
	elapsed := func() time.Duration { return time.Duration(float64(time.Since(real0)) * speed) }
	return func() time.Time { return start.Add(elapsed()) }, func() time.Duration { return boot0 + elapsed() }, v, nil
}

// wallNow and bootNow are d.now and d.boot read at every call: the
// services get them rather than the clocks themselves, so that one clock,
// set once, moves them all.
func (d *Daemon) wallNow() time.Time     { return d.now() }
func (d *Daemon) bootNow() time.Duration { return d.boot() }
