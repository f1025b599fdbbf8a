package main

import (
	"bytes"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// TestP2_P4_Kill9DuringSelectionLosesAndDoublesNothing (issue 15, kept as a
// regression test): the daemon is killed -9 at several points of a
// selection of a full day; after each restart the day's photos are each
// either undecided (record and file), queued (outbox) or deleted, never
// two of these, and the cap holds.
func TestP2_P4_Kill9DuringSelectionLosesAndDoublesNothing(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 10\n  min_score: 0\nmqtt:\n  ack_timeout: 60s\n")
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	pics := photos(t, 30)
	for i, p := range pics[:29] {
		r.drop("sel-"+strconv.Itoa(i)+".jpg", p)
	}
	r.waitSpoolEmpty(10 * time.Second)
	check := func(when string) counts {
		t.Helper()
		r.stop()
		c := r.todayOffline(t)
		undecided := len(photoRecords(t, r))
		if files := vaultFiles(t, r); files != undecided {
			t.Fatalf("%s: %d photo records, %d sealed files", when, undecided, files)
		}
		queued := r.queuedPhotos(t)
		if c.Admitted > 30 || c.Admitted != undecided+queued+c.Deleted+c.Uploaded {
			t.Fatalf("%s: %+v with %d undecided and %d queued: a photo lost or counted twice", when, c, undecided, queued)
		}
		checkStore(t, r)
		t.Logf("%s: admitted %d = %d undecided + %d queued + %d deleted + %d uploaded", when, c.Admitted, undecided, queued, c.Deleted, c.Uploaded)
		r.start()
		return c
	}
	// The 30th photo reaches the cap and starts the selection by itself.
	delays := []time.Duration{30 * time.Millisecond, 250 * time.Millisecond, 700 * time.Millisecond, 1500 * time.Millisecond}
	for i, d := range delays {
		if i == 0 {
			r.drop("sel-29.jpg", pics[29])
		} else {
			// Restarted again and again, the daemon keeps a crash loop's
			// backoff before it connects.
			r.waitConnected(40 * time.Second)
			a.send("sel-"+strconv.Itoa(i), "select_photos", map[string]any{})
		}
		time.Sleep(d)
		r.kill()
		r.start()
		check("killed " + d.String() + " into a selection")
	}
	r.waitConnected(40 * time.Second)
	a.must("sel-final", "select_photos", map[string]any{})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := r.today()
		if c.Deleted+num(r.status(), "outbox", "pending") == 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("selection never finished: %+v", c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := check("after the last selection"); c.Admitted != 30 {
		t.Fatalf("final %+v", c)
	}
	r.stop()
}

// todayOffline reads today's counters from the stopped daemon's store.
func (r *rig) todayOffline(t *testing.T) counts {
	t.Helper()
	s, err := store.Open(filepath.Join(r.dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var c capture.DayCounts
	la, _ := time.LoadLocation("America/Los_Angeles")
	s.View(func(tx *bolt.Tx) (err error) { c, err = capture.NewDayClock(nil, nil, la).Today(tx); return })
	return counts{c.Day, c.Admitted, c.Refused, c.OverCap, c.Invalid, c.Uploaded, c.Deleted}
}

// queuedIDs lists the photo artifacts queued in the stopped daemon's
// outbox (its kind index), and checks each has its record.
func (r *rig) queuedIDs(t *testing.T) map[string]bool {
	t.Helper()
	db, err := bolt.Open(filepath.Join(r.dataDir, "state.db"), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]bool{}
	db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(store.BucketOutbox)
		arts, kinds := root.Bucket([]byte("artifacts")), root.Bucket([]byte("by_kind"))
		c := kinds.Cursor()
		prefix := []byte("photo\x00")
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id := string(k[len(prefix):])
			if arts.Get([]byte(id)) == nil {
				t.Errorf("queued photo %s has no record", id)
			}
			out[id] = true
		}
		return nil
	})
	return out
}

func (r *rig) queuedPhotos(t *testing.T) int { return len(r.queuedIDs(t)) }

// TestP4_SIGTERMMidUploadKeepsTheQueue: a clean stop in the middle of
// publishing chunks keeps every queued photo, resent with the same id.
func TestP4_SIGTERMMidUploadKeepsTheQueue(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 3\n  min_score: 0\nmqtt:\n  chunk_size: 1024\n  ack_timeout: 60s\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	enableAutoPhoto(a)
	for i, p := range photos(t, 3) {
		r.drop("up-"+strconv.Itoa(i)+".jpg", p)
	}
	r.waitSpoolEmpty(5 * time.Second)
	a.must("sel", "select_photos", map[string]any{})
	a.state(func(s map[string]any) bool { return num(s, "outbox", "pending") == 3 })
	// Some chunks are out: stop in the middle of the upload.
	cl.parts.WaitFor(t, 10*time.Second, func(testbroker.Message) bool { return true })
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10 s of SIGTERM")
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	r.cmd = nil
	if q := r.queuedPhotos(t); q != 3 {
		t.Fatalf("%d photos queued after SIGTERM, want 3", q)
	}
	ids := r.queuedIDs(t)
	cl2 := newCloud(t, b, a) // only what is sent after the restart
	r.start()
	got := map[string]bool{}
	for len(got) < 3 {
		m, _ := cl2.receive("photo", true)
		if !ids[m.ArtifactID] {
			t.Fatalf("artifact %s was not in the queue before the stop", m.ArtifactID)
		}
		got[m.ArtifactID] = true
	}
	a.state(func(s map[string]any) bool {
		return num(s, "photos_today", "uploaded") == 3 && num(s, "outbox", "pending") == 0
	})
	r.stop()
}
