package outbox

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// timedPublisher is the real link, with the time and size of every
// publish the outbox makes written down as it makes it.
type timedPublisher struct {
	Publisher
	mu   sync.Mutex
	sent []timedSend
}

type timedSend struct {
	at   time.Time
	size int
}

func (p *timedPublisher) Publish(ctx context.Context, suffix string, payload []byte, retained bool) error {
	p.mu.Lock()
	p.sent = append(p.sent, timedSend{time.Now(), len(payload)})
	p.mu.Unlock()
	return p.Publisher.Publish(ctx, suffix, payload, retained)
}

// TestPacedSendsStayUnderTheRate: what waited while the broker was away
// goes out at MaxSendRate, not at once: in any second the broker is
// offered at most the rate and one chunk, and the whole backlog takes as
// long as the rate says.
func TestPacedSendsStayUnderTheRate(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	const rate, chunk = 32 << 10, 4 << 10
	o := e.open(func(c *Config) { c.MaxSendRate, c.ChunkSize = rate, chunk })
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	var ids []string
	total := 0
	for range 4 { // 128 KiB queued before any link runs
		m := enqueue(t, o, policy.KindPhoto, randBytes(32<<10))
		ids = append(ids, m.ID)
		total += 32 << 10
	}
	l, _ := startLink(t, b)
	p := &timedPublisher{Publisher: l}
	runOutbox(t, o, p)
	e.waitAcked(ids...)

	p.mu.Lock()
	sent := append([]timedSend(nil), p.sent...)
	p.mu.Unlock()
	// One chunk may go at once; the rest waits for the rate.
	if took, least := sent[len(sent)-1].at.Sub(sent[0].at), time.Duration(float64(total-chunk)/rate*float64(time.Second)); took < least {
		t.Fatalf("%d bytes went out in %s: a rate of %d bytes/s takes at least %s", total, took, rate, least)
	}
	for i := range sent {
		window := 0
		for j := i; j < len(sent) && sent[j].at.Sub(sent[i].at) < time.Second; j++ {
			window += sent[j].size
		}
		if window > rate+chunk {
			t.Fatalf("%d bytes offered within a second from publish %d: over the rate %d plus a chunk %d", window, i, rate, chunk)
		}
	}
}
