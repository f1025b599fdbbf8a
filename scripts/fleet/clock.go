package main

import (
	"context"
	"sync"
	"time"
)

// simClock is the robots' wall clock: real time between the scenarios,
// and a day compressed into a few real minutes while one plays. Timers
// (keepalive, ack timeouts, backoff) stay on real time, as they do in
// the daemon, which times them on the monotonic clock.
type simClock struct {
	mu       sync.Mutex
	realBase time.Time
	simBase  time.Time
	speed    float64
}

func newSimClock() *simClock {
	return &simClock{realBase: time.Now(), simBase: time.Date(2026, 6, 1, 6, 0, 0, 0, time.UTC), speed: 1}
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.simBase.Add(time.Duration(float64(time.Since(c.realBase)) * c.speed))
}

// startDay jumps to the next midnight and runs a day in real d; it
// returns that midnight.
func (c *simClock) startDay(d time.Duration) time.Time {
	now := c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	c.realBase, c.simBase, c.speed = time.Now(), midnight, float64(24*time.Hour)/float64(d)
	return midnight
}

// endDay goes back to real time from now on.
func (c *simClock) endDay() {
	now := c.Now()
	c.mu.Lock()
	c.realBase, c.simBase, c.speed = time.Now(), now, 1
	c.mu.Unlock()
}

// sleepUntil waits until the simulated clock reads t.
func (c *simClock) sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		now := c.Now()
		if !now.Before(t) {
			return true
		}
		c.mu.Lock()
		speed := c.speed
		c.mu.Unlock()
		d := time.Duration(float64(t.Sub(now)) / speed)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(max(d, time.Millisecond), time.Second)):
		}
	}
}
