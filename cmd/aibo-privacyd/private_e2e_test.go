package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestP16_ExistingStateIsMadePrivate (issue 12 item 9): a state.db or photo
// vault left readable by others is made private at start, and one owned by
// someone else stops the daemon with one line.
func TestP16_ExistingStateIsMadePrivate(t *testing.T) {
	r := newRig(t, nil, "")
	r.start()
	r.stop()
	db, vault := filepath.Join(r.dataDir, "state.db"), filepath.Join(r.dataDir, "photos")
	os.Chmod(db, 0o644)
	os.Chmod(vault, 0o755)
	os.Chmod(r.dataDir, 0o755)
	r.start()
	for p, want := range map[string]os.FileMode{db: 0o600, vault: 0o700, r.dataDir: 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	if n := strings.Count(r.logs.String(), "permissions tightened"); n != 3 {
		t.Errorf("%d log lines about tightened permissions, want 3", n)
	}
	r.stop()
	if os.Geteuid() != 0 {
		return // chown needs root
	}
	if err := os.Chown(db, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	out, code := runOnce(t, "-config", r.config)
	// The JSON log lines of the start come first; the reason is the last
	// line, plain, on its own.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "aibo-privacyd: ") || !strings.Contains(last, "owned by uid 4242") {
		t.Fatalf("state.db owned by another uid: exit %d %q", code, out)
	}
}
