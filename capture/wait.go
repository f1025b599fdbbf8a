package capture

import (
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"
)

// Why the intake waits (Waiting.Reason).
const (
	WaitDiskFull     = "disk_full"     // ENOSPC or EDQUOT writing the vault or the store
	WaitStorageError = "storage_error" // any other failure to record a decision
	// WaitVision: images cannot be judged (the vision worker cannot
	// start, or its face nets are missing or damaged).
	WaitVision = "vision_unavailable"
)

// Backoff of the intake while decisions cannot be recorded: one file is
// tried after firstWait, then after twice as long each time, up to maxWait.
const (
	firstWait = 2 * time.Second
	maxWait   = time.Minute
)

// storageError marks a decision that could not be recorded (the vault
// file or the store's commit), as opposed to a problem with one spool file.
type storageError struct{ err error }

func (e storageError) Error() string { return e.err.Error() }
func (e storageError) Unwrap() error { return e.err }

func storageFailure(err error) error {
	if err == nil {
		return nil
	}
	return storageError{err}
}

// waitReason classifies what the intake waits for.
func waitReason(err error) string {
	switch {
	case errors.Is(err, ErrRetryLater):
		return WaitVision
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return WaitDiskFull
	}
	return WaitStorageError
}

// Waiting is the intake's state while it cannot record decisions: files
// stay in the spool (nothing is lost or counted) and are decided once the
// disk has room again. Zero Since means the intake is not waiting.
type Waiting struct {
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
}

// waiter is the intake's back-off: while waiting, one file at a time is
// tried, after a growing delay; a log line marks each change of state.
// The intake has one for storage and one for the vision worker: a
// decision recorded without the worker says nothing of the worker.
type waiter struct {
	log      *slog.Logger
	onChange func()
	// what waits, and for what (the log lines' words).
	waitMsg, resumeMsg string
	// onResume runs when a try succeeded after a wait (the files that
	// stayed may all go now).
	onResume func()

	mu      sync.Mutex
	state   Waiting
	next    time.Time // no try before this while waiting
	backoff time.Duration
	probing bool
	tries   int // failed tries since waiting began
}

// mayTry reports whether a file may be tried now. While waiting only one
// try runs at a time, and not before the back-off has passed; the caller
// then must report done.
func (w *waiter) mayTry(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state.Since.IsZero() {
		return true
	}
	if w.probing || now.Before(w.next) {
		return false
	}
	w.probing = true
	return true
}

// done reports the result of a try: err is nil, or a storage failure.
func (w *waiter) done(now time.Time, err error) {
	w.mu.Lock()
	was := w.state
	changed := false
	w.probing = false
	switch {
	case err == nil && !was.Since.IsZero():
		w.log.Info(w.resumeMsg, "waited", now.Sub(was.Since).Round(time.Second).String(), "failed_tries", w.tries)
		w.state, w.backoff, w.tries = Waiting{}, 0, 0
		changed = true
		if w.onResume != nil {
			defer w.onResume() // after the unlock
		}
	case err != nil:
		reason := waitReason(err)
		if was.Since.IsZero() {
			w.state, w.backoff = Waiting{Since: now.UTC(), Reason: reason}, firstWait
			changed = true
			w.log.Warn(w.waitMsg, "reason", reason, "err", err)
		} else {
			w.backoff = min(2*w.backoff, maxWait)
			if reason != was.Reason {
				w.state.Reason = reason
				changed = true
				w.log.Warn("photo intake still waiting, for another reason", "reason", reason, "err", err)
			} else {
				w.log.Debug("photo intake still waiting", "reason", reason, "retry_in", w.backoff.String())
			}
		}
		w.tries++
		w.next = now.Add(w.backoff)
	}
	w.mu.Unlock()
	if changed && w.onChange != nil {
		w.onChange()
	}
}

// skip ends a try that said nothing about storage (the file's own
// problem, or nothing to record).
func (w *waiter) skip() {
	w.mu.Lock()
	w.probing = false
	w.mu.Unlock()
}

// hurry lets the next try run at once (what was waited for is back).
func (w *waiter) hurry() {
	w.mu.Lock()
	w.next = time.Time{}
	w.mu.Unlock()
}

func (w *waiter) current() Waiting {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}
