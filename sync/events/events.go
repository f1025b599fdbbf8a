// Package events is the one path of the daemon's events to the cloud
// (contract section 5, v3: every event is delivered at least once, in the
// order raised, across restarts and broker outages). Every event is kept
// in the store until the broker has taken it, and published oldest first
// whenever the link is up.
//
// An event is added inside the transaction of the decision it reports, so
// an erasure and its request to erase the cloud's copies, an enrollment
// and its enrollment_completed, a selection and its selection_done commit
// together: a power cut, a dead broker or a restart in between can delay
// the event, never lose it. Delivery is at least once (the broker's QoS 1
// acknowledgement, PUBACK, removes an event; a crash between the two sends
// it again with the same event_id, by which the cloud drops the repeat).
//
// The package owns store.BucketEvents. It stores and publishes the bytes it
// is given and nothing else; the events carry opaque subject ids, never a
// name, and are never logged (their type is, when one is evicted).
package events

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/retry"
	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
)

// MaxPending bounds the events kept while the broker is unreachable (a few
// hundred bytes each; a day raises a handful). When it is reached, the
// oldest event that is not an erase_request makes room; erase requests
// are never evicted (ErrFull then).
const MaxPending = 10_000

// MaxEventBytes bounds one event.
const MaxEventBytes = 16 << 10

// ErrFull is returned by Add when MaxPending erase requests are waiting.
var ErrFull = errors.New("events: too many erase requests waiting for the broker")

// Publisher takes one event; nil means the broker has acknowledged it.
type Publisher interface {
	PublishEvent(ctx context.Context, event []byte) error
}

const (
	publishTimeout = 10 * time.Second
	retryMin       = 250 * time.Millisecond
	retryMax       = 15 * time.Second
	commitRetry    = time.Second
)

// Queue is the durable event queue. Add is safe from any goroutine (inside
// a store transaction); Run is called once.
type Queue struct {
	st   *store.Store
	log  *slog.Logger
	wake chan struct{}
}

// New returns the queue kept in st.
func New(st *store.Store, log *slog.Logger) *Queue {
	return &Queue{st: st, log: log, wake: make(chan struct{}, 1)}
}

// Add queues event in tx. It is published after tx commits and Wake is
// called (or at the next start).
func (q *Queue) Add(tx *bolt.Tx, event []byte) error {
	if len(event) == 0 || len(event) > MaxEventBytes {
		return fmt.Errorf("events: event of %d bytes (1..%d)", len(event), MaxEventBytes)
	}
	b := tx.Bucket(store.BucketEvents)
	if b.Stats().KeyN >= MaxPending {
		if err := q.evict(b); err != nil {
			return err
		}
	}
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	return b.Put(key(seq), event)
}

// evict deletes the oldest event that is not an erase_request, and says
// so; with nothing but erase requests waiting it returns ErrFull.
func (q *Queue) evict(b *bolt.Bucket) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var ev struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(v, &ev)
		if ev.Type == "erase_request" {
			continue
		}
		q.log.Warn("events: the oldest waiting event dropped to make room", "type", textx.Cut(ev.Type, 40), "pending", MaxPending)
		return c.Delete()
	}
	return ErrFull
}

// Wake tells Run that events were committed.
func (q *Queue) Wake() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Pending is the number of events waiting for the broker.
func (q *Queue) Pending() int {
	n := 0
	q.st.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(store.BucketEvents).Stats().KeyN
		return nil
	})
	return n
}

// Run publishes waiting events, oldest first, until ctx ends. While the
// broker does not take them it retries with a growing, jittered delay.
func (q *Queue) Run(ctx context.Context, p Publisher) error {
	delay := retryMin
	for ctx.Err() == nil {
		k, ev, err := q.oldest()
		if err != nil {
			q.log.Error("events: read queue", "err", err)
			q.sleep(ctx, commitRetry)
			continue
		}
		if k == nil {
			select {
			case <-ctx.Done():
			case <-q.wake:
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		err = p.PublishEvent(pctx, ev)
		cancel()
		if err != nil {
			if ctx.Err() == nil && delay == retryMin { // once per outage, not per retry
				q.log.Warn("events: not published yet, will retry", "err", err)
			}
			q.sleep(ctx, retry.Jitter(delay))
			delay = min(delay*2, retryMax)
			continue
		}
		delay = retryMin
		if err := q.st.Update(func(tx *bolt.Tx) error { return tx.Bucket(store.BucketEvents).Delete(k) }); err != nil {
			// Published but still queued: it goes again, which erase
			// requests tolerate.
			q.log.Error("events: remove published event", "err", err)
			q.sleep(ctx, commitRetry)
		}
	}
	return nil
}

// sleep waits d, ctx's end or a Wake (a reconnect or a new event is a
// reason to try again at once).
func (q *Queue) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-q.wake:
	}
}

func (q *Queue) oldest() (k, v []byte, err error) {
	err = q.st.View(func(tx *bolt.Tx) error {
		ck, cv := tx.Bucket(store.BucketEvents).Cursor().First()
		if ck != nil {
			k, v = append([]byte(nil), ck...), append([]byte(nil), cv...)
		}
		return nil
	})
	return k, v, err
}

func key(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}
