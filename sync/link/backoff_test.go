package link

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

func readBackoff(t *testing.T, path string) backoffFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st backoffFile
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestACrashLoopKeepsBackingOff: a link started again and again within a
// minute of its last connection attempt (a crash loop) does not start
// from the smallest wait each time: the ceiling it keeps in BackoffFile
// doubles with every start, up to MaxBackoff, the way it doubles with
// every connection lost within a process.
func TestACrashLoopKeepsBackingOff(t *testing.T) {
	b := testbroker.Start(t)
	path := filepath.Join(t.TempDir(), "mqtt-backoff")
	want := []time.Duration{100, 200, 400, 800, 800} // ms: the ceiling after each start
	for i, ceiling := range want {
		f := newFixture(t, Config{Broker: b.URL, BackoffFile: path, MinBackoff: 100 * time.Millisecond, MaxBackoff: 800 * time.Millisecond})
		stop := f.run(t)
		waitConnected(t, f.link, true)
		stop() // the process ends a moment after it connected
		if got := time.Duration(readBackoff(t, path).CeilingMillis) * time.Millisecond; got != ceiling*time.Millisecond {
			t.Fatalf("start %d: the saved ceiling is %s, want %s", i+1, got, ceiling*time.Millisecond)
		}
	}
}

// TestResumeWaitsOnlyWithinAMinuteOfTheLastAttempt: the wait at start is
// a draw of the saved ceiling less the time gone by since that attempt;
// an attempt a minute old (a session that lasted), an unreadable file or
// none mean no wait; an attempt in the future (a clock set back) takes
// nothing off.
func TestResumeWaitsOnlyWithinAMinuteOfTheLastAttempt(t *testing.T) {
	dir := t.TempDir()
	l := newFixture(t, Config{Broker: "tcp://127.0.0.1:1", BackoffFile: filepath.Join(dir, "b"), MinBackoff: time.Second, MaxBackoff: 16 * time.Second}).link
	write := func(ceiling time.Duration, at time.Time) {
		raw, _ := json.Marshal(backoffFile{CeilingMillis: ceiling.Milliseconds(), AttemptUnixMs: at.UnixMilli()})
		if err := os.WriteFile(l.cfg.BackoffFile, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if c, w := l.resume(); c != time.Second || w != 0 {
		t.Fatalf("no file: ceiling %s wait %s, want 1s and none", c, w)
	}
	write(8*time.Second, time.Now().Add(-2*time.Second))
	var longest time.Duration
	for range 200 {
		c, w := l.resume()
		if c != 16*time.Second || w < 0 || w > 6*time.Second {
			t.Fatalf("8s ceiling, 2s ago: ceiling %s wait %s, want 16s and at most 6s", c, w)
		}
		longest = max(longest, w)
	}
	if longest < 3*time.Second {
		t.Fatalf("200 draws of up to 6s never waited 3s (longest %s): not a draw of the whole ceiling", longest)
	}
	write(8*time.Second, time.Now().Add(-stableAfter))
	if c, w := l.resume(); c != time.Second || w != 0 {
		t.Fatalf("attempt a minute ago: ceiling %s wait %s, want 1s and none", c, w)
	}
	write(8*time.Second, time.Now().Add(time.Hour))
	for range 200 {
		if _, w := l.resume(); w > 8*time.Second {
			t.Fatalf("attempt in the future: wait %s over the ceiling", w)
		}
	}
	write(time.Hour, time.Now())
	if c, _ := l.resume(); c != 16*time.Second {
		t.Fatalf("a saved ceiling over MaxBackoff: next ceiling %s, want MaxBackoff 16s", c)
	}
	if err := os.WriteFile(l.cfg.BackoffFile, []byte("{\"ceiling_ms\":"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, w := l.resume(); c != time.Second || w != 0 {
		t.Fatalf("torn file: ceiling %s wait %s, want 1s and none", c, w)
	}
}

// TestBackoffFileIsPrivate: the state file is the daemon's own (0600),
// like everything else in data_dir.
func TestBackoffFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b")
	l := newFixture(t, Config{Broker: "tcp://127.0.0.1:1", BackoffFile: path}).link
	l.saveBackoff(time.Second)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
}
