package outbox

import (
	"maps"
	"sync"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
)

// Counter names of Stats.
const (
	StatSent        = "sent"         // complete sends (manifest and every chunk), first ones and resends
	StatResent      = "resent"       // of those, the resends (same artifact_id, after ack_timeout, a nack or a restart)
	StatAcked       = "acked"        // ok acks made durable: uploads done
	StatNacked      = "nacked"       // not-ok acks counted
	StatRefusedFull = "refused_full" // artifacts refused because the queue was full (ErrQueueFull)
)

// stats counts what the outbox did since it opened, by kind. It holds
// kinds and counts only, never ids.
type stats struct {
	mu sync.Mutex
	n  map[string]map[policy.Kind]uint64
}

func (s *stats) add(name string, kind policy.Kind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]map[policy.Kind]uint64{}
	}
	if s.n[name] == nil {
		s.n[name] = map[policy.Kind]uint64{}
	}
	s.n[name][kind]++
}

// Stats returns the counters since Open: counter name (Stat*) -> kind ->
// count. Counts only grow; the daemon exports them as metrics.
func (o *Outbox) Stats() map[string]map[policy.Kind]uint64 {
	o.stats.mu.Lock()
	defer o.stats.mu.Unlock()
	out := make(map[string]map[policy.Kind]uint64, len(o.stats.n))
	for name, byKind := range o.stats.n {
		out[name] = maps.Clone(byKind)
	}
	return out
}
