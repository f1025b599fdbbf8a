package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// smallDisk mounts a tmpfs of size bytes at dir (root only), unmounted at
// cleanup. A tmpfs is a real file system that runs out of space: the
// daemon's writes fail with ENOSPC exactly as on the robot's flash.
func smallDisk(t *testing.T, dir string, size int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (make test runs as root in CI)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size)+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// fill writes a filler file until the file system is full, and returns
// a function that frees it.
func fill(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for f != nil {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for f != nil { // the last few bytes
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	if f != nil {
		f.Close()
	}
	return func() { os.Remove(path) }
}

// TestFullDiskNothingIsLostAndItIsReported (issue 15 item 3): on a full
// data disk spool files wait, quietly (a line when waiting starts and one
// when it ends), health and the reported state say so, select_photos
// publishes selection_failed, every technician answer given is on record,
// and once there is room every waiting file is decided.
func TestFullDiskNothingIsLostAndItIsReported(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 5\n  min_score: 0\n")
	smallDisk(t, r.dataDir, 24<<20)
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	pics := photos(t, 8)
	r.drop("first.jpg", pics[0])
	r.waitSpoolEmpty(3 * time.Second)

	free := fill(t, r.dataDir)
	for i := 1; i <= 6; i++ {
		r.drop("full-"+strconv.Itoa(i)+".jpg", pics[i])
	}
	a.state(func(s map[string]any) bool {
		in, _ := s["intake"].(map[string]any)
		return in["status"] == "waiting" && in["reason"] == "disk_full"
	})
	time.Sleep(10 * time.Second) // five rescans
	if n := r.spoolCount(); n != 6 {
		t.Fatalf("%d files in the spool on a full disk, want the 6 waiting", n)
	}
	logs := r.logs.String()
	lines := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "photo intake") && !strings.Contains(l, `"level":"DEBUG"`) {
			lines++
		}
	}
	if lines > 1 {
		t.Fatalf("%d log lines about the intake in 10 s of a full disk, want 1", lines)
	}
	if out, code := r.ctl("health", "--json"); code == 0 || !strings.Contains(out, "waiting since") {
		// 503 (exit 1) with the spool check saying why, unless the audit
		// itself could not be written, which is 503 too.
		if !strings.Contains(out, "cannot be audited") {
			t.Fatalf("health on a full disk: exit %d %s", code, out)
		}
	}

	// select_photos: the answer may be started or a refusal, but a failed
	// selection is published, not only logged.
	res := a.send("sel-full", "select_photos", map[string]any{})
	t.Logf("select_photos on a full disk: ok=%v error=%+v", res.OK, res.Error)
	if res.OK {
		a.events.WaitFor(t, 20*time.Second, func(m testbroker.Message) bool {
			var e map[string]any
			return json.Unmarshal(m.Payload, &e) == nil && e["type"] == "selection_failed" && e["reason"] == "disk_full" && e["day"] != ""
		})
	} else if res.Error == nil || res.Error.Code != "internal" {
		t.Fatalf("select_photos on a full disk: %+v", res)
	}

	// Every technician answer given on a full disk is on record.
	c := unixClient(r.socket)
	served := 0
	for range 20 {
		resp, err := c.Get("http://diag/v1/queue")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			served++
		case http.StatusServiceUnavailable:
			if !strings.Contains(string(body), "cannot be audited") {
				t.Fatalf("503 for another reason: %s", body)
			}
		default:
			t.Fatalf("queue on a full disk: %d %s", resp.StatusCode, body)
		}
	}

	free()
	r.waitSpoolEmpty(90 * time.Second) // the back-off tops at a minute
	a.state(func(s map[string]any) bool {
		in, _ := s["intake"].(map[string]any)
		return in["status"] == "ok"
	})
	if c := r.today(); c.Admitted != 7 {
		t.Fatalf("after room came back: %+v, want all 7 admitted", c)
	}
	r.stop()
	queued := 0
	for _, rec := range storeRecords(t, r) {
		if rec.Type == "technician_access" && rec.Fields["path"] == "/v1/queue" && rec.Fields["status"] == "200" {
			n, _ := strconv.Atoi(rec.Fields["count"])
			queued += n
		}
	}
	if queued != served {
		t.Fatalf("%d queue answers served on a full disk, %d on record", served, queued)
	}
	t.Logf("on a full disk: %d of 20 technician requests served (and audited), the rest refused 503", served)
}

// TestHealthSaysWhenTheStoreCannotCommit: on a data disk that takes no
// more writes, the store still answers reads, and health's store check,
// a read, said ok while every command failed `internal`. It now turns
// degraded, with the error, at the first commit that fails, and ok again
// at the first that succeeds.
func TestHealthSaysWhenTheStoreCannotCommit(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	smallDisk(t, r.dataDir, 24<<20)
	// The daemon's clock crawls, so every diagnostic request here falls in
	// one audit minute, whose first health answer (degraded already: the
	// disk check wants 64 MiB free) is on record before the disk fills:
	// an answer first of its kind in its minute is not served on a full
	// disk (it cannot be audited), a repeat is.
	start := time.Now().UTC().Truncate(time.Second)
	if start.Second() >= 50 {
		start = start.Truncate(time.Minute).Add(time.Minute)
	}
	r.env = append(r.env, "AIBO_TEST_CLOCK="+start.Format(time.RFC3339)+"@0.01")
	a := newApp(t, b, r.deviceID)
	r.start()
	a.must("accept-1", "accept_policy", map[string]any{"version": "2026-11"})
	if h := r.health(); !h.Checks["store"].OK {
		t.Fatalf("store check before the disk filled: %+v", h.Checks["store"])
	}

	free := fill(t, r.dataDir)
	failed := false
	for i := 0; i < 40 && !failed; i++ {
		res := a.send("full-"+itoa(i), "set_features", map[string]any{"auto_photo": i%2 == 0})
		failed = !res.OK && res.Error != nil && res.Error.Code == "internal"
	}
	if !failed {
		t.Fatal("no command failed to commit on a full disk")
	}
	h := r.health()
	if c := h.Checks["store"]; c.OK || !strings.Contains(c.Detail, "no space left on device") || h.Status != "degraded" {
		t.Fatalf("health after a commit failed on a full disk: %+v", h)
	}

	free()
	a.must("room-1", "set_features", map[string]any{"auto_photo": true})
	if c := r.health().Checks["store"]; !c.OK {
		t.Fatalf("store check after a commit succeeded: %+v", c)
	}
	r.stop()
}
