package vision

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors a request can end with. Every one of them means the photo got no
// score: the caller counts it invalid and goes on.
var (
	// ErrTimeout: the worker did not answer within Config.RequestTimeout; it
	// was killed and the next request starts a new one.
	ErrTimeout = errors.New("vision: worker timed out")
	// ErrCrashed: the worker died or broke the protocol during the request;
	// the next request starts a new one.
	ErrCrashed = errors.New("vision: worker crashed")
	// ErrStart: the worker could not be started or failed its handshake.
	ErrStart = errors.New("vision: worker did not start")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("vision: client closed")
	// ErrTooLarge: the image is over MaxImageBytes; it was not sent.
	ErrTooLarge = errors.New("vision: image too large")
)

// RemoteError is a request the worker answered with an error (for example
// an image it could not decode). The worker stays up.
type RemoteError struct {
	Op  Op
	Msg string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("vision: %s: %s", e.Op, e.Msg) }

// Config tells the client how to run the worker. Zero durations take the
// defaults named on each field.
type Config struct {
	// Path of the worker binary (cmd/aibo-vision); Args its arguments.
	Path string
	Args []string
	// Launcher, when set, is a binary that calls RunLauncher first (the
	// daemon's own): the worker is started through it, confined to
	// reading Sandbox.Read (see sandbox_linux.go). Empty: unconfined.
	Launcher string
	Sandbox  Sandbox
	// Env is the worker's whole environment. nil gives DefaultEnv: the
	// daemon's own environment (which may hold secrets) is not passed on.
	Env []string
	// Dir is the worker's working directory; "" is "/".
	Dir string

	RequestTimeout time.Duration // one request, default 10 s
	StartTimeout   time.Duration // start plus handshake, default 5 s
	// IdleTimeout stops the worker after this long without a request,
	// default 30 s; negative: never.
	IdleTimeout time.Duration
	// StopGrace is how long a worker whose stdin was closed may take to
	// exit before it is killed, default 2 s.
	StopGrace time.Duration

	// Stderr receives the worker's log (JSON lines); nil discards it. The
	// last few lines are kept either way for error messages.
	Stderr io.Writer
	// Logger records starts, stops, crashes and time-outs; nil discards.
	Logger *slog.Logger
	// OnStart runs with each new worker's pid, before the handshake (the
	// daemon puts the worker in its own memory cgroup there). An error is
	// logged; the worker runs anyway.
	OnStart func(pid int) error
}

// DefaultEnv is the worker's environment when Config.Env is nil: a PATH,
// OpenCV quiet, and OpenCV's own decoder limit at the contract's 40
// megapixels (the worker checks the header first; this is a second line).
var DefaultEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "OPENCV_LOG_LEVEL=ERROR", "OPENCV_IO_MAX_IMAGE_PIXELS=40000000"}

func (c Config) withDefaults() Config {
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 5 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 2 * time.Second
	}
	if c.Env == nil {
		c.Env = DefaultEnv
	}
	if c.Dir == "" {
		c.Dir = "/"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats counts what the client did with its workers.
type Stats struct {
	Running   bool // a worker is up now
	PID       int  // its process id, 0 when none
	Starts    int  // workers started (the first one included)
	Crashes   int  // workers that died or broke the protocol mid-request
	Timeouts  int  // workers killed for a slow request or a cancelled context
	IdleStops int  // workers stopped after IdleTimeout
	Requests  int  // requests sent (handshakes not counted)
	Failed    int  // requests that ended in an error of any kind
	// NoNetwork: the running (or last) worker has a network namespace of
	// its own and cannot reach any network.
	NoNetwork bool
	// Sandboxed: the running (or last) worker was started through the
	// launcher (filesystem confined where the kernel has Landlock, no
	// sockets at all by seccomp).
	Sandboxed bool
}

// Client runs the vision worker on demand. Requests are served one at a
// time, in the order they take the lock; Client is safe for concurrent use.
type Client struct {
	cfg Config

	mu       sync.Mutex // serialises requests; guards everything below
	w        *worker
	nextID   uint64
	closed   bool
	idle     *time.Timer
	lastUsed time.Time

	statsMu sync.Mutex
	stats   Stats
}

// NewClient returns a client; no process starts before the first request.
func NewClient(cfg Config) *Client {
	return &Client{cfg: cfg.withDefaults()}
}

// Ping starts the worker if needed and checks it answers.
func (c *Client) Ping(ctx context.Context) (Pong, error) {
	resp, err := c.call(ctx, &Request{Op: OpPing})
	if err != nil {
		return Pong{}, err
	}
	if resp.Pong == nil {
		return Pong{}, fmt.Errorf("%w: ping answered without a pong", ErrCrashed)
	}
	return *resp.Pong, nil
}

// Score asks the worker to score one encoded photo.
func (c *Client) Score(ctx context.Context, req Score) (ScoreResult, error) {
	if len(req.Image) > MaxImageBytes {
		c.count(func(s *Stats) { s.Failed++ })
		return ScoreResult{}, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(req.Image), MaxImageBytes)
	}
	resp, err := c.call(ctx, &Request{Op: OpScore, Score: &req})
	if err != nil {
		return ScoreResult{}, err
	}
	if resp.Score == nil {
		return ScoreResult{}, fmt.Errorf("%w: score answered without a result", ErrCrashed)
	}
	return *resp.Score, nil
}

