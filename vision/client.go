package vision

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"log/slog"
	"os"
	"os/exec"
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
	// ErrUnconfined: the launcher could not confine the worker (a kernel
	// without Landlock, say), so none runs; Client.Confinement says why.
	// It wraps ErrStart: the image was not judged.
	ErrUnconfined = fmt.Errorf("%w: the worker cannot be confined", ErrStart)
	// ErrBadAnswer: the worker's answer failed the daemon's checks (a
	// clean photo of another size, format or weight than asked for). The
	// worker was killed: it is not to be trusted with anything more.
	ErrBadAnswer = errors.New("vision: the worker's answer failed the daemon's checks")
)

// RemoteError is a request the worker answered with an error (for example
// an image it could not decode). The worker stays up. It holds the code
// the worker answered (one of ErrorCodes), never the worker's text: the
// error is logged, and a worker taken over by an image could write that
// image into its text.
type RemoteError struct {
	Op   Op
	Code ErrorCode
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("vision: %s: the worker answered %s", e.Op, e.Code)
}

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

	// RequestTimeout bounds one request, default 10 s; a clean request
	// gets cleanTimeouts times as long (a 40-megapixel photo decoded,
	// scaled and encoded in pure Go).
	RequestTimeout time.Duration
	StartTimeout   time.Duration // start plus handshake, default 5 s
	// IdleTimeout stops the worker after this long without a request,
	// default 30 s; negative: never.
	IdleTimeout time.Duration
	// StopGrace is how long a worker whose stdin was closed may take to
	// exit before it is killed, default 2 s.
	StopGrace time.Duration

	// Stderr receives the worker's log (JSON lines); nil discards it. The
	// last few lines are kept either way, and quoted in the errors and
	// log lines of a worker that has not been sent an image yet (why it
	// did not start); never once it has been (see worker.fed).
	Stderr io.Writer
	// Logger records starts, stops, crashes and time-outs; nil discards.
	Logger *slog.Logger
	// Cgroup, when set, is the worker's cgroup of its own (under systemd,
	// the leaf of the service's delegated cgroup: internal/cgroup). Each
	// worker is placed in it as it starts, before the handshake (an error
	// is logged; the worker runs anyway), and everything left in it is
	// killed (cgroup.kill) once a worker has stopped, so no child of the
	// worker outlives it, even one in a session of its own. Without it the
	// worker is the first process of a PID namespace of its own, whose
	// processes the kernel kills with it (setProcAttr); the unit's
	// RestrictNamespaces forbids that namespace, the cgroup stands in.
	Cgroup Cgroup
}

// Cgroup is a cgroup holding nothing but the worker and what it starts.
type Cgroup interface {
	Place(pid int) error
	// Kill ends every process in it and returns once it is empty.
	Kill() error
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
	// Retries are requests sent again to a fresh worker after the one
	// handling them died or timed out (Alone's sessions included).
	Retries int
	// Alone counts Alone's sessions: photos handled by a worker of their
	// own.
	Alone int
	// BadAnswers are answers that failed the daemon's checks.
	BadAnswers int
	// Refused are starts the launcher refused (see Confinement).
	Refused int
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
	ns       nsTry     // the namespaces the last start got
	refused  time.Time // when the launcher last refused to confine a worker

	statsMu sync.Mutex
	stats   Stats
	conf    Confinement
}

// NewClient returns a client; no process starts before the first request.
func NewClient(cfg Config) *Client {
	return &Client{cfg: cfg.withDefaults()}
}

// cleanTimeouts is how many RequestTimeouts a clean request may take.
const cleanTimeouts = 3

// refuseFor is how long a client whose launcher refused to confine a
// worker refuses requests at once, without trying again (a kernel does not
// gain Landlock while it runs; a passing failure clears after this).
const refuseFor = time.Minute

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

// Ready asks the worker for the faces of the client's own blank image
// (probeImage): it answers once its nets have loaded, so it says whether
// a worker can judge images. Since that image is nobody's, a worker that
// dies on it is still quoted in its own words (exitReason): why it could
// not load its nets.
func (c *Client) Ready(ctx context.Context) (FacesResult, error) {
	return c.Faces(ctx, Faces{Image: probeImage})
}

// probeImage is 64x64 grey, no face in it.
var probeImage = func() []byte {
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range img.Pix {
		img.Pix[i] = 128
	}
	var buf bytes.Buffer
	_ = jpeg.Encode(&buf, img, nil)
	return buf.Bytes()
}()

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

