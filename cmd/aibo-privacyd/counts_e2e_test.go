package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// settled waits until every photo admitted today is uploaded or deleted
// and returns the counts.
func (r *rig) settled(t *testing.T) counts {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c := r.today()
		st := r.status()
		if c.Uploaded+c.Deleted == c.Admitted && num(st, "outbox", "pending") == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("photos unaccounted for: %+v, outbox %v", c, st["outbox"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestP4_EveryAdmittedPhotoEndsUploadedOrDeleted (issue 15 item 6): a photo
// withdrawn from the upload queue (delete_data photos, auto_photo off)
// after it was queued is counted deleted, an acked one uploaded, and no
// photo is in both or neither.
func TestP4_EveryAdmittedPhotoEndsUploadedOrDeleted(t *testing.T) {
	for _, withdraw := range []struct {
		name    string
		cmd     string
		payload map[string]any
	}{
		{"delete_data photos", "delete_data", map[string]any{"categories": []string{"photos"}}},
		{"auto_photo off", "set_features", map[string]any{"auto_photo": false}},
	} {
		t.Run(withdraw.name, func(t *testing.T) {
			b := testbroker.Start(t)
			r := newRig(t, b, "photos:\n  keep_per_day: 10\n  min_score: 0\nmqtt:\n  ack_timeout: 60s\n")
			a := newApp(t, b, r.deviceID)
			r.start()
			enableAutoPhoto(a)
			c := newCloud(t, b, a)
			pics := photos(t, 14)
			// Ten queued for upload, unacked.
			for i := range 10 {
				r.drop("q"+strconv.Itoa(i)+".jpg", pics[i])
			}
			r.waitSpoolEmpty(5 * time.Second)
			a.must("sel-1", "select_photos", map[string]any{})
			// Each kept photo is readied by a worker of its own (issue
			// 21): ten of them take a while on a loaded machine; the
			// contract bounds no selection's time.
			a.events.WaitFor(t, 120*time.Second, func(m testbroker.Message) bool {
				return strings.Contains(string(m.Payload), `"selection_done"`)
			})
			a.state(func(s map[string]any) bool { return num(s, "outbox", "pending") == 10 })
			// Two of them acked before the withdrawal, four more admitted
			// and still undecided.
			c.receive("photo", true)
			c.receive("photo", true)
			a.state(func(s map[string]any) bool { return num(s, "photos_today", "uploaded") == 2 })
			for i := 10; i < 14; i++ {
				r.drop("u"+strconv.Itoa(i)+".jpg", pics[i])
			}
			r.waitSpoolEmpty(5 * time.Second)
			a.must("withdraw", withdraw.cmd, withdraw.payload)
			got := r.settled(t)
			if got.Admitted != 14 || got.Uploaded != 2 || got.Deleted != 12 {
				t.Fatalf("%s: %+v, want admitted 14 = uploaded 2 + deleted 12", withdraw.name, got)
			}
			// The same after a restart: the counts are durable.
			r.stop()
			r.start()
			if again := r.today(); again != got {
				t.Fatalf("after a restart %+v, before %+v", again, got)
			}
			r.stop()
		})
	}
}