// Faces asks the worker for the faces of one encoded image, as templates.
func (c *Client) Faces(ctx context.Context, req Faces) (FacesResult, error) {
	if len(req.Image) > MaxImageBytes {
		c.count(func(s *Stats) { s.Failed++ })
		return FacesResult{}, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(req.Image), MaxImageBytes)
	}
	resp, err := c.call(ctx, &Request{Op: OpFaces, Faces: &req})
	if err != nil {
		return FacesResult{}, err
	}
	if resp.Faces == nil {
		return FacesResult{}, fmt.Errorf("%w: faces answered without a result", ErrCrashed)
	}
	return *resp.Faces, nil
}

// Validate asks the worker to decode one encoded image completely.
func (c *Client) Validate(ctx context.Context, req Validate) (ValidateResult, error) {
	if len(req.Image) > MaxImageBytes {
		c.count(func(s *Stats) { s.Failed++ })
		return ValidateResult{}, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(req.Image), MaxImageBytes)
	}
	resp, err := c.call(ctx, &Request{Op: OpValidate, Validate: &req})
	if err != nil {
		return ValidateResult{}, err
	}
	if resp.Validate == nil {
		return ValidateResult{}, fmt.Errorf("%w: validate answered without a result", ErrCrashed)
	}
	return *resp.Validate, nil
}

// Clean asks the worker to re-encode one photo for upload.
func (c *Client) Clean(ctx context.Context, req Clean) (CleanResult, error) {
	if len(req.Image) > MaxImageBytes {
		c.count(func(s *Stats) { s.Failed++ })
		return CleanResult{}, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(req.Image), MaxImageBytes)
	}
	resp, err := c.call(ctx, &Request{Op: OpClean, Clean: &req})
	if err != nil {
		return CleanResult{}, err
	}
	if resp.Clean == nil || len(resp.Clean.JPEG) == 0 {
		return CleanResult{}, fmt.Errorf("%w: clean answered without a photo", ErrCrashed)
	}
	return *resp.Clean, nil
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.stats
}

func (c *Client) count(f func(*Stats)) {
	c.statsMu.Lock()
	f(&c.stats)
	c.statsMu.Unlock()
}

// Close stops the worker (gracefully, then by force) and refuses further
// requests. It waits for a request in flight to finish.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.idle != nil {
		c.idle.Stop()
	}
	if c.w != nil {
		c.stop(c.w)
	}
	return nil
}

func (c *Client) call(ctx context.Context, req *Request) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count(func(s *Stats) { s.Requests++ })
	resp, err := c.callLocked(ctx, req)
	if err != nil {
		c.count(func(s *Stats) { s.Failed++ })
		return nil, err
	}
	return resp, nil
}

