package store_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// Bytes as schema-1 code wrote them: the policy state and one day's
// counters (with the cap reservation flag and the latest-day mark).
var (
	v1PolicyState = []byte(`{"features":{"auto_photo":true,"patrol":true,"familiar_faces":false,"cloud_backup":false,"usage_analytics":false,"blur_unknown_faces":true},"policy_version":"2026-11","region":"US-CA","paused_for_policy":""}`)
	v1Day         = []byte(`{"day":"2026-11-22","admitted":30,"refused":4,"over_cap":2,"invalid":1,"uploaded":7,"deleted":3,"cap_reached":true}`)
)

// TestMigrateFromSchema1 opens a store written by schema 1 with today's
// code and checks that it moves to the latest schema without losing
// consent (the accepted policy and the feature switches), the day
// counters, the command ids or the audit chain, and that the buckets added
// since exist.
func TestMigrateFromSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	at := time.Date(2026, 11, 22, 18, 30, 0, 0, time.UTC)

	old, err := store.OpenWith(path, store.Migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	if v := old.SchemaVersion(); v != 1 {
		t.Fatalf("schema version %d, want 1", v)
	}
	var rec audit.Record
	err = old.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(store.BucketFirmware) != nil || tx.Bucket(store.BucketOutbox) != nil {
			t.Error("schema 1 already has schema-2 buckets")
		}
		if err := tx.Bucket(store.BucketPolicy).Put([]byte("state"), v1PolicyState); err != nil {
			return err
		}
		days := tx.Bucket(store.BucketDays)
		if err := days.Put([]byte("d/2026-11-22"), v1Day); err != nil {
			return err
		}
		if err := days.Put([]byte("latest"), []byte("2026-11-22")); err != nil {
			return err
		}
		cmds := tx.Bucket(store.BucketCommands)
		if err := cmds.Bucket(store.BucketCommandIDs).Put([]byte("cmd-1"), []byte(`{"at":"2026-11-22T18:00:00Z","result":{"id":"cmd-1","ok":true}}`)); err != nil {
			return err
		}
		if err := cmds.Bucket(store.BucketCommandOrder).Put(store.Uint64Key(1), []byte("cmd-1")); err != nil {
			return err
		}
		rec, err = audit.Append(tx, at, "policy_accepted", "", map[string]string{"version": "2026-11", "previous": ""})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := store.Open(path)
	if err != nil {
		t.Fatalf("open with the latest schema: %v", err)
	}
	defer st.Close()
	if v := st.SchemaVersion(); v != len(store.Migrations) || v < 3 {
		t.Fatalf("schema version %d, want %d", v, len(store.Migrations))
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	pol := policy.New("US-CA", []string{"US-IL"}, nil)
	err = st.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{store.BucketOutbox, store.BucketFirmware, store.BucketSubjects, store.BucketFaces, store.BucketScoring, store.BucketEvents} {
			if tx.Bucket(b) == nil {
				t.Errorf("bucket %s missing after the migration", b)
			}
		}
		for _, b := range [][]byte{store.BucketMeta, store.BucketPolicy, store.BucketAudit, store.BucketDays, store.BucketPhotos, store.BucketIntake, store.BucketCommands} {
			if tx.Bucket(b) == nil {
				t.Errorf("schema-1 bucket %s lost", b)
			}
		}

		// Consent: byte for byte, and as the policy reads it.
		if got := tx.Bucket(store.BucketPolicy).Get([]byte("state")); !bytes.Equal(got, v1PolicyState) {
			t.Errorf("policy state changed:\n got %s\nwant %s", got, v1PolicyState)
		}
		ps, err := pol.Read(tx)
		if err != nil {
			return err
		}
		if ps.PolicyVersion != "2026-11" || !ps.On(policy.AutoPhoto) || !ps.On(policy.Patrol) || !ps.On(policy.BlurUnknownFaces) ||
			ps.On(policy.CloudBackup) || ps.Region != "US-CA" || ps.PausedForPolicy != "" {
			t.Errorf("policy state read back as %+v", ps)
		}
		if !pol.Allows(ps, policy.AutoPhoto) {
			t.Error("auto_photo no longer allowed after the migration")
		}

		// Counters: byte for byte, and as capture reads them.
		if got := tx.Bucket(store.BucketDays).Get([]byte("d/2026-11-22")); !bytes.Equal(got, v1Day) {
			t.Errorf("day counters changed:\n got %s\nwant %s", got, v1Day)
		}
		day, err := capture.ReadDay(tx, "2026-11-22")
		if err != nil {
			return err
		}
		want := capture.DayCounts{Day: "2026-11-22", Admitted: 30, Refused: 4, OverCap: 2, Invalid: 1, Uploaded: 7, Deleted: 3, CapReached: true}
		if day != want {
			t.Errorf("day counters read back as %+v, want %+v", day, want)
		}
		if d := capture.NewDayClock(func() time.Time { return at.Add(-48 * time.Hour) }, nil, time.UTC).Day(tx); d != "2026-11-22" {
			t.Errorf("latest-day mark lost: current day %s with the clock set back", d)
		}

		// Command ids: a repeat still gets its answer.
		if tx.Bucket(store.BucketCommands).Bucket(store.BucketCommandIDs).Get([]byte("cmd-1")) == nil {
			t.Error("handled command id lost")
		}

		// Audit: the chain verifies and holds the record.
		if rep := audit.Verify(tx); !rep.OK || rep.Records != 1 {
			t.Errorf("audit after the migration: %+v", rep)
		}
		recs, err := audit.Newest(tx, 10)
		if err != nil {
			return err
		}
		if len(recs) != 1 || recs[0].Hash != rec.Hash || recs[0].Type != "policy_accepted" {
			t.Errorf("audit records %+v, want %+v", recs, rec)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The chain goes on from where schema 1 left it, and the new buckets
	// take writes.
	err = st.Update(func(tx *bolt.Tx) error {
		if _, err := audit.Append(tx, at.Add(time.Minute), "firmware_staged", "", map[string]string{"version": "1.2.3"}); err != nil {
			return err
		}
		return tx.Bucket(store.BucketFirmware).Put([]byte("highest"), []byte("1.2.3"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.View(func(tx *bolt.Tx) error {
		if rep := audit.Verify(tx); !rep.OK || rep.Records != 2 {
			t.Errorf("audit after appending: %+v", rep)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Opening again migrates nothing more.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if v := again.SchemaVersion(); v != len(store.Migrations) {
		t.Fatalf("schema version %d after reopening", v)
	}
}
