package audit

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// Tally audits frequent, alike events (a technician's requests) as
// aggregated records instead of one durable record each: per interval, per
// set of fields (uid, method, path, status), with a count.
//
// The first occurrence of a set of fields in an interval is appended and
// committed before Note returns, so the event is on record before the
// caller acts on it; an error means it is not, and the caller must refuse
// (a full disk). Repeats in the same interval are counted in memory and
// appended as one record with "count" when the interval ends (Run) or on
// shutdown. The records of one (fields, "since") therefore add up to the
// events of that interval; a crash loses only the repeats' count of the
// interval in progress, never the fact that the access happened.
//
// Every record carries the fields plus "since" (the interval's start,
// RFC 3339) and "count". Callers must keep the field values to a small
// set (normalised paths, known methods): each distinct set costs a record
// per interval.
type Tally struct {
	st       *store.Store
	typ      string
	interval time.Duration
	now      func() time.Time

	wmu sync.Mutex // serialises durable first occurrences

	mu       sync.Mutex
	start    time.Time
	cur      map[string]*tallied
	ended    []*tallied // repeats of intervals that ended, not yet appended
	failing  error      // the last durable append failed
	failedAt time.Time
}

type tallied struct {
	fields   map[string]string
	since    time.Time
	recorded bool // its first occurrence is on record
	repeats  int  // occurrences not on record yet
}

// MaxTallied bounds the sets of fields kept in memory per interval; past
// it, new sets count under uid "other" (a peer cycling through uids).
const MaxTallied = 1024

// retryFailing is how often a failing Tally tries a durable append again;
// in between, Note fails at once.
const retryFailing = time.Second

// NewTally returns a Tally appending records of type typ to st.
func NewTally(st *store.Store, typ string, interval time.Duration, now func() time.Time) *Tally {
	if now == nil {
		now = time.Now
	}
	return &Tally{st: st, typ: typ, interval: interval, now: now, cur: map[string]*tallied{}}
}

func tallyKey(f map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(f)) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(f[k])
		b.WriteByte(0)
	}
	return b.String()
}

// roll moves the interval forward at now; callers hold mu.
func (t *Tally) roll(now time.Time) {
	start := now.Truncate(t.interval)
	if start.Equal(t.start) {
		return
	}
	for _, e := range t.cur {
		if e.repeats > 0 && !slices.Contains(t.ended, e) {
			t.ended = append(t.ended, e)
		}
	}
	t.start, t.cur = start, map[string]*tallied{}
}

// entry returns the current interval's entry for f, creating it; callers
// hold mu.
func (t *Tally) entry(f map[string]string) *tallied {
	key := tallyKey(f)
	if e, ok := t.cur[key]; ok {
		return e
	}
	if len(t.cur) >= MaxTallied {
		f = maps.Clone(f)
		f["uid"] = "other"
		key = tallyKey(f)
		if e, ok := t.cur[key]; ok {
			return e
		}
	}
	e := &tallied{fields: maps.Clone(f), since: t.start}
	t.cur[key] = e
	return e
}

// Note counts one event. It returns nil once the event is on record: the
// first of its fields in this interval is appended and committed first. A
// non-nil error (wrapping the store's, e.g. ENOSPC) means it could not be
// put on record and is not counted: the caller refuses and counts what it
// did instead (Count). While appends fail, Note tries again at most once a
// second and fails at once in between.
func (t *Tally) Note(fields map[string]string) error {
	t.mu.Lock()
	t.roll(t.now())
	if e := t.entry(fields); e.recorded && t.failing == nil {
		e.repeats++
		t.mu.Unlock()
		return nil
	}
	t.mu.Unlock()

	t.wmu.Lock()
	defer t.wmu.Unlock()
	now := t.now()
	t.mu.Lock()
	t.roll(now)
	e := t.entry(fields)
	switch {
	case e.recorded && t.failing == nil:
		e.repeats++
		t.mu.Unlock()
		return nil
	case t.failing != nil && now.Sub(t.failedAt) < retryFailing:
		err := t.failing
		t.mu.Unlock()
		return err
	}
	since, first := e.since, !e.recorded
	t.mu.Unlock()

	err := t.st.Update(func(tx *bolt.Tx) error {
		if first {
			if _, err := Append(tx, now, t.typ, "", withCount(e.fields, since, 1)); err != nil {
				return err
			}
		}
		// The store takes writes again: what waited goes too.
		return t.appendEndedTx(tx, now)
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.failing, t.failedAt = err, now
		return err
	}
	t.failing = nil
	if first {
		e.recorded = true
	} else {
		e.repeats++
	}
	return nil
}

// Count counts one event without waiting for a durable append (for events
// refused before any work, such as a connection over capacity).
func (t *Tally) Count(fields map[string]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.roll(t.now())
	t.entry(fields).repeats++
}

func withCount(f map[string]string, since time.Time, n int) map[string]string {
	out := maps.Clone(f)
	out["since"] = since.UTC().Format(time.RFC3339)
	out["count"] = strconv.Itoa(n)
	return out
}

// appendEndedTx appends the counts of intervals that ended; they are
// forgotten once tx commits. Callers hold wmu.
func (t *Tally) appendEndedTx(tx *bolt.Tx, now time.Time) error {
	t.mu.Lock()
	ended := t.ended
	counts := make([]int, len(ended))
	for i, e := range ended {
		counts[i] = e.repeats
	}
	t.mu.Unlock()
	for i, e := range ended {
		if _, err := Append(tx, now, t.typ, "", withCount(e.fields, e.since, counts[i])); err != nil {
			return err
		}
	}
	tx.OnCommit(func() {
		t.mu.Lock()
		for i, e := range ended {
			e.repeats -= counts[i]
		}
		t.ended = slices.DeleteFunc(t.ended, func(e *tallied) bool { return e.repeats <= 0 })
		t.mu.Unlock()
	})
	return nil
}

// Flush appends the counts of the intervals that ended, and with all those
// of the interval in progress too (at shutdown).
func (t *Tally) Flush(all bool) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	now := t.now()
	t.mu.Lock()
	t.roll(now)
	if all {
		for _, e := range t.cur {
			if e.repeats > 0 && !slices.Contains(t.ended, e) {
				t.ended = append(t.ended, e)
			}
		}
	}
	pending := len(t.ended)
	t.mu.Unlock()
	if pending == 0 {
		return nil
	}
	err := t.st.Update(func(tx *bolt.Tx) error { return t.appendEndedTx(tx, now) })
	t.mu.Lock()
	if err != nil {
		t.failing, t.failedAt = err, now
	} else {
		t.failing = nil
	}
	t.mu.Unlock()
	return err
}

// Failing returns the error of the last durable append when it failed.
func (t *Tally) Failing() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failing
}

// Run appends the counts of each interval when it ends, until ctx ends;
// then it appends what is left and returns. An append that fails is
// tried again at the next tick. onErr, when set, hears of failures.
func (t *Tally) Run(ctx context.Context, onErr func(error)) error {
	tick := time.NewTicker(min(t.interval, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := t.Flush(true); err != nil && onErr != nil {
				onErr(err)
			}
			return nil
		case <-tick.C:
			if err := t.Flush(false); err != nil && onErr != nil && !errors.Is(err, context.Canceled) {
				onErr(err)
			}
		}
	}
}