func (c *Client) callLocked(ctx context.Context, req *Request) (*Response, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("vision: %s: %w", req.Op, err)
	}
	if c.w != nil && c.w.exited() {
		// Died between requests (killed from outside, OOM): start afresh
		// rather than fail this request for it.
		c.cfg.Logger.Warn("vision worker gone while idle", "pid", c.w.pid, "exit", c.w.exitReason())
		c.count(func(s *Stats) { s.Crashes++ })
		c.drop(c.w)
	}
	if c.w == nil {
		if err := c.start(ctx); err != nil {
			return nil, err
		}
	}
	resp, err := c.roundTrip(ctx, c.w, req, c.cfg.RequestTimeout)
	if err != nil {
		return nil, err
	}
	c.touch()
	if resp.Error != "" {
		return nil, &RemoteError{Op: req.Op, Msg: resp.Error}
	}
	return resp, nil
}

// start runs the worker and shakes hands with a ping.
func (c *Client) start(ctx context.Context) error {
	w, err := startWorker(c.cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	c.count(func(s *Stats) {
		s.Starts++
		s.Running = true
		s.PID = w.pid
		s.NoNetwork = w.isolated
		s.Sandboxed = c.cfg.Launcher != ""
	})
	c.w = w
	if c.cfg.OnStart != nil {
		if err := c.cfg.OnStart(w.pid); err != nil {
			c.cfg.Logger.Warn("vision worker start hook failed", "pid", w.pid, "err", err)
		}
	}
	resp, err := c.roundTrip(ctx, w, &Request{Op: OpPing}, c.cfg.StartTimeout)
	if err == nil && (resp.Pong == nil || resp.Pong.Protocol != ProtocolVersion) {
		got := 0
		if resp.Pong != nil {
			got = resp.Pong.Protocol
		}
		err = fmt.Errorf("worker speaks protocol %d, want %d", got, ProtocolVersion)
		c.kill(w)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrStart, c.cfg.Path, err)
	}
	if w.isolateErr != nil {
		c.cfg.Logger.Warn("vision worker runs without a network namespace of its own", "err", w.isolateErr)
	}
	c.cfg.Logger.Info("vision worker started", "pid", w.pid, "no_network", w.isolated, "sandboxed", c.cfg.Launcher != "", "landlock_abi", LandlockABI())
	return nil
}

// roundTrip sends req and reads its answer. On a time-out, a cancelled
// context, a broken pipe or a garbled answer the worker is killed.
func (c *Client) roundTrip(ctx context.Context, w *worker, req *Request, timeout time.Duration) (*Response, error) {
	c.nextID++
	req.ID = c.nextID
	type result struct {
		resp *Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		if err := WriteRequest(w.stdin, req); err != nil {
			ch <- result{err: err}
			return
		}
		resp, err := ReadResponse(w.stdout)
		ch <- result{resp, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err == nil && r.resp.ID != req.ID {
			r.err = fmt.Errorf("answer for request %d, want %d", r.resp.ID, req.ID)
		}
		if r.err != nil {
			reason := w.exitReason() // before the kill, to tell how it died
			c.kill(w)
			c.count(func(s *Stats) { s.Crashes++ })
			c.cfg.Logger.Error("vision worker crashed", "pid", w.pid, "op", req.Op, "exit", reason, "err", r.err)
			return nil, fmt.Errorf("%w during %s (pid %d, %s): %v", ErrCrashed, req.Op, w.pid, reason, r.err)
		}
		return r.resp, nil
	case <-t.C:
		c.kill(w)
		<-ch
		c.count(func(s *Stats) { s.Timeouts++ })
		c.cfg.Logger.Error("vision worker timed out", "pid", w.pid, "op", req.Op, "after", timeout)
		return nil, fmt.Errorf("%w: %s took over %v (pid %d killed)", ErrTimeout, req.Op, timeout, w.pid)
	case <-ctx.Done():
		c.kill(w)
		<-ch
		c.count(func(s *Stats) { s.Timeouts++ })
		return nil, fmt.Errorf("vision: %s: %w (pid %d killed)", req.Op, ctx.Err(), w.pid)
	}
}

// touch records a finished request and (re)arms the idle timer.
func (c *Client) touch() {
	c.lastUsed = time.Now()
	if c.cfg.IdleTimeout < 0 {
		return
	}
	if c.idle == nil {
		c.idle = time.AfterFunc(c.cfg.IdleTimeout, c.onIdle)
	} else {
		c.idle.Reset(c.cfg.IdleTimeout)
	}
}

func (c *Client) onIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w == nil || c.closed {
		return
	}
	if left := c.cfg.IdleTimeout - time.Since(c.lastUsed); left > 0 {
		c.idle.Reset(left) // a request came in meanwhile
		return
	}
	c.cfg.Logger.Info("vision worker idle, stopping", "pid", c.w.pid)
	c.stop(c.w)
	c.count(func(s *Stats) { s.IdleStops++ })
}

