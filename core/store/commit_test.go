package store

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestCommitErrSaysWhileNothingCanBeWritten: on a file system that takes
// no more writes (here a tmpfs filled up: ENOSPC, as the robot's flash),
// reads still answer, so a read alone would call the store fine. The
// failed commit is remembered, by Update and Batch alike, a transaction its
// function refused changes nothing, and the first commit that succeeds
// clears it.
func TestCommitErrSaysWhileNothingCanBeWritten(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (make test runs as root in CI)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	s, err := Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(v []byte) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error { return tx.Bucket(BucketMeta).Put([]byte("k"), v) }
	}
	refuse := func(tx *bolt.Tx) error { return errors.New("no") }
	if err := s.Update(put([]byte("v"))); err != nil {
		t.Fatal(err)
	}
	if s.Update(refuse) == nil || s.CommitErr() != nil {
		t.Fatalf("a refused transaction on a healthy store: CommitErr %v", s.CommitErr())
	}

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	f.Close()
	big := bytes.Repeat([]byte{1}, 1<<20)
	for name, run := range map[string]func(func(*bolt.Tx) error) error{"Update": s.Update, "Batch": s.Batch} {
		if err := run(put(big)); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("%s on a full file system: %v, want ENOSPC", name, err)
		}
		if err := s.CommitErr(); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("after %s failed to commit: CommitErr %v, want ENOSPC", name, err)
		}
	}
	if err := s.View(func(tx *bolt.Tx) error { return nil }); err != nil {
		t.Fatalf("a read on a full file system: %v (the point: it answers)", err)
	}
	if s.Update(refuse) == nil || s.CommitErr() == nil {
		t.Fatal("a refused transaction cleared the failed commit")
	}

	os.Remove(filler)
	if err := s.Update(put(big)); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitErr(); err != nil {
		t.Fatalf("after a commit succeeded: CommitErr %v", err)
	}
}