// Clean asks the worker to re-encode one photo for upload and streams
// the JPEG to w as it arrives, never holding it whole. req must name the
// size of the answer (Width, Height, MaxBytes): the answer is refused
// unread when it claims more than MaxBytes, and it must then be a JPEG of
// exactly Width x Height with no metadata segment and nothing after its
// end (checkJPEG); otherwise the worker is killed and the error wraps
// ErrBadAnswer. On any error what reached w is to be thrown away.
func (c *Client) Clean(ctx context.Context, req Clean, w io.Writer) (CleanResult, error) {
	if len(req.Image) > MaxImageBytes {
		c.count(func(s *Stats) { s.Failed++ })
		return CleanResult{}, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(req.Image), MaxImageBytes)
	}
	if req.Width <= 0 || req.Height <= 0 || req.MaxBytes <= 0 {
		c.count(func(s *Stats) { s.Failed++ })
		return CleanResult{}, errors.New("vision: clean needs the answer's width, height and bound")
	}
	chk := &jpegCheck{w: w}
	resp, err := c.callBlob(ctx, &Request{Op: OpClean, Clean: &req}, chk, func(resp *Response) error {
		if resp.Clean == nil {
			return errors.New("clean answered without a photo")
		}
		if resp.Clean.Width != req.Width || resp.Clean.Height != req.Height {
			return fmt.Errorf("clean answered %dx%d, asked for %dx%d", resp.Clean.Width, resp.Clean.Height, req.Width, req.Height)
		}
		return chk.verify(req.Width, req.Height)
	})
	if err != nil {
		return CleanResult{}, err
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
	return c.callBlob(ctx, req, nil, nil)
}

// callBlob sends req, streaming a blob answer to blob, and runs check on
// the answer (ErrBadAnswer when it fails: the worker is killed). A
// request whose worker died or timed out is sent once more to a fresh
// worker, unless it streams a blob (Alone retries those whole) or runs in
// an Alone session (which does).
func (c *Client) callBlob(ctx context.Context, req *Request, blob io.Writer, check func(*Response) error) (*Response, error) {
	s, inSession := ctx.Value(sessionKey{}).(*session)
	if !inSession || s.c != c {
		c.mu.Lock()
		defer c.mu.Unlock()
		inSession = false
	}
	c.count(func(s *Stats) { s.Requests++ })
	resp, err := c.callLocked(ctx, req, blob, check, s)
	if died(err) && ctx.Err() == nil && blob == nil && !inSession {
		c.count(func(s *Stats) { s.Retries++ })
		c.cfg.Logger.Warn("vision request sent again to a fresh worker", "op", req.Op, "err", err)
		resp, err = c.callLocked(ctx, req, blob, check, nil)
	}
	if err != nil {
		c.count(func(s *Stats) { s.Failed++ })
		return nil, err
	}
	return resp, nil
}

// died tells a worker that died or hung from an answer it gave.
func died(err error) bool { return errors.Is(err, ErrCrashed) || errors.Is(err, ErrTimeout) }

func (c *Client) callLocked(ctx context.Context, req *Request, blob io.Writer, check func(*Response) error, s *session) (*Response, error) {
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
		if s != nil && s.started {
			// A session's worker is its own: once it is gone, no other
			// takes its place within the session.
			return nil, fmt.Errorf("%w: the session's worker is gone", ErrCrashed)
		}
		if err := c.start(ctx); err != nil {
			return nil, err
		}
		if s != nil {
			s.started = true
		}
	}
	w := c.w
	timeout := c.cfg.RequestTimeout
	if req.Op == OpClean {
		timeout *= cleanTimeouts
	}
	resp, err := c.roundTrip(ctx, w, req, blob, timeout)
	if err != nil {
		return nil, err
	}
	c.touch()
	if resp.Error != "" || resp.Code != "" {
		return nil, &RemoteError{Op: req.Op, Code: resp.Code.known()}
	}
	if check != nil {
		if err := check(resp); err != nil {
			c.kill(w)
			c.count(func(s *Stats) { s.BadAnswers++ })
			c.cfg.Logger.Error("vision worker's answer failed the checks; killed", "pid", w.pid, "op", req.Op, "err", err)
			return nil, fmt.Errorf("%w: %s: %v", ErrBadAnswer, req.Op, err)
		}
	}
	return resp, nil
}

// session is an Alone call in progress; its context carries it.
type session struct {
	c       *Client
	started bool // its worker was started
}

type sessionKey struct{}

