package store

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCheckUnderConcurrentWritersFindsNoFalseCorruption (issue 15 item 2):
// with writers putting and deleting all the while, every Check of a
// healthy store passes (bbolt's Check in a read transaction reads the
// shared freelist, which later commits change: "reachable freed").
func TestCheckUnderConcurrentWritersFindsNoFalseCorruption(t *testing.T) {
	checkUnderLoad(t, (*Store).Check)
}

// TestCheckNeverHoldsWritersBack (issue 21, item 6): on a full disk the
// check fell back to the live store under the writer lock, and every
// command waited for it. Now it says the store was not checked, while a
// writer holds the lock.
func TestCheckNeverHoldsWritersBack(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	createSnapshot = func(string, string) (*os.File, error) {
		return nil, &os.PathError{Op: "open", Path: "snapshot", Err: syscall.ENOSPC}
	}
	defer func() { createSnapshot = os.CreateTemp }()
	writing, release := make(chan struct{}), make(chan struct{})
	go s.Update(func(*bolt.Tx) error { close(writing); <-release; return nil })
	<-writing
	defer close(release)
	done := make(chan error, 1)
	go func() { done <- s.Check() }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotChecked) || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("Check on a full disk: %v, want ErrNotChecked saying why", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Check waits for the writer: it takes the write lock")
	}
}

func checkUnderLoad(t *testing.T, check func(*Store) error) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var writes atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			val := make([]byte, 700)
			for i := 0; !stop.Load(); i++ {
				rand.Read(val)
				err := s.Update(func(tx *bolt.Tx) error {
					b := tx.Bucket(BucketPolicy)
					for k := range 20 {
						key := fmt.Appendf(nil, "w%d-%d", w, (i*20+k)%400)
						if i%3 == 2 {
							if err := b.Delete(key); err != nil {
								return err
							}
						} else if err := b.Put(key, val); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				writes.Add(1)
			}
		})
	}
	// Readers hold snapshots open, as the daemon's views do.
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				s.View(func(tx *bolt.Tx) error {
					c := tx.Bucket(BucketPolicy).Cursor()
					for k, _ := c.First(); k != nil; k, _ = c.Next() {
					}
					return nil
				})
			}
		})
	}
	bad, checks := 0, 0
	deadline := time.Now().Add(time.Minute)
	for ; checks < 40 || writes.Load() < 100; checks++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes in a minute: the test proves nothing", writes.Load())
		}
		if err := check(s); err != nil {
			bad++
			t.Errorf("check %d under load: %v", checks, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d checks, %d writes meanwhile, %d false reports", checks, writes.Load(), bad)
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		if e.Name() != "state.db" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestCheckFindsRealCorruption: a page overwritten on disk is reported.
func TestCheckFindsRealCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(BucketPolicy)
		for i := range 2000 {
			if err := b.Put(fmt.Appendf(nil, "key-%05d", i), make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var leaf uint64
	s.View(func(tx *bolt.Tx) error {
		// A leaf page of the policy bucket, by walking its pages.
		c := tx.Bucket(BucketPolicy).Cursor()
		c.First()
		for id := 3; id < int(tx.Size()/int64(os.Getpagesize())); id++ {
			if p, err := tx.Page(id); err == nil && p != nil && p.Type == "leaf" && p.Count > 20 {
				leaf = uint64(id)
				break
			}
		}
		return nil
	})
	s.Close()
	if leaf == 0 {
		t.Fatal("no leaf page found")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Break the page's header: a type bbolt does not know.
	f.WriteAt([]byte{0xff, 0xff}, int64(leaf)*int64(os.Getpagesize())+8)
	f.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Check()
	if err == nil || !strings.Contains(err.Error(), "store integrity") {
		t.Fatalf("Check on a broken page: %v", err)
	}
}
