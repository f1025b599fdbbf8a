package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/internal/netsums"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// Health of the vision worker (contract v3, sections 2 and 7): whether
// images can be judged now, and if not, why, in the worker's own words.
const (
	// visionCheckEvery is how often the worker's binary and face nets
	// are looked at, and a start is tried while they are not known good.
	visionCheckEvery = 2 * time.Second
	// visionProbeTimeout bounds one start with its nets loaded.
	visionProbeTimeout = 20 * time.Second
	// A worker that failed to start is tried again after visionRetryMin,
	// twice as long each time up to visionRetryMax, unless its binary or
	// its nets change meanwhile (then at once): a start costs a fork, an
	// exec and OpenCV's load.
	visionRetryMin = 2 * time.Second
	visionRetryMax = time.Minute
	// spoolWaitLimit: a spool photo waiting longer makes the vision check
	// degraded.
	spoolWaitLimit = 30 * time.Second
)

// visionHealth knows whether the vision worker can judge images. Every
// visionCheckEvery it checks the worker's binary and the face nets
// against their SHA256SUMS (a full pass whenever stat says a file
// changed), and, while it does not know a start works with them as they
// are, it starts a worker (when none runs) and has it load its nets and
// look at a blank image (after a failed start, again with backoff unless
// a file changed). Requests that fail to start a worker say so at
// once (observe). While it is down the photo intake and the frames wait
// instead of starting a worker for each file; onUp tells them it is back.
type visionHealth struct {
	c      *vision.Client
	worker string // the binary
	nets   string // the face nets' folder
	// cascades are the OpenCV cascades the worker loads: without one, no
	// worker starts.
	cascades []string
	model    string // the descriptor model the recognizer decides on
	log      *slog.Logger
	onUp     func()
	// busy says photos are being judged now (the spool holds some): a
	// probe then waits, since their own requests start a worker and say
	// if it cannot, and a probe would hold them back while the worker
	// loads its nets.
	busy func() bool

	mu       sync.Mutex
	checked  bool   // a check has run since start
	ok       bool   // images can be judged
	reason   string // why not
	since    time.Time
	verified string // nets fingerprint that passed a full SHA-256 pass
	started  string // binary and nets fingerprint a start succeeded with
	failed   string // binary and nets fingerprint the last start failed with
	retryAt  time.Time
	backoff  time.Duration
}

func newVisionHealth(c *vision.Client, worker, nets, model string, log *slog.Logger, onUp func()) *visionHealth {
	return &visionHealth{c: c, worker: worker, nets: nets, model: model, log: log, onUp: onUp, since: time.Now()}
}

// visionStatus is the vision check as health and metrics read it.
type visionStatus struct {
	Checked bool
	OK      bool
	Reason  string
	Since   time.Time
}

func (h *visionHealth) status() visionStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return visionStatus{Checked: h.checked, OK: h.ok, Reason: h.reason, Since: h.since}
}

// mayTry says whether a request may try the worker now: until the first
// check, and while it is known good.
func (h *visionHealth) mayTry() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checked && !h.ok {
		return fmt.Errorf("%w: images cannot be judged: %s", capture.ErrRetryLater, h.reason)
	}
	return nil
}

// call runs one request of the daemon's unless images are known not to
// be judged now, and learns from its error: a worker that did not start
// makes the check degraded at once. The error it returns wraps
// capture.ErrRetryLater when the image was not judged.
func (h *visionHealth) call(req func() error) error {
	if err := h.mayTry(); err != nil {
		return err
	}
	err := req()
	if errors.Is(err, vision.ErrStart) {
		h.set(false, workerReason(err), "")
	}
	// A worker that did not start, a client closed, or a request its
	// caller gave up on (the daemon stopping) says nothing of the image.
	if errors.Is(err, vision.ErrStart) || errors.Is(err, vision.ErrClosed) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", capture.ErrRetryLater, err)
	}
	// Any other outcome means a worker started. Right after the daemon's
	// start, with the nets verified, that is the first check's answer (its
	// probe gave way to these requests).
	h.mu.Lock()
	first := !h.checked && h.verified != ""
	h.mu.Unlock()
	if first {
		h.set(true, "", "")
	}
	return err
}