// Alone runs fn with a worker of its own: every request fn makes through
// this client with the context it is given goes to one worker started for
// it, which has handled nothing before and handles nothing after (it is
// stopped when fn returns), and no other worker runs meanwhile, so the
// worker's memory bound holds for it alone. It is for a photo about to
// leave the device: a worker that an earlier image took over cannot answer
// for it, and the one that sees it sees nothing else. Other requests wait.
//
// When fn fails because its worker died or timed out, fn runs once more
// with another fresh worker (a worker's death is not a verdict on the
// photo); it must therefore start from nothing each time. fn calls the
// client from its own goroutine only.
func (c *Client) Alone(ctx context.Context, fn func(ctx context.Context) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count(func(s *Stats) { s.Alone++ })
	for attempt := 0; ; attempt++ {
		if c.closed {
			return ErrClosed
		}
		if c.w != nil {
			c.stop(c.w) // it has seen other images: it answers nothing of this photo's
		}
		err := fn(context.WithValue(ctx, sessionKey{}, &session{c: c}))
		if c.w != nil {
			c.stop(c.w) // it has seen this photo: it answers nothing else
		}
		if attempt == 0 && died(err) && ctx.Err() == nil {
			c.count(func(s *Stats) { s.Retries++ })
			c.cfg.Logger.Warn("vision session tried again with a fresh worker", "err", err)
			continue
		}
		return err
	}
}

// start runs the worker and shakes hands with a ping. Through a launcher
// it first reads the launcher's report of the confinement in force; a
// launcher that refused leaves no worker (ErrUnconfined) and the client
// refuses at once for refuseFor.
func (c *Client) start(ctx context.Context) error {
	if !c.refused.IsZero() && time.Since(c.refused) < refuseFor {
		c.count(func(s *Stats) { s.Refused++ })
		return fmt.Errorf("%w: %s", ErrUnconfined, c.Confinement().Refused)
	}
	w, err := startWorker(c.cfg, &c.ns, "")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	conf, err := w.confinement(c.cfg, c.ns)
	if err == nil {
		c.setConfinement(conf)
	}
	if conf.Refused != "" {
		c.kill(w)
		c.refused = time.Now()
		c.count(func(s *Stats) { s.Refused++ })
		c.cfg.Logger.Error("vision worker refused: it cannot be confined; faces and photos are not analysed", "why", conf.Refused)
		return fmt.Errorf("%w: %s", ErrUnconfined, conf.Refused)
	}
	c.refused = time.Time{}
	if err != nil {
		c.kill(w)
		return fmt.Errorf("%w: %s: %v", ErrStart, c.cfg.Path, err)
	}
	c.count(func(s *Stats) {
		s.Starts++
		s.Running = true
		s.PID = w.pid
	})
	c.w = w
	if c.cfg.Cgroup != nil {
		if err := c.cfg.Cgroup.Place(w.pid); err != nil {
			c.cfg.Logger.Warn("vision worker not placed in its cgroup", "pid", w.pid, "err", err)
		}
	}
	resp, err := c.roundTrip(ctx, w, &Request{Op: OpPing}, nil, c.cfg.StartTimeout)
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
	if w.nsErr != nil {
		c.cfg.Logger.Warn("vision worker runs without some namespaces of its own", "namespaces", conf.Namespaces, "err", w.nsErr)
	}
	c.cfg.Logger.Info("vision worker started", "pid", w.pid, "landlock_abi", conf.Landlock, "seccomp", conf.Seccomp,
		"namespaces", conf.Namespaces, "uid", conf.UID, "cgroup", c.cfg.Cgroup != nil)
	return nil
}

