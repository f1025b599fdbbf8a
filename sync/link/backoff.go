package link

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/retry"
)

// The reconnect backoff outlives the process. A daemon in a crash loop
// (a command that kills it on arrival, a bad disk, a watchdog) would
// otherwise connect at once after every restart, and a fleet of them
// would hammer the broker however patient each process is. Before every
// connection attempt the link writes Config.BackoffFile: when the attempt
// started and the ceiling of the wait that follows if this connection
// ends. A start less than stableAfter after that attempt counts as a lost
// connection: it waits a draw of the saved ceiling (less the time already
// gone by) and doubles it. A start later than that, or without the file,
// connects at once, as a session that lasted stableAfter resets the
// backoff. The file holds two numbers and nothing about the broker.

// backoffFile is the saved state. Times are wall-clock milliseconds: the
// monotonic clock does not survive a restart.
type backoffFile struct {
	CeilingMillis int64 `json:"ceiling_ms"`
	AttemptUnixMs int64 `json:"attempt_unix_ms"`
}

// resume returns the ceiling of the next wait and how long to wait before
// the first attempt, from Config.BackoffFile.
func (l *Link) resume() (ceiling, wait time.Duration) {
	ceiling = l.cfg.MinBackoff
	if l.cfg.BackoffFile == "" {
		return ceiling, 0
	}
	raw, err := os.ReadFile(l.cfg.BackoffFile)
	if errors.Is(err, fs.ErrNotExist) {
		return ceiling, 0
	}
	var st backoffFile
	if err == nil {
		err = json.Unmarshal(raw, &st)
	}
	if err != nil || st.CeilingMillis <= 0 {
		// A torn write after a power cut: start afresh, which costs one
		// early attempt at most.
		l.log.Warn("mqtt backoff state unreadable; starting afresh", "path", l.cfg.BackoffFile, "err", err)
		return ceiling, 0
	}
	since := time.Since(time.UnixMilli(st.AttemptUnixMs))
	if since >= stableAfter {
		return ceiling, 0
	}
	// A clock set back makes the attempt look younger than it is, or in
	// the future: count nothing as gone by (the longer wait is the safe
	// side for the broker).
	since = max(since, 0)
	ceiling = min(max(time.Duration(st.CeilingMillis)*time.Millisecond, l.cfg.MinBackoff), l.cfg.MaxBackoff)
	wait = retry.FullJitter(ceiling) - since
	l.log.Info("mqtt backoff kept from before the restart", "since_last_attempt", since.Round(time.Millisecond),
		"ceiling", ceiling, "wait", max(wait, 0).Round(time.Millisecond))
	return min(ceiling*2, l.cfg.MaxBackoff), max(wait, 0)
}

// saveBackoff records an attempt starting now whose end, if it comes
// before stableAfter, is followed by a wait of up to ceiling.
func (l *Link) saveBackoff(ceiling time.Duration) {
	if l.cfg.BackoffFile == "" {
		return
	}
	raw, _ := json.Marshal(backoffFile{CeilingMillis: ceiling.Milliseconds(), AttemptUnixMs: time.Now().UnixMilli()})
	if err := writeReplace(l.cfg.BackoffFile, raw); err != nil {
		l.log.Warn("mqtt backoff state not saved", "path", l.cfg.BackoffFile, "err", err)
	}
}

// writeReplace replaces path with data through a rename, so a reader
// sees the old or the new content. No fsync: a crash loop is a process
// restarting on a running kernel, and what a power cut loses costs one
// early attempt.
func writeReplace(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
