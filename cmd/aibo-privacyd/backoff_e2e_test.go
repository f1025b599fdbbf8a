package main

import (
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// TestACrashLoopReconnectsNoFasterThanTheBackoff (issue 20): a daemon
// killed -9 right after it connected and started again at once, over and
// over (a crash loop), does not connect at once every time. Each start
// reads the backoff it kept in data_dir, waits a draw of a ceiling that
// doubles with every restart (0.5 s, 1 s, 2 s, 4 s), and only then
// connects; the first start waits for nothing.
func TestACrashLoopReconnectsNoFasterThanTheBackoff(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	logTime := func(l map[string]any) time.Time {
		at, err := time.Parse(time.RFC3339Nano, l["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	for i := range 5 {
		r.start()
		lines := r.waitConnected(30 * time.Second)
		connected := findLog(lines, "mqtt connected", nil)
		r.kill()
		kept := findLog(lines, "mqtt backoff kept from before the restart", nil)
		if i == 0 {
			if kept != nil {
				t.Fatalf("the first start waited: %v", kept)
			}
			continue
		}
		if kept == nil {
			t.Fatalf("start %d, a moment after the last connection: no backoff kept from before", i+1)
		}
		ceiling, err1 := time.ParseDuration(kept["ceiling"].(string))
		wait, err2 := time.ParseDuration(kept["wait"].(string))
		if err1 != nil || err2 != nil {
			t.Fatalf("start %d: %v", i+1, kept)
		}
		if want := 500 * time.Millisecond << (i - 1); ceiling != want {
			t.Fatalf("start %d: ceiling %s, want %s (doubling with every restart)", i+1, ceiling, want)
		}
		if took := logTime(connected).Sub(logTime(kept)); took < wait-time.Millisecond {
			t.Fatalf("start %d: connected %s after deciding to wait %s", i+1, took, wait)
		}
		t.Logf("start %d: ceiling %s, waited %s", i+1, ceiling, wait)
	}
}
