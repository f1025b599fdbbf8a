// Package events keeps the events the cloud must not miss (erase requests
// above all) in the store until the broker has taken them, and publishes
// them oldest first whenever the link is up.
//
// An event is added inside the caller's transaction, so an erasure and its
// request to erase the cloud's copies commit together: a power cut, a dead
// broker or a restart in between can delay the request, never lose it.
// Delivery is at least once (the broker's QoS 1 acknowledgement removes an
// event; a crash between the two sends it again), which suits erase
// requests: erasing twice is harmless.
//
// The package owns store.BucketEvents. It stores and publishes the bytes it
// is given and nothing else; the events carry opaque subject ids, never a
// name, and are never logged.
package events

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/retry"
)

// MaxPending bounds the events kept while the broker is unreachable. Each
// erase request is a few hundred bytes; a household that withdraws consent
// ten thousand times without a connection has a bigger problem.
const MaxPending = 10_000

// MaxEventBytes bounds one event.
const MaxEventBytes = 16 << 10

// ErrFull is returned by Add when MaxPending events are waiting.
var ErrFull = errors.New("events: too many events waiting for the broker")

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
		return ErrFull
	}
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	return b.Put(key(seq), event)
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
