package audit

import (
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func allRecords(t *testing.T, s *store.Store) []Record {
	t.Helper()
	var out []Record
	s.View(func(tx *bolt.Tx) error {
		recs, err := Newest(tx, 1<<20)
		out = recs
		return err
	})
	return out
}

// TestTallyAggregatesAndTheCountsAddUp (issue 12 item 6): thousands of
// alike events make a record per distinct set of fields per interval, the
// first durable before Note returns, and the counts add up.
func TestTallyAggregatesAndTheCountsAddUp(t *testing.T) {
	s, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clk := &fakeClock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	ta := NewTally(s, "technician_access", time.Minute, clk.now)
	fields := func(uid, path, status int) map[string]string {
		return map[string]string{"uid": strconv.Itoa(uid), "method": "GET", "path": "/p" + strconv.Itoa(path), "status": strconv.Itoa(status)}
	}
	want := map[string]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 1250 {
				f := fields(1000+w%2, i%3, 200)
				if err := ta.Note(f); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for uid := 1000; uid <= 1001; uid++ {
		for p := range 3 {
			want[tallyKey(fields(uid, p, 200))] = 0
		}
	}
	// Before any flush, the first of each set is on record.
	if recs := allRecords(t, s); len(recs) != 6 {
		t.Fatalf("%d records before the interval ended, want 6 (one per uid and path)", len(recs))
	}
	clk.add(time.Minute)
	ta.Count(fields(1002, 0, 503))
	ta.Note(fields(1000, 0, 200))
	if err := ta.Flush(true); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range allRecords(t, s) {
		if r.Type != "technician_access" || r.Fields["since"] == "" {
			t.Fatalf("record %+v", r)
		}
		n, _ := strconv.Atoi(r.Fields["count"])
		f := map[string]string{"uid": r.Fields["uid"], "method": r.Fields["method"], "path": r.Fields["path"], "status": r.Fields["status"]}
		got[tallyKey(f)] += n
	}
	total := 0
	for _, n := range got {
		total += n
	}
	if total != 5002 || got[tallyKey(fields(1002, 0, 503))] != 1 || got[tallyKey(fields(1000, 0, 200))] != 5000/6+1+1 {
		t.Fatalf("counts add up to %d: %v", total, got)
	}
	if recs := allRecords(t, s); len(recs) > 14 {
		t.Fatalf("%d records for 5,002 events", len(recs))
	}
	if rep := verify(t, s); !rep.OK {
		t.Fatalf("chain: %+v", rep)
	}
}

// TestTallyBoundsTheSetsItKeeps: a peer cycling through values cannot grow
// memory or the record count past MaxTallied sets per interval.
func TestTallyBoundsTheSetsItKeeps(t *testing.T) {
	s, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clk := &fakeClock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	ta := NewTally(s, "technician_access", time.Minute, clk.now)
	for uid := range MaxTallied + 500 {
		ta.Count(map[string]string{"uid": strconv.Itoa(uid), "path": "/x"})
	}
	if n := len(ta.cur); n > MaxTallied+1 {
		t.Fatalf("%d sets kept", n)
	}
	ta.Flush(true)
	total := 0
	for _, r := range allRecords(t, s) {
		n, _ := strconv.Atoi(r.Fields["count"])
		total += n
	}
	if total != MaxTallied+500 {
		t.Fatalf("counts add up to %d", total)
	}
}