// roundTrip sends req and reads its answer. On a time-out, a cancelled
// context, a broken pipe or a garbled answer the worker is killed.
func (c *Client) roundTrip(ctx context.Context, w *worker, req *Request, blob io.Writer, timeout time.Duration) (*Response, error) {
	c.nextID++
	req.ID = c.nextID
	if b := req.blob(); len(b) > 0 && !bytes.Equal(b, probeImage) {
		// From now on what it writes may be this image: its log is
		// never quoted again.
		w.fed = true
	}
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
		resp, err := ReadResponse(w.stdout, req, blob)
		ch <- result{resp, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err == nil && r.resp.ID != req.ID {
			r.err = fmt.Errorf("answer for request %d, want %d", r.resp.ID, req.ID)
		}
		var sinkErr *SinkError
		if errors.As(r.err, &sinkErr) {
			// Our side failed (a full disk): the stream is out of step, so
			// the worker goes, but it did nothing wrong.
			c.kill(w)
			return nil, sinkErr
		}
		if r.err != nil {
			reason := w.exitReason() // before the kill, to tell how it died
			c.kill(w)
			c.count(func(s *Stats) { s.Crashes++ })
			c.cfg.Logger.Error("vision worker crashed", "pid", w.pid, "op", req.Op, "exit", reason, "err", r.err)
			return nil, fmt.Errorf("%w during %s (pid %d, %s): %w", ErrCrashed, req.Op, w.pid, reason, r.err)
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
	if c.cfg.Cgroup != nil {
		// Whatever the worker left behind (a child in a session of its
		// own) is in its cgroup still.
		if err := c.cfg.Cgroup.Kill(); err != nil {
			c.cfg.Logger.Error("vision worker's cgroup not emptied", "pid", w.pid, "err", err)
		}
	}
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
	report *os.File // the launcher's report; nil without a launcher

	done    chan struct{} // closed once Wait returned
	waitErr error
	once    sync.Once

	nsErr error // why a namespace is missing, when the kernel refused it

	// fed: it has been sent an image (other than probeImage). Its log
	// (stderr) may then hold that image's bytes, written by a decoder an
	// image took over: exitReason no longer quotes it. Guarded by the
	// client's mu.
	fed bool
}

// startWorker runs the worker (or, with probe, the launcher alone), in as
// many of the namespaces of ns as the kernel grants; ns remembers them.
func startWorker(cfg Config, ns *nsTry, probe string) (*worker, error) {
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
	var repR, repW *os.File
	if cfg.Launcher != "" {
		if repR, repW, err = os.Pipe(); err != nil {
			inR.Close()
			inW.Close()
			outR.Close()
			outW.Close()
			return nil, err
		}
	}
	w := &worker{stdin: inW, outR: outR, stdout: bufio.NewReaderSize(outR, 64<<10), stderr: &tail{fwd: cfg.Stderr},
		report: repR, done: make(chan struct{})}
	command := func(try nsTry) *exec.Cmd {
		cmd := exec.Command(cfg.Path, cfg.Args...)
		if cfg.Launcher != "" {
			path, args := cfg.Path, cfg.Args
			if probe != "" {
				path, args = "", nil
			}
			name, argv := launcherCommand(cfg.Launcher, cfg.Sandbox, path, args)
			cmd = exec.Command(name, argv...)
			cmd.ExtraFiles = []*os.File{repW} // descriptor 3 (reportFD)
		}
		cmd.Env = cfg.Env
		cmd.Dir = cfg.Dir
		cmd.Stdin = inR
		cmd.Stdout = outW
		cmd.Stderr = w.stderr
		cmd.WaitDelay = time.Second
		setProcAttr(cmd, try)
		return cmd
	}
	var cmd *exec.Cmd
	for _, try := range ns.candidates() {
		cmd = command(try)
		if err = cmd.Start(); err == nil {
			*ns = try
			break
		}
		if !isolationRefused(err) {
			break
		}
		// A kernel, container or unit that forbids a namespace: try with
		// fewer, and say which are missing.
		w.nsErr = err
	}
	inR.Close() // the child holds its own copies
	outW.Close()
	if repW != nil {
		repW.Close()
	}
	if err != nil {
		inW.Close()
		outR.Close()
		if repR != nil {
			repR.Close()
		}
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

// maxReport bounds the launcher's report.
const maxReport = 4 << 10

// confinement reads the launcher's report (until it closes its end, just
// before the exec) and adds what the client itself put in force. Without
// a launcher the worker is unconfined, and says so.
func (w *worker) confinement(cfg Config, ns nsTry) (Confinement, error) {
	conf := Confinement{Checked: true, Namespaces: ns.names(), UID: os.Getuid(), Cgroup: cfg.Cgroup != nil}
	if w.report == nil {
		return conf, nil
	}
	defer w.report.Close()
	type result struct {
		r   launchReport
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r launchReport
		raw, err := io.ReadAll(io.LimitReader(w.report, maxReport))
		if err == nil {
			err = json.Unmarshal(raw, &r)
		}
		if err != nil {
			err = fmt.Errorf("launcher report: %w (%s)", err, w.exitReason())
		}
		ch <- result{r, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(cfg.StartTimeout):
		w.report.Close()
		r = <-ch
		r.err = fmt.Errorf("launcher did not report within %v", cfg.StartTimeout)
	}
	if r.err != nil {
		return conf, r.err
	}
	conf.Landlock, conf.Seccomp, conf.Refused = r.r.Landlock, r.r.Seccomp, r.r.Refused
	if conf.Refused == "" && (conf.Landlock == 0 || !conf.Seccomp) {
		conf.Refused = "the launcher reported no confinement"
	}
	return conf, nil
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
		if w.report != nil {
			w.report.Close()
		}
	})
}

// exitReason waits briefly for the process to end and describes how it
// ended: its exit status, and, for a worker that was never sent an image
// (one that did not start, or died loading its models), the last lines it
// logged, which say why in its own words. A worker that was sent one may
// have written it there: its log is not quoted.
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
	if w.fed {
		return reason
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