// stop closes the worker's stdin (it exits at EOF) and kills it if it has
// not exited after StopGrace.
func (c *Client) stop(w *worker) {
	w.stdin.Close()
	select {
	case <-w.done:
	case <-time.After(c.cfg.StopGrace):
		c.cfg.Logger.Warn("vision worker ignored EOF, killing", "pid", w.pid)
		w.kill()
	}
	c.drop(w)
}

// kill ends the worker at once and forgets it.
func (c *Client) kill(w *worker) {
	w.kill()
	c.drop(w)
}

func (c *Client) drop(w *worker) {
	w.closePipes()
	<-w.done
	if c.w == w {
		c.w = nil
	}
	c.count(func(s *Stats) { s.Running = false; s.PID = 0 })
}

// worker is one running process.
type worker struct {
	cmd    *exec.Cmd
	pid    int
	stdin  *os.File
	stdout *bufio.Reader
	outR   *os.File
	stderr *tail

	done    chan struct{} // closed once Wait returned
	waitErr error
	once    sync.Once

	isolated   bool  // in a network namespace of its own
	isolateErr error // why not, when the kernel refused it
}

func startWorker(cfg Config) (*worker, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	w := &worker{stdin: inW, outR: outR, stdout: bufio.NewReaderSize(outR, 64<<10), stderr: &tail{fwd: cfg.Stderr}, done: make(chan struct{})}
	command := func(isolate bool) *exec.Cmd {
		cmd := exec.Command(cfg.Path, cfg.Args...)
		if cfg.Launcher != "" {
			name, args := launcherCommand(cfg.Launcher, cfg.Sandbox, cfg.Path, cfg.Args)
			cmd = exec.Command(name, args...)
		}
		cmd.Env = cfg.Env
		cmd.Dir = cfg.Dir
		cmd.Stdin = inR
		cmd.Stdout = outW
		cmd.Stderr = w.stderr
		cmd.WaitDelay = time.Second
		setProcAttr(cmd, isolate)
		return cmd
	}
	cmd := command(true)
	err = cmd.Start()
	w.isolated = err == nil && runtime.GOOS == "linux"
	if err != nil && isolationRefused(err) {
		// A kernel or container that forbids namespaces: run the worker
		// anyway (faces and photos still work) and say so.
		w.isolateErr = err
		cmd = command(false)
		err = cmd.Start()
	}
	inR.Close() // the child holds its own copies
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	w.cmd = cmd
	w.pid = cmd.Process.Pid
	go func() {
		w.waitErr = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// isolationRefused tells a refused namespace from a missing binary.
func isolationRefused(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC)
}

func (w *worker) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *worker) kill() { killProcess(w.cmd) }

func (w *worker) closePipes() {
	w.once.Do(func() {
		w.stdin.Close()
		w.outR.Close()
	})
}

// exitReason waits briefly for the process to end and describes how it
// ended, with the last lines it logged.
func (w *worker) exitReason() string {
	select {
	case <-w.done:
	case <-time.After(500 * time.Millisecond):
		return "still running"
	}
	reason := "exited"
	if w.waitErr != nil {
		reason = w.waitErr.Error()
	}
	if t := w.stderr.last(3); t != "" {
		reason += "; last log: " + t
	}
	return reason
}

// tail keeps the last bytes a worker wrote to stderr and forwards them.
type tail struct {
	mu  sync.Mutex
	fwd io.Writer
	buf []byte
}

const tailSize = 4 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fwd != nil {
		t.fwd.Write(p) // a failing log sink must not stall the worker
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tail) last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, " | ")
	if len(s) > 600 {
		s = s[len(s)-600:]
	}
	return s
}
