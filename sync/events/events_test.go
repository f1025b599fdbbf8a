package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
	"github.com/aibo-privacy/aibo-privacyd/sync/link"
)

const dev = "aibo-events-1"

// device is one daemon's worth of the queue: its store file, a link to the
// broker and the queue running over it.
type device struct {
	st     *store.Store
	q      *Queue
	logs   *testlog.Buffer
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func start(t *testing.T, dbPath string, b *testbroker.Broker) *device {
	t.Helper()
	st, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{st: st, logs: &testlog.Buffer{}}
	log := slog.New(slog.NewTextHandler(d.logs, nil))
	l, err := link.New(link.Config{
		DeviceID:   dev,
		Broker:     b.URL,
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 300 * time.Millisecond,
		Logger:     log,
	}, func(context.Context, []byte) []byte { return nil })
	if err != nil {
		t.Fatal(err)
	}
	d.q = New(st, log)
	l.OnConnectionChange(func(up bool) {
		if up {
			d.q.Wake()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.done.Go(func() { l.Run(ctx) })
	d.done.Go(func() { d.q.Run(ctx, l) })
	return d
}

// stop ends the queue and the link and closes the store, as a restart
// (or a power cut after the last commit) would.
func (d *device) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	d.done.Wait()
	if err := d.st.Close(); err != nil {
		t.Fatal(err)
	}
}

func (d *device) add(t *testing.T, evs ...string) {
	t.Helper()
	err := d.st.Update(func(tx *bolt.Tx) error {
		for _, ev := range evs {
			if err := d.q.Add(tx, []byte(ev)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d.q.Wake()
}

// Promise P5 (withdrawal erases every copy): the request to erase the
// cloud's copies is committed with the erasure and reaches the cloud even
// when the broker is down at that moment and the daemon restarts before
// the broker is back.
func TestP5_EraseRequestsSurviveADeadBrokerAndARestart(t *testing.T) {
	b := testbroker.Start(t)
	dbPath := filepath.Join(t.TempDir(), "state.db")
	want := []string{
		`{"type":"erase_request","subject_id":"p-1","kinds":["face_template","sighting"]}`,
		`{"type":"erase_request","subject_id":"p-2","kinds":["sighting"]}`,
		`{"type":"erase_request","kinds":["photo"]}`,
	}

	d := start(t, dbPath, b)
	b.Stop()
	d.add(t, want[:2]...)
	d.add(t, want[2])
	time.Sleep(time.Second) // the queue tries against a dead broker
	if n := d.q.Pending(); n != 3 {
		t.Fatalf("%d events pending with the broker down, want 3", n)
	}
	d.stop(t)

	b.Restart(t)
	cloud := b.Client(t).Subscribe(t, "aibo/"+dev+"/events")
	d = start(t, dbPath, b)
	defer d.stop(t)
	for i, w := range want {
		got := string(cloud.Next(t, 10*time.Second).Payload)
		if got != w {
			t.Fatalf("event %d after the restart: %s, want %s", i, got, w)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.q.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still pending after the broker took them", d.q.Pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(d.logs.String(), "p-1") {
		t.Fatal("an event's content reached the log")
	}
}

// openQueue is a queue over a new store, without a link.
func openQueue(t *testing.T) (*store.Store, *Queue) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, New(st, slog.New(slog.NewTextHandler(&testlog.Buffer{}, nil)))
}

// An event added in a transaction that rolls back (the erasure failed) is
// never published.
func TestEventOfARolledBackTransactionIsNotKept(t *testing.T) {
	st, q := openQueue(t)
	failed := errors.New("erasure failed")
	err := st.Update(func(tx *bolt.Tx) error {
		if err := q.Add(tx, []byte(`{"type":"erase_request"}`)); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatal(err)
	}
	if n := q.Pending(); n != 0 {
		t.Fatalf("%d events pending after a rollback", n)
	}
}

func TestAddRefusesEmptyOversizedAndOverflowingEvents(t *testing.T) {
	st, q := openQueue(t)
	for _, ev := range [][]byte{nil, make([]byte, MaxEventBytes+1)} {
		if err := st.Update(func(tx *bolt.Tx) error { return q.Add(tx, ev) }); err == nil {
			t.Fatalf("event of %d bytes accepted", len(ev))
		}
	}
	// Full: the oldest event that is not an erase request makes room.
	err := st.Update(func(tx *bolt.Tx) error {
		for i := range MaxPending {
			typ := "erase_request"
			if i == 1 || i == 2 {
				typ = "cap_reached"
			}
			if err := q.Add(tx, fmt.Appendf(nil, `{"type":%q,"n":%d}`, typ, i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := st.Update(func(tx *bolt.Tx) error { return q.Add(tx, []byte(`{"type":"erase_request","n":"new"}`)) }); err != nil {
			t.Fatalf("event %d: %v, want room made", MaxPending+1+i, err)
		}
	}
	var left []string
	st.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketEvents).ForEach(func(k, v []byte) error {
			if strings.Contains(string(v), "cap_reached") {
				left = append(left, string(v))
			}
			return nil
		})
	})
	if len(left) != 0 {
		t.Fatalf("the notifications that had to make room are still queued: %v", left)
	}
	// Nothing but erase requests: they are never evicted.
	if err := st.Update(func(tx *bolt.Tx) error { return q.Add(tx, []byte(`{}`)) }); !errors.Is(err, ErrFull) {
		t.Fatalf("event %d: %v, want ErrFull", MaxPending+3, err)
	}
	if n := q.Pending(); n != MaxPending {
		t.Fatalf("%d pending, want %d", n, MaxPending)
	}
}
