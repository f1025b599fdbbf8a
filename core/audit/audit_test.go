package audit

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

func openWithRecords(t *testing.T, n int) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	at := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		err := s.Update(func(tx *bolt.Tx) error {
			_, err := Append(tx, at.Add(time.Duration(i)*time.Second), "feature_changed", "", map[string]string{"feature": "auto_photo", "on": "true"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func verify(t *testing.T, s *store.Store) Report {
	var rep Report
	_ = s.View(func(tx *bolt.Tx) error { rep = Verify(tx); return nil })
	return rep
}

func TestIntactChainVerifies(t *testing.T) {
	s := openWithRecords(t, 5)
	rep := verify(t, s)
	if !rep.OK || rep.Records != 5 {
		t.Fatalf("intact chain: %+v", rep)
	}
	var newest []Record
	_ = s.View(func(tx *bolt.Tx) (err error) { newest, err = Newest(tx, 2); return })
	if len(newest) != 2 || newest[0].Seq != 5 || newest[1].Seq != 4 {
		t.Fatalf("Newest: %+v", newest)
	}
}

func TestEditedRecordIsFound(t *testing.T) {
	s := openWithRecords(t, 5)
	_ = s.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketAudit)
		var r Record
		json.Unmarshal(b.Get(store.Uint64Key(3)), &r)
		r.Fields["on"] = "false" // rewrite history without fixing the hash
		raw, _ := json.Marshal(r)
		return b.Put(store.Uint64Key(3), raw)
	})
	rep := verify(t, s)
	if rep.OK || rep.BadSeq != 3 || !strings.Contains(rep.Problem, "edited") {
		t.Fatalf("edit not found: %+v", rep)
	}
}

func TestRehashedEditBreaksTheNextLink(t *testing.T) {
	s := openWithRecords(t, 5)
	_ = s.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketAudit)
		var r Record
		json.Unmarshal(b.Get(store.Uint64Key(2)), &r)
		r.Type = "nothing_happened"
		r.Hash = hashOf(r) // a careful forger recomputes the hash
		raw, _ := json.Marshal(r)
		return b.Put(store.Uint64Key(2), raw)
	})
	rep := verify(t, s)
	if rep.OK || rep.BadSeq != 3 {
		t.Fatalf("rehashed edit not found: %+v", rep)
	}
}

func TestMissingRecordIsFound(t *testing.T) {
	for name, seq := range map[string]uint64{"middle": 2, "first": 1, "last": 5} {
		t.Run(name, func(t *testing.T) {
			s := openWithRecords(t, 5)
			_ = s.Update(func(tx *bolt.Tx) error { return tx.Bucket(store.BucketAudit).Delete(store.Uint64Key(seq)) })
			if rep := verify(t, s); rep.OK {
				t.Fatalf("deleted record %d not found: %+v", seq, rep)
			}
		})
	}
}

func TestP11_RetentionPrunesTheOldEndAndTheChainStillVerifies(t *testing.T) {
	s := openWithRecords(t, 6) // one second apart from 08:00:00
	cutoff := time.Date(2026, 11, 22, 8, 0, 3, 0, time.UTC)
	var n int
	if err := s.Update(func(tx *bolt.Tx) (err error) { n, err = Prune(tx, cutoff, 2); return }); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("pruned %d, want 2 (bounded per call)", n)
	}
	s.Update(func(tx *bolt.Tx) (err error) { n, err = Prune(tx, cutoff, 100); return })
	if n != 1 {
		t.Fatalf("second prune removed %d, want 1", n)
	}
	rep := verify(t, s)
	if !rep.OK || rep.Records != 3 {
		t.Fatalf("after pruning: %+v", rep)
	}
	// Removing a kept record from the new start is still found.
	s.Update(func(tx *bolt.Tx) error { return tx.Bucket(store.BucketAudit).Delete(store.Uint64Key(4)) })
	if rep := verify(t, s); rep.OK {
		t.Fatal("a record removed after pruning went unnoticed")
	}
}

// TestP11_AClockSetForwardDoesNotStopRetention (issue 12 item 9): records
// stamped years ahead by a clock set forward, then back, do not hold back
// the pruning of the records written after them.
func TestP11_AClockSetForwardDoesNotStopRetention(t *testing.T) {
	s := openWithRecords(t, 2) // 08:00:00, 08:00:01
	future := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	s.Update(func(tx *bolt.Tx) error {
		_, err := Append(tx, future, "feature_changed", "", nil) // the clock ran ahead
		return err
	})
	for i := range 3 { // and was set right again
		s.Update(func(tx *bolt.Tx) error {
			_, err := Append(tx, at.Add(time.Duration(i)*time.Minute), "feature_changed", "", nil)
			return err
		})
	}
	var n int
	cutoff := at.Add(90 * time.Second) // the first two after the correction are old enough
	if err := s.Update(func(tx *bolt.Tx) (err error) { n, err = Prune(tx, cutoff, 100); return }); err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Fatalf("pruned %d, want 5 (the future-stamped record is older than those after it)", n)
	}
	rep := verify(t, s)
	var count int
	s.View(func(tx *bolt.Tx) (err error) { count, err = Count(tx); return })
	if !rep.OK || rep.Records != 1 || count != 1 {
		t.Fatalf("after pruning: %+v, Count %d", rep, count)
	}
}

func TestCountIsTheChainsLength(t *testing.T) {
	s := openWithRecords(t, 7)
	s.Update(func(tx *bolt.Tx) error {
		_, err := Prune(tx, time.Date(2026, 11, 22, 8, 0, 2, 0, time.UTC), 100)
		return err
	})
	var count int
	s.View(func(tx *bolt.Tx) (err error) { count, err = Count(tx); return })
	if rep := verify(t, s); count != rep.Records || count != 5 {
		t.Fatalf("Count %d, Verify %+v", count, rep)
	}
}
