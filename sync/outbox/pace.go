package outbox

import (
	"context"
	"time"
)

// pacer spreads what the sender publishes over time: MaxSendRate bytes a
// second on average, one chunk at once at most. In any second the broker
// then sees at most MaxSendRate plus one chunk from this device, however
// much waited while it was away: a robot catching up after a day without
// a network, or a fleet after a regional outage, is a steady stream, not
// a burst. Only the single sender goroutine uses it.
type pacer struct {
	rate   float64 // bytes per second; 0: unpaced
	burst  float64 // bytes that may go at once
	tokens float64
	last   time.Time
}

func newPacer(rate int64, burst int) *pacer {
	return &pacer{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// wait returns when n more bytes may go, or with ctx's error (the bytes
// are then not counted).
func (p *pacer) wait(ctx context.Context, n int) error {
	if p.rate <= 0 {
		return nil
	}
	now := time.Now()
	p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	p.last = now
	if p.tokens >= float64(n) {
		p.tokens -= float64(n)
		return nil
	}
	d := time.Duration((float64(n) - p.tokens) / p.rate * float64(time.Second))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	p.tokens, p.last = 0, time.Now()
	return nil
}
