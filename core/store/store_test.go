package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestNewStoreGoesThroughTheFirstMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.SchemaVersion(); got != len(Migrations) {
		t.Fatalf("schema version %d, want %d", got, len(Migrations))
	}
	err = s.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketMeta, BucketPolicy, BucketAudit, BucketDays, BucketPhotos, BucketIntake, BucketCommands} {
			if tx.Bucket(b) == nil {
				t.Errorf("bucket %s missing", b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestMigrationRunsOnceAndKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketPolicy).Put([]byte("k"), []byte("kept")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	runs := 0
	next := append(append([]Migration(nil), Migrations...), Migration{To: len(Migrations) + 1, Name: "test bucket", Up: func(tx *bolt.Tx) error {
		runs++
		_, err := tx.CreateBucket([]byte("v2"))
		return err
	}})
	for i := 0; i < 2; i++ {
		s, err = OpenWith(path, next)
		if err != nil {
			t.Fatal(err)
		}
		if s.SchemaVersion() != len(next) {
			t.Fatalf("schema %d, want %d", s.SchemaVersion(), len(next))
		}
		var got string
		_ = s.View(func(tx *bolt.Tx) error { got = string(tx.Bucket(BucketPolicy).Get([]byte("k"))); return nil })
		if got != "kept" {
			t.Fatalf("data lost by migration: %q", got)
		}
		s.Close()
	}
	if runs != 1 {
		t.Fatalf("migration ran %d times, want 1", runs)
	}

	// Older code must refuse a newer store instead of running on it.
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("old schema opened a newer store: %v", err)
	}
}

func TestFailedMigrationLeavesVersionUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	bad := append(append([]Migration(nil), Migrations...), Migration{To: len(Migrations) + 1, Name: "fails", Up: func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket([]byte("half")); err != nil {
			return err
		}
		return errors.New("migration fails on purpose")
	}})
	if _, err := OpenWith(path, bad); err == nil {
		t.Fatal("failing migration reported success")
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("half")) != nil {
			t.Error("a failed migration left a half-made bucket")
		}
		return nil
	})
}

// Rewrite leaves in the file only what is live: a deleted record that a
// freed page still held is gone, every live record and bucket sequence is
// kept.
func TestRewriteDropsWhatFreedPagesKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	secret := bytes.Repeat([]byte("deleted-secret-"), 300) // spans a page of its own
	err = s.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(BucketFaces)
		if _, err := b.NextSequence(); err != nil {
			return err
		}
		if err := b.Put([]byte("keep"), []byte("live value")); err != nil {
			return err
		}
		return b.Put([]byte("gone"), secret)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketFaces).Delete([]byte("gone")) }); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, secret) {
		t.Fatal("set-up: the deleted value is not in a freed page; the test reads nothing")
	}
	if err := s.Rewrite(); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(path)
	if bytes.Contains(raw, secret) {
		t.Fatal("the deleted value is still in the store file after Rewrite")
	}
	err = s.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(BucketFaces)
		if string(b.Get([]byte("keep"))) != "live value" || b.Sequence() != 1 {
			t.Errorf("after Rewrite: %q, sequence %d", b.Get([]byte("keep")), b.Sequence())
		}
		return nil
	})
	if err != nil || s.SchemaVersion() != len(Migrations) {
		t.Fatalf("after Rewrite: %v, schema %d", err, s.SchemaVersion())
	}
}
