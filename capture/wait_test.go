package capture

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
)

// TestFullDiskBacksOffAndLogsOncePerChange (issue 15 item 3): 13 files
// rescanned every 2 s for 10 s on a full disk gave 66 log lines. Now one
// file is tried at a time after a growing delay, and a line marks each
// change of state only.
func TestFullDiskBacksOffAndLogsOncePerChange(t *testing.T) {
	logs := &testlog.Buffer{}
	changes := 0
	w := &waiter{log: slog.New(slog.NewTextHandler(logs, nil)), onChange: func() { changes++ }}
	full := fmt.Errorf("record admitted: %w", &os.PathError{Op: "write", Path: "state.db", Err: syscall.ENOSPC})
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tries := 0
	for tick := time.Duration(0); tick <= 10*time.Second; tick += 2 * time.Second { // a rescan every 2 s
		now := start.Add(tick)
		for range 13 {
			if w.mayTry(now) {
				tries++
				w.done(now, storageFailure(full))
			}
		}
	}
	if tries > 4 {
		t.Fatalf("%d tries in 10 s of a full disk, want a backing-off few", tries)
	}
	if got := w.current(); got.Reason != WaitDiskFull || !got.Since.Equal(start) {
		t.Fatalf("waiting %+v", got)
	}
	now := start.Add(time.Minute)
	for !w.mayTry(now) {
		now = now.Add(time.Second)
	}
	w.done(now, nil)
	if got := w.current(); !got.Since.IsZero() {
		t.Fatalf("still waiting after a decision was recorded: %+v", got)
	}
	lines := strings.Count(logs.String(), "\n") - strings.Count(logs.String(), "level=DEBUG")
	if lines != 2 || changes != 2 {
		t.Fatalf("%d log lines (want 2: waiting, resumed), %d state changes:\n%s", lines, changes, logs)
	}
	if waitReason(errors.New("EIO")) != WaitStorageError {
		t.Fatal("any other failure is a storage error")
	}
}

func (f *fixture) markers() int {
	n := 0
	f.st.View(func(tx *bolt.Tx) error { n = tx.Bucket(store.BucketIntake).Stats().KeyN; return nil })
	return n
}

// TestSpoolMarkersDoNotGrowUnderAFlood (issue 12 item 9): a marker only
// matters until its file is unlinked; they go in batches, not hourly.
func TestSpoolMarkersDoNotGrowUnderAFlood(t *testing.T) {
	f := newFixture(t, false) // refused: decided without decoding
	os.MkdirAll(f.spool, 0o755)
	for i := range 300 {
		name := fmt.Sprintf("flood-%03d.jpg", i)
		os.WriteFile(filepath.Join(f.spool, name), []byte("x"), 0o644)
		f.in.process(name)
	}
	if n := f.markers(); n > markerFlushAt {
		t.Fatalf("%d markers before a flush, want at most %d", n, markerFlushAt)
	}
	f.in.flushMarkers()
	if n := f.markers(); n != 0 {
		t.Fatalf("%d markers left after the files went", n)
	}
	var c DayCounts
	f.st.View(func(tx *bolt.Tx) (err error) { c, err = f.in.cfg.Days.Today(tx); return })
	if c.Refused != 300 {
		t.Fatalf("refused %d, want 300", c.Refused)
	}
}

// TestDirectoryNamedLikeAPhotoIsDecidedOnceAndLoggedOnce (issue 12 item
// 9): a directory x.jpg holding a file cannot be removed; it is counted
// once, logged once, and not reprocessed every rescan.
func TestDirectoryNamedLikeAPhotoIsDecidedOnceAndLoggedOnce(t *testing.T) {
	f := newFixture(t, true)
	logs := &testlog.Buffer{}
	f.in.cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	dir := filepath.Join(f.spool, "x.jpg")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "inside"), []byte("keep me"), 0o644)
	for range 10 { // ten rescans, 20 s apart
		f.setClock(f.clock().Add(20 * time.Second))
		f.in.process("x.jpg")
	}
	// Once decided (invalid, with its reason), once as not removable;
	// never again at a rescan.
	n := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "x.jpg") {
			n++
		}
	}
	if n != 2 || !strings.Contains(logs.String(), `msg="photo invalid" file=x.jpg reason=not_a_file`) {
		t.Fatalf("%d log lines about x.jpg, want the invalid one and the not removable one:\n%s", n, logs)
	}
	var c DayCounts
	f.st.View(func(tx *bolt.Tx) (err error) { c, err = f.in.cfg.Days.Today(tx); return })
	if c.Invalid != 1 || c.Admitted != 0 {
		t.Fatalf("counts %+v, want one invalid", c)
	}
	if _, err := os.Stat(filepath.Join(dir, "inside")); err != nil {
		t.Fatalf("the directory's content was touched: %v", err)
	}
}
