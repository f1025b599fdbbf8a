package vision

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake worker: with AIBO_VISION_FAKE set it
// serves requests on stdin/stdout like cmd/aibo-vision, without OpenCV. What
// it does with a Score request depends on the image bytes, so one worker can
// answer, crash, hang or garble on demand.
const fakeEnv = "AIBO_VISION_FAKE"

func TestMain(m *testing.M) {
	outerFilter() // a kernel without Landlock, for the launcher only (sandbox_test.go)
	RunLauncher() // this binary launches its own fake worker in the sandbox tests
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeWorker(mode))
	}
	os.Exit(m.Run())
}

func fakeWorker(mode string) int {
	switch mode {
	case "exit-at-start":
		fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"cannot load models"}`)
		return 1
	case "bad-protocol":
		req, err := ReadRequest(os.Stdin)
		if err != nil {
			return 1
		}
		WriteResponse(os.Stdout, &Response{ID: req.ID, Pong: &Pong{Protocol: 99}})
		return 0
	case "sleeper": // a child an escape left behind
		hang()
	}
	h := Handlers{Score: func(ctx context.Context, req Score) (ScoreResult, error) {
		img := string(req.Image)
		switch {
		case img == "crash":
			fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"decoder blew up"}`)
			os.Exit(3)
		case img == "hang":
			hang()
		case img == "garbage":
			os.Stdout.Write([]byte("\x00\x00\x00\x09not a frame"))
			hang()
		case img == "err":
			return ScoreResult{}, errors.New("not an image")
		case strings.HasPrefix(img, "leak-"):
			return leak(req.Image)
		case img == "panic":
			panic("handler bug")
		case strings.HasPrefix(img, "dial:"):
			// what an exploited decoder would try: send the image out
			conn, err := net.DialTimeout("tcp", strings.TrimPrefix(img, "dial:"), time.Second)
			if err != nil {
				return ScoreResult{Score: 0}, nil
			}
			conn.Write([]byte("a face"))
			conn.Close()
			return ScoreResult{Score: 1}, nil
		case strings.HasPrefix(img, "open:"):
			// what an exploited decoder would try: read the device key
			if _, err := os.ReadFile(strings.TrimPrefix(img, "open:")); err != nil {
				return ScoreResult{Score: 0}, nil
			}
			return ScoreResult{Score: 1}, nil
		case strings.HasPrefix(img, "write:"):
			if err := os.WriteFile(strings.TrimPrefix(img, "write:"), []byte("x"), 0o600); err != nil {
				return ScoreResult{Score: 0}, nil
			}
			return ScoreResult{Score: 1}, nil
		case strings.HasPrefix(img, "connect:"):
			// or talk to the daemon's diagnostic socket
			conn, err := net.DialTimeout("unix", strings.TrimPrefix(img, "connect:"), time.Second)
			if err != nil {
				return ScoreResult{Score: 0}, nil
			}
			conn.Write([]byte("GET /v1/inventory HTTP/1.0\r\n\r\n"))
			conn.Close()
			return ScoreResult{Score: 1}, nil
		case strings.HasPrefix(img, "escape:"):
			child, err := tryEscape(strings.TrimPrefix(img, "escape:"))
			if err != nil {
				return ScoreResult{}, err
			}
			return ScoreResult{Score: 1, Width: child}, nil
		case strings.HasPrefix(img, "slow:"):
			d, _ := time.ParseDuration(strings.TrimPrefix(img, "slow:"))
			time.Sleep(d)
		}
		return ScoreResult{Score: 0.5, Width: len(req.Image), Height: req.TakenAt.Hour(),
			Breakdown: map[string]float64{"faces": 1}}, nil
	}}
	h.Clean = fakeClean
	if mode == "dies-loading" {
		// Dies on its first faces request, as cmd/aibo-vision does when
		// its nets do not load, saying why.
		h.Faces = func(ctx context.Context, req Faces) (FacesResult, error) {
			fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"load models","err":"cascade missing"}`)
			os.Exit(1)
			return FacesResult{}, nil
		}
	}
	err := Serve(context.Background(), os.Stdin, os.Stdout, h)
	if mode == "ignore-eof" {
		hang()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// leak is a worker an image took over that tries to write the image into
// the daemon's log by each way a worker's words reach it: its stderr
// before it crashes, its error's text and code, a number in its answer's
// JSON, its stderr before it dies between requests.
func leak(image []byte) (ScoreResult, error) {
	words := base64.StdEncoding.EncodeToString(image) + " " + hex.EncodeToString(image)
	switch {
	case bytes.HasPrefix(image, []byte("leak-crash:")):
		fmt.Fprintln(os.Stderr, `{"level":"ERROR","msg":"`+words+`"}`)
		fmt.Fprintln(os.Stderr, base64.StdEncoding.EncodeToString(image))
		os.Stderr.Write(image)
		os.Exit(3)
	case bytes.HasPrefix(image, []byte("leak-err:")):
		return ScoreResult{}, WithCode(ErrorCode(words), errors.New(words))
	case bytes.HasPrefix(image, []byte("leak-json:")):
		head := []byte(`{"id":` + decimal(image) + `}`)
		var pre [8]byte
		binary.BigEndian.PutUint32(pre[:4], uint32(4+len(head)))
		binary.BigEndian.PutUint32(pre[4:], uint32(len(head)))
		os.Stdout.Write(append(pre[:], head...))
		hang()
	case bytes.HasPrefix(image, []byte("leak-idle:")):
		go func() {
			time.Sleep(100 * time.Millisecond)
			fmt.Fprintln(os.Stderr, words)
			os.Exit(3)
		}()
	}
	return ScoreResult{Score: 0.5}, nil
}

// decimal writes each byte of b as three digits.
func decimal(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		fmt.Fprintf(&s, "%03d", c)
	}
	return s.String()
}

// hang blocks for good. A bare select{} would not: with no other
// goroutine the runtime calls it a deadlock and exits.
func hang() {
	for {
		time.Sleep(time.Hour)
	}
}

func newFake(t *testing.T, mode string, tweak func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Path: os.Args[0],
		// A -race binary sleeps 1 s at exit unless told not to.
		Env:            []string{fakeEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"},
		RequestTimeout: 5 * time.Second,
		IdleTimeout:    -1,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c := NewClient(cfg)
	t.Cleanup(func() { c.Close() })
	return c
}

func score(c *Client, img string) (ScoreResult, error) {
	return c.Score(context.Background(), Score{Image: []byte(img), TakenAt: time.Date(2026, 5, 1, 17, 0, 0, 0, time.FixedZone("PDT", -7*3600))})
}

func gone(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }

func TestScoreAndPing(t *testing.T) {
	c := newFake(t, "ok", nil)
	if c.Stats().Starts != 0 {
		t.Fatal("worker started before the first request")
	}
	res, err := score(c, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if res.Width != 5 || res.Score != 0.5 || res.Breakdown["faces"] != 1 {
		t.Fatalf("result %+v", res)
	}
	if res.Height != 17 {
		t.Fatalf("taken_at lost its clock reading: hour %d, want 17", res.Height)
	}
	pong, err := c.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pong.Protocol != ProtocolVersion || pong.PID == 0 || len(pong.Ops) != 3 {
		t.Fatalf("pong %+v", pong)
	}
	// The worker is process 1 of a PID namespace of its own; the client
	// knows its pid outside it.
	if st := c.Stats(); st.Starts != 1 || !st.Running || st.PID == 0 || pong.PID != 1 {
		t.Fatalf("stats %+v, pong %+v", st, pong)
	}
}

func TestCrashRestarts(t *testing.T) {
	var log bytes.Buffer
	var mu sync.Mutex
	c := newFake(t, "ok", func(cfg *Config) { cfg.Stderr = lockedWriter{&mu, &log} })
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
	pid := c.Stats().PID
	_, err := score(c, "crash")
	if !errors.Is(err, ErrCrashed) {
		t.Fatalf("err = %v, want ErrCrashed", err)
	}
	if !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("error does not say how the worker died: %v", err)
	}
	if strings.Contains(err.Error(), "decoder blew up") {
		t.Errorf("error quotes the log of a worker that was sent an image: %v", err)
	}
	if !gone(pid) {
		t.Errorf("crashed worker %d still exists", pid)
	}
	res, err := score(c, "after")
	if err != nil {
		t.Fatalf("no restart after crash: %v", err)
	}
	if res.Width != 5 {
		t.Fatalf("result %+v", res)
	}
	// Issue 22: a crash is not a verdict: the image was tried once more,
	// in a fresh worker, before it failed.
	st := c.Stats()
	if st.Starts != 3 || st.Crashes != 2 || st.Retries != 1 || st.PID == pid || st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(log.String(), "decoder blew up") {
		t.Errorf("worker log not forwarded: %q", log.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestTimeoutKillsAndRestarts(t *testing.T) {
	c := newFake(t, "ok", func(cfg *Config) { cfg.RequestTimeout = 300 * time.Millisecond })
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
	pid := c.Stats().PID
	start := time.Now()
	_, err := score(c, "hang")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("two time-outs took %v", d)
	}
	if !gone(pid) {
		t.Errorf("hung worker %d not killed", pid)
	}
	if _, err := score(c, "slow:10ms"); err != nil {
		t.Fatalf("no restart after time-out: %v", err)
	}
	if st := c.Stats(); st.Starts != 3 || st.Timeouts != 2 || st.Retries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestContextCancelKills(t *testing.T) {
	c := newFake(t, "ok", nil)
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
	pid := c.Stats().PID
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Score(ctx, Score{Image: []byte("hang")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if !gone(pid) {
		t.Errorf("worker %d survived the cancelled request", pid)
	}
	if _, err := c.Score(ctx, Score{Image: []byte("x")}); err == nil {
		t.Fatal("request with a done context succeeded")
	}
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
}

func TestGarbledAnswer(t *testing.T) {
	c := newFake(t, "ok", nil)
	_, err := score(c, "garbage")
	if !errors.Is(err, ErrCrashed) {
		t.Fatalf("err = %v, want ErrCrashed", err)
	}
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteErrorKeepsWorker(t *testing.T) {
	c := newFake(t, "ok", nil)
	for _, img := range []string{"err", "panic"} {
		_, err := score(c, img)
		var re *RemoteError
		if !errors.As(err, &re) || re.Op != OpScore {
			t.Fatalf("%s: err = %v, want RemoteError", img, err)
		}
	}
	_, err := score(c, "panic")
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeInternal || strings.Contains(err.Error(), "handler bug") {
		t.Errorf("a panic: %v, want code internal and none of the worker's words", err)
	}
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Starts != 1 || st.Crashes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestIdleExit(t *testing.T) {
	c := newFake(t, "ok", func(cfg *Config) { cfg.IdleTimeout = 150 * time.Millisecond })
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
	pid := c.Stats().PID
	// Requests inside the idle window keep the same worker.
	for range 3 {
		time.Sleep(50 * time.Millisecond)
		if _, err := score(c, "fine"); err != nil {
			t.Fatal(err)
		}
	}
	if c.Stats().PID != pid {
		t.Fatal("worker replaced while busy")
	}
	waitFor(t, func() bool { return !c.Stats().Running })
	if !gone(pid) {
		t.Fatalf("idle worker %d still exists", pid)
	}
	if st := c.Stats(); st.IdleStops != 1 || st.Crashes != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := score(c, "again"); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Starts != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestIdleWorkerIgnoringEOFIsKilled(t *testing.T) {
	c := newFake(t, "ignore-eof", func(cfg *Config) {
		cfg.IdleTimeout = 50 * time.Millisecond
		cfg.StopGrace = 200 * time.Millisecond
	})
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
	pid := c.Stats().PID
	waitFor(t, func() bool { return !c.Stats().Running })
	if !gone(pid) {
		t.Fatalf("worker %d survived", pid)
	}
}

func TestWorkerKilledWhileIdleIsReplaced(t *testing.T) {
	c := newFake(t, "ok", nil)
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
	pid := c.Stats().PID
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, func() bool { return gone(pid) })
	time.Sleep(50 * time.Millisecond)
	if _, err := score(c, "fine"); err != nil {
		t.Fatalf("a worker that died between requests failed the next one: %v", err)
	}
}

func TestStartFailures(t *testing.T) {
	for _, tc := range []struct {
		name, mode, path, want string
	}{
		{"missing binary", "ok", "/nonexistent/aibo-vision", "no such file"},
		{"exits at start", "exit-at-start", "", "cannot load models"},
		{"wrong protocol", "bad-protocol", "", "protocol 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFake(t, tc.mode, func(cfg *Config) {
				if tc.path != "" {
					cfg.Path = tc.path
				}
			})
			_, err := score(c, "fine")
			if !errors.Is(err, ErrStart) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrStart mentioning %q", err, tc.want)
			}
			if c.Stats().Running {
				t.Fatal("failed worker counted as running")
			}
		})
	}
}

func TestTooLargeNotSent(t *testing.T) {
	c := newFake(t, "ok", nil)
	_, err := c.Score(context.Background(), Score{Image: make([]byte, MaxImageBytes+1)})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if c.Stats().Starts != 0 {
		t.Fatal("worker started for an image that cannot be sent")
	}
}

func TestConcurrentRequests(t *testing.T) {
	c := newFake(t, "ok", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img := strings.Repeat("x", i+1)
			res, err := score(c, img)
			if err == nil && res.Width != i+1 {
				err = fmt.Errorf("answer for another request: width %d, want %d", res.Width, i+1)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := c.Stats(); st.Starts != 1 || st.Requests != 16 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClose(t *testing.T) {
	c := newFake(t, "ok", nil)
	if _, err := score(c, "fine"); err != nil {
		t.Fatal(err)
	}
	pid := c.Stats().PID
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Fatalf("worker %d outlived Close", pid)
	}
	if _, err := score(c, "fine"); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkRoundTrip measures the pipe and framing cost of one request with
// a 200 KB image (a 1280x720 JPEG), against the fake worker.
func BenchmarkRoundTrip(b *testing.B) {
	c := NewClient(Config{Path: os.Args[0], Env: []string{fakeEnv + "=ok"}, IdleTimeout: -1})
	defer c.Close()
	img := bytes.Repeat([]byte{0xAB}, 200<<10)
	for b.Loop() {
		if _, err := c.Score(context.Background(), Score{Image: img}); err != nil {
			b.Fatal(err)
		}
	}
}

// The worker decodes untrusted images and sees every face: even if an
// image took it over, it has no network to send anything on.
func TestWorkerCannotReachTheNetwork(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			got <- struct{}{}
			c.Close()
		}
	}()
	// the daemon's side can connect: the listener works
	if c, err := net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	} else {
		c.Close()
		<-got
	}
	c := newFake(t, "ok", nil)
	res, err := score(c, "dial:"+ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Score != 0 || !slices.Contains(c.Confinement().Namespaces, "net") {
		t.Fatalf("the worker connected out (score %v, confinement %+v)", res.Score, c.Confinement())
	}
	select {
	case <-got:
		t.Fatal("the listener was reached from the worker")
	case <-time.After(100 * time.Millisecond):
	}
}

// fakeClean answers a clean request truthfully ("clean:ok") or with one of
// the lies a worker taken over by an image could tell.
func fakeClean(ctx context.Context, req Clean) (CleanResult, error) {
	w, h := req.Width, req.Height
	mode := strings.TrimPrefix(string(req.Image), "clean:")
	if mode == "wrong-size" || mode == "header-lies" {
		w++
	}
	var buf bytes.Buffer
	if mode == "png" {
		png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h)))
	} else {
		jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h)), nil)
	}
	out := buf.Bytes()
	switch mode {
	case "metadata": // the photo's own EXIF, GPS and all, copied out
		exif := append([]byte{0xFF, 0xE1, 0, 22}, "Exif\x00\x00GPS 37.77N 122.4W"...)
		out = append(append([]byte{0xFF, 0xD8}, exif...), out[2:]...)
	case "trailing":
		out = append(out, "a patrol frame"...)
	case "over-its-bound":
		out = append(out, make([]byte, req.MaxBytes)...)
	}
	res := CleanResult{JPEG: out, Width: req.Width, Height: req.Height}
	if mode == "header-lies" {
		res.Width = w
	}
	return res, nil
}

// Issue 21: the daemon checks a clean answer against what it asked for,
// through the real launcher: a JPEG of exactly that size, no metadata,
// nothing after its end, within its bound (refused before it is read).
// A worker that answers otherwise is killed.
func TestP16_ALyingCleanAnswerIsRefused(t *testing.T) {
	c := newFake(t, "ok", func(cfg *Config) {
		cfg.Launcher = os.Args[0]
		cfg.Sandbox = Sandbox{Read: append([]string{os.Args[0]}, SystemReadPaths...)}
	})
	ask := func(mode string) (*bytes.Buffer, error) {
		var out bytes.Buffer
		_, err := c.Clean(context.Background(), Clean{Image: []byte("clean:" + mode), Width: 64, Height: 48, MaxBytes: 64 << 10}, &out)
		return &out, err
	}
	out, err := ask("ok")
	if err != nil {
		t.Fatalf("a truthful answer: %v", err)
	}
	if cfg, err := jpeg.DecodeConfig(out); err != nil || cfg.Width != 64 || cfg.Height != 48 {
		t.Fatalf("streamed answer: %+v %v", cfg, err)
	}
	for _, mode := range []string{"wrong-size", "header-lies", "metadata", "png", "trailing"} {
		pid := c.Stats().PID
		if _, err := ask(mode); !errors.Is(err, ErrBadAnswer) {
			t.Errorf("%s: err = %v, want ErrBadAnswer", mode, err)
		}
		if !gone(pid) && pid != 0 {
			t.Errorf("%s: the lying worker %d lives on", mode, pid)
		}
	}
	if _, err := ask("over-its-bound"); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("over its bound: err = %v, want ErrFrameTooLarge", err)
	}
	if st := c.Stats(); st.BadAnswers != 5 {
		t.Errorf("stats %+v: want 5 bad answers", st)
	}
}

// Issue 21: a photo about to leave is handled by a worker of its own: the
// one that served other requests is stopped first, the session's worker
// serves nothing after, other requests wait, and a session whose worker
// died runs once more with a fresh one.
func TestAloneGivesAPhotoAWorkerOfItsOwn(t *testing.T) {
	c := newFake(t, "ok", nil)
	if _, err := score(c, "a patrol frame"); err != nil {
		t.Fatal(err)
	}
	before := c.Stats().PID
	var inside []int
	waited := make(chan time.Duration, 1)
	err := c.Alone(context.Background(), func(ctx context.Context) error {
		if !gone(before) {
			t.Errorf("the worker that saw other images (%d) still runs", before)
		}
		go func() { // a patrol frame arriving meanwhile waits for the session
			t0 := time.Now()
			score(c, "another frame")
			waited <- time.Since(t0)
		}()
		for range 2 {
			if _, err := c.Score(ctx, Score{Image: []byte("the photo")}); err != nil {
				return err
			}
			inside = append(inside, c.Stats().PID)
		}
		time.Sleep(100 * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inside) != 2 || inside[0] != inside[1] || inside[0] == before {
		t.Fatalf("session workers %v (before %d): want one fresh worker", inside, before)
	}
	if !gone(inside[0]) {
		t.Error("the session's worker serves on after it")
	}
	if d := <-waited; d < 90*time.Millisecond {
		t.Errorf("a request ran during the session (waited %v)", d)
	}
	// A session whose worker crashes runs once more, with a fresh worker.
	runs := 0
	err = c.Alone(context.Background(), func(ctx context.Context) error {
		runs++
		_, err := c.Score(ctx, Score{Image: []byte("crash")})
		return err
	})
	if !errors.Is(err, ErrCrashed) || runs != 2 {
		t.Fatalf("crashing session: %v after %d runs, want ErrCrashed after 2", err, runs)
	}
	// Within a session, no second worker replaces a dead one.
	err = c.Alone(context.Background(), func(ctx context.Context) error {
		c.Score(ctx, Score{Image: []byte("crash")})
		_, err := c.Score(ctx, Score{Image: []byte("the photo")})
		return err
	})
	if !errors.Is(err, ErrCrashed) {
		t.Fatalf("a session's second worker: %v", err)
	}
}

// TestP16_AHostileWorkerWritesNoImageIntoTheLog: a worker that an image
// took over holds that image, and everything it says may carry it: the
// last lines of its stderr, its error's text and code, the numbers of its
// JSON. None of it reaches the daemon's log or the errors the daemon logs;
// what does is the exit status and a code from ErrorCodes.
func TestP16_AHostileWorkerWritesNoImageIntoTheLog(t *testing.T) {
	var log bytes.Buffer
	var mu sync.Mutex
	c := newFake(t, "ok", func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(lockedWriter{&mu, &log}, nil))
		cfg.RequestTimeout = 2 * time.Second
	})
	secret := make([]byte, 96)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	var errs []string
	for _, mode := range []string{"leak-crash:", "leak-err:", "leak-json:", "leak-idle:", "after-idle"} {
		img := append([]byte(mode), secret...)
		_, err := c.Score(context.Background(), Score{Image: img})
		if mode == "leak-idle:" {
			time.Sleep(500 * time.Millisecond) // it dies between requests
		}
		if err != nil {
			errs = append(errs, err.Error())
		}
		var re *RemoteError
		if mode == "leak-err:" && (!errors.As(err, &re) || re.Code != CodeInternal) {
			t.Errorf("an error answer with a code off the list: %v, want code internal", err)
		}
	}
	mu.Lock()
	all := log.String() + strings.Join(errs, "\n")
	mu.Unlock()
	for _, want := range []string{"vision worker crashed", "vision request sent again to a fresh worker", "vision worker gone while idle", "exit status 3"} {
		if !strings.Contains(all, want) {
			t.Errorf("the log never says %q: the leaks were not tried\n%s", want, all)
		}
	}
	for _, mode := range []string{"leak-crash:", "leak-err:", "leak-json:", "leak-idle:"} {
		img := append([]byte(mode), secret...)
		for name, enc := range map[string]string{"base64": base64.StdEncoding.EncodeToString(img),
			"hex": hex.EncodeToString(img), "decimal": decimal(img), "hex of the secret": hex.EncodeToString(secret)} {
			for i := 0; i+24 <= len(enc); i++ {
				if strings.Contains(all, enc[i:i+24]) {
					t.Fatalf("%s: the image's %s is in the daemon's log or errors:\n%s", mode, name, all)
				}
			}
		}
	}
}

// TestWhyAWorkerDiedLoadingItsNetsIsQuoted: a worker that dies on the
// client's own blank image (Ready, health's probe) has seen no one's
// image: its last words say why it cannot judge images and are quoted.
// The same words after a real image are not.
func TestWhyAWorkerDiedLoadingItsNetsIsQuoted(t *testing.T) {
	c := newFake(t, "dies-loading", nil)
	_, err := c.Ready(context.Background())
	if !errors.Is(err, ErrCrashed) || !strings.Contains(err.Error(), "cascade missing") {
		t.Errorf("Ready: %v, want the worker's own reason", err)
	}
	_, err = c.Faces(context.Background(), Faces{Image: []byte("someone's photo")})
	if !errors.Is(err, ErrCrashed) || strings.Contains(err.Error(), "cascade missing") {
		t.Errorf("Faces: %v, want a crash without the worker's words", err)
	}
}