// run checks at once, then every visionCheckEvery, until ctx ends.
func (h *visionHealth) run(ctx context.Context) error {
	t := time.NewTicker(visionCheckEvery)
	defer t.Stop()
	for {
		h.check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check looks at the binary and the nets, and tries a start when needed.
func (h *visionHealth) check(ctx context.Context) {
	bin, err := fileIdentity(h.worker)
	if err != nil {
		h.set(false, "vision worker "+h.worker+": "+err.Error(), "")
		return
	}
	for _, c := range h.cascades {
		id, _, err := statIdentity(c)
		if err != nil {
			h.set(false, "OpenCV cascade "+c+": "+err.Error(), "")
			return
		}
		bin += "|" + id
	}
	nets, err := netsums.Fingerprint(h.nets)
	if err != nil {
		h.set(false, err.Error(), "")
		return
	}
	h.mu.Lock()
	verified, started, ok, failed, retryAt, down := h.verified, h.started, h.ok, h.failed, h.retryAt, h.checked && !h.ok
	h.mu.Unlock()
	if nets != verified {
		if err := netsums.Verify(h.nets); err != nil {
			h.set(false, err.Error(), "")
			return
		}
		h.mu.Lock()
		h.verified = nets
		h.mu.Unlock()
	}
	fp := bin + "|" + nets
	if ok && fp == started {
		return // nothing changed since a start worked
	}
	if h.c.Stats().Running {
		// A worker runs, so one started; the next start with the files as
		// they are now is tried once it has stopped.
		if !ok {
			h.set(true, "", "")
		}
		return
	}
	if fp == failed && time.Now().Before(retryAt) {
		return // it failed with these very files: not again before its time
	}
	if !down && h.busy != nil && h.busy() {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, visionProbeTimeout)
	err = h.probe(pctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		h.mu.Lock()
		if fp == h.failed {
			h.backoff = min(2*h.backoff, visionRetryMax)
		} else {
			h.failed, h.backoff = fp, visionRetryMin
		}
		h.retryAt = time.Now().Add(h.backoff)
		h.mu.Unlock()
		h.set(false, workerReason(err), "")
		return
	}
	h.mu.Lock()
	h.failed = ""
	h.mu.Unlock()
	h.set(true, "", fp)
}

// probe starts a worker if none runs and has it load its nets and look at
// a blank image: it answers only once every net has loaded.
// freshProbe is probe in a worker started for it alone, so it proves
// that a worker starts with what is on disk now, not that one started
// earlier still runs (the self-test's models check).
func (h *visionHealth) freshProbe(ctx context.Context) error {
	return h.c.Alone(ctx, h.probe)
}

func (h *visionHealth) probe(ctx context.Context) error {
	r, err := h.c.Ready(ctx)
	if err != nil {
		return err
	}
	if r.Model != h.model {
		// Not quoted: the model's name is the worker's text.
		return fmt.Errorf("the worker describes faces with another model than the recognizer's %q", h.model)
	}
	return nil
}

// set records the outcome of a check or a request (started: the
// fingerprint a start worked with, "" for none) and logs each change.
func (h *visionHealth) set(ok bool, reason, started string) {
	h.mu.Lock()
	was, wasReason, first := h.ok, h.reason, !h.checked
	h.checked, h.ok, h.reason = true, ok, reason
	if started != "" {
		h.started = started
	}
	if !ok {
		h.started = ""
	}
	if was != ok || first {
		h.since = time.Now()
	}
	h.mu.Unlock()
	switch {
	case ok && (!was || first):
		if !first {
			h.log.Info("vision worker available again: images are judged")
		}
		if h.onUp != nil {
			h.onUp()
		}
	case !ok && (was || first || reason != wasReason):
		h.log.Warn("images cannot be judged: photos wait in the spool, frames not analysed within 10 s are deleted unread", "why", reason)
	}
}

// workerReason says why a worker did not start, in its own words when it
// logged an error before it exited (the last lines vision keeps).
func workerReason(err error) string {
	s := err.Error()
	_, tail, found := strings.Cut(s, "; last log: ")
	if found {
		lines := strings.Split(tail, " | ")
		for i := len(lines) - 1; i >= 0; i-- {
			line := lines[i]
			// One JSON object per line; the error message may add a ")".
			if a, b := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}'); a >= 0 && b > a {
				line = line[a : b+1]
			}
			var l struct{ Level, Msg, Err string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Level == "ERROR" && l.Err != "" {
				return "the worker says: " + l.Msg + ": " + l.Err
			}
		}
	}
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// fileIdentity is what stat says of a file (device, inode, size, times),
// or why it is not a file the worker can be.
func fileIdentity(path string) (string, error) {
	id, mode, err := statIdentity(path)
	if err != nil {
		return "", err
	}
	if mode&0o111 == 0 {
		return "", errors.New("not executable")
	}
	return id, nil
}

// statIdentity is what stat says of a regular file (device, inode, size,
// times: a file replaced or rewritten has another identity), and its mode.
func statIdentity(path string) (string, uint32, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", 0, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return "", 0, errors.New("not a regular file")
	}
	return strconv.FormatUint(uint64(st.Dev), 36) + " " + strconv.FormatUint(st.Ino, 36) + " " +
		strconv.FormatInt(st.Size, 36) + " " + strconv.FormatInt(st.Mtim.Nano(), 36) + " " + strconv.FormatInt(st.Ctim.Nano(), 36), st.Mode, nil
}
