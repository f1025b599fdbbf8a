package diag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
)

// Environment of the tiny client mode of the test binary (see TestMain).
const (
	envClientSocket = "DIAG_TEST_CLIENT_SOCKET"
	envClientPath   = "DIAG_TEST_CLIENT_PATH"
)

// TestMain doubles as a minimal diagnostic client when re-executed by
// TestRealPeerUID under another uid: it prints "<status> <body>" and exits.
func TestMain(m *testing.M) {
	if sock := os.Getenv(envClientSocket); sock != "" {
		resp, err := newClient(sock).Get("http://diag" + os.Getenv(envClientPath))
		if err != nil {
			fmt.Printf("ERR %v\n", err)
			os.Exit(3)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %s", resp.StatusCode, body)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type accessEntry struct {
	UID    uint32
	Method string
	Path   string
	Status int
}

// fakeBackend is a test double of the Backend interface.
type fakeBackend struct {
	mu        sync.Mutex
	health    Health
	status    any
	statusErr error
	records   []audit.Record
	auditErr  error
	lastLimit int
	report    audit.Report
	verifyErr error
	block     chan struct{} // when set, Status waits for it to close, ignoring ctx
	access    []accessEntry
	accessErr error // when set, Access fails (the audit cannot be written)
}

func newFake() *fakeBackend {
	return &fakeBackend{
		health: Health{Status: "ok", Checks: map[string]Check{"store": {OK: true}}},
		status: map[string]any{
			"device_id":    "aibo-0001",
			"photos_today": map[string]int{"admitted": 30, "refused": 2},
			"subjects":     3,
		},
		report: audit.Report{OK: true, Records: 2},
	}
}

func (f *fakeBackend) Health(context.Context) Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

func (f *fakeBackend) Status(context.Context) (any, error) {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.statusErr
}

func (f *fakeBackend) Audit(_ context.Context, limit int) ([]audit.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLimit = limit
	return f.records, f.auditErr
}

func (f *fakeBackend) AuditVerify(context.Context) (audit.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.report, f.verifyErr
}

func (f *fakeBackend) Access(_ context.Context, uid uint32, method, path string, status int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.accessErr != nil {
		return f.accessErr
	}
	f.access = append(f.access, accessEntry{uid, method, path, status})
	return nil
}

func (f *fakeBackend) accesses() []accessEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]accessEntry(nil), f.access...)
}

// fullBackend also implements the optional routes.
type fullBackend struct {
	*fakeBackend
	selftest Health
}

func (b fullBackend) Queue(context.Context) (any, error) {
	return map[string]any{"photo": map[string]any{"count": 2, "bytes": 1024, "oldest_age_s": 61}}, nil
}

func (b fullBackend) Inventory(context.Context) (any, error) {
	return map[string]any{"photos": map[string]any{"count": 4}}, nil
}

func (b fullBackend) Selftest(context.Context) Health { return b.selftest }

// socketDir returns a directory whose socket paths fit in sun_path.
func socketDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if len(d) < 60 {
		return d
	}
	d, err := os.MkdirTemp("", "diag")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newClient(sock string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		},
	}
}

type running struct {
	sock   string
	client *http.Client
	cancel context.CancelFunc
	done   chan error
	logs   *testlog.Buffer
}

// start runs a Server with cfg (Socket defaults to a fresh temp path) and
// waits until it answers. Cleanup cancels it and checks Run returned nil.
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(socketDir(t), "diag.sock")
	}
	logs := &testlog.Buffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{sock: cfg.Socket, client: newClient(cfg.Socket), cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { r.done <- srv.Run(ctx) }()
	waitListening(t, cfg.Socket, r.done)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

func waitListening(t *testing.T, sock string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("socket %s never answered", sock)
}

func (r *running) do(t *testing.T, method, path string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://diag"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

func wantError(t *testing.T, body []byte, want string) {
	t.Helper()
	got := decode[map[string]string](t, body)
	if got["error"] != want || len(got) != 1 {
		t.Errorf("body %s, want {\"error\":%q}", body, want)
	}
}

func TestSocketModeAndBasicRoutes(t *testing.T) {
	fb := newFake()
	r := start(t, Config{Backend: fb})

	fi, err := os.Lstat(r.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(r.sock), ".d*")); len(m) != 0 {
		t.Errorf("temporary socket names left behind: %v", m)
	}

	code, hdr, body := r.do(t, "GET", "/v1/health")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("health: %d %q %s", code, hdr.Get("Content-Type"), body)
	}
	h := decode[Health](t, body)
	if h.Status != "ok" || !h.Checks["store"].OK {
		t.Errorf("health body %s", body)
	}

	code, _, body = r.do(t, "GET", "/v1/status")
	if code != 200 {
		t.Fatalf("status: %d %s", code, body)
	}
	st := decode[map[string]any](t, body)
	if st["device_id"] != "aibo-0001" || st["photos_today"].(map[string]any)["admitted"] != 30.0 {
		t.Errorf("status body %s", body)
	}

	fb.mu.Lock()
	fb.report = audit.Report{OK: false, Records: 7, BadSeq: 5, Problem: "hash mismatch"}
	fb.mu.Unlock()
	code, _, body = r.do(t, "GET", "/v1/audit/verify")
	if code != 200 {
		t.Fatalf("verify: %d %s", code, body)
	}
	if rep := decode[audit.Report](t, body); rep.OK || rep.BadSeq != 5 || rep.Problem != "hash mismatch" {
		t.Errorf("verify body %s", body)
	}
}

func TestAllowedUIDs(t *testing.T) {
	me := uint32(os.Getuid())
	for _, tc := range []struct {
		name    string
		allowed []uint32
		want    int
	}{
		{"empty list admits everyone", nil, 200},
		{"own uid allowed", []uint32{me + 1, me}, 200},
		{"own uid not allowed", []uint32{me + 12345}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFake()
			reg := prometheus.NewRegistry()
			r := start(t, Config{Backend: fb, AllowedUIDs: tc.allowed, Metrics: reg})
			for _, path := range []string{"/v1/health", "/v1/status", "/v1/audit", "/metrics"} {
				code, hdr, body := r.do(t, "GET", path)
				if code != tc.want {
					t.Errorf("GET %s: %d, want %d (%s)", path, code, tc.want, body)
				}
				if tc.want == 403 {
					wantError(t, body, "forbidden")
					if hdr.Get("Content-Type") != "application/json" {
						t.Errorf("403 content type %q", hdr.Get("Content-Type"))
					}
				}
			}
			if tc.want == 403 {
				// Unknown paths and wrong methods are refused before routing.
				if code, _, _ := r.do(t, "POST", "/nope"); code != 403 {
					t.Errorf("POST /nope: %d, want 403", code)
				}
			}
			acc := fb.accesses()
			if len(acc) == 0 {
				t.Fatal("no access records")
			}
			for _, a := range acc {
				if a.UID != me || a.Status != tc.want {
					t.Errorf("access %+v, want uid %d status %d", a, me, tc.want)
				}
			}
		})
	}
}

func TestHealthDegraded(t *testing.T) {
	fb := newFake()
	fb.health = Health{Status: "degraded", Checks: map[string]Check{
		"store":  {OK: true},
		"broker": {OK: false, Detail: "connection refused"},
	}}
	r := start(t, Config{Backend: fb})
	code, hdr, body := r.do(t, "GET", "/v1/health")
	if code != 503 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("degraded health: %d %s", code, body)
	}
	h := decode[Health](t, body)
	if h.Status != "degraded" || h.Checks["broker"].OK || h.Checks["broker"].Detail != "connection refused" {
		t.Errorf("body %s", body)
	}
	if acc := fb.accesses(); len(acc) != 1 || acc[0].Status != 503 || acc[0].Path != "/v1/health" || acc[0].Method != "GET" {
		t.Errorf("access %+v", acc)
	}
}

func TestAuditLimit(t *testing.T) {
	fb := newFake()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := 3; i >= 1; i-- {
		fb.records = append(fb.records, audit.Record{Seq: uint64(i), At: now, Type: "feature_changed", Fields: map[string]string{"feature": "patrol"}})
	}
	r := start(t, Config{Backend: fb})
	for _, tc := range []struct {
		query     string
		wantCode  int
		wantLimit int
		wantLen   int
	}{
		{"", 200, 50, 3},
		{"?limit=1", 200, 1, 1},
		{"?limit=1000", 200, 1000, 3},
		{"?limit=0", 400, 0, 0},
		{"?limit=1001", 400, 0, 0},
		{"?limit=-1", 400, 0, 0},
		{"?limit=abc", 400, 0, 0},
		{"?limit=", 400, 0, 0},
		{"?limit=2&limit=3", 400, 0, 0},
		{"?limit=99999999999999999999", 400, 0, 0},
	} {
		fb.mu.Lock()
		fb.lastLimit = 0
		fb.mu.Unlock()
		code, _, body := r.do(t, "GET", "/v1/audit"+tc.query)
		if code != tc.wantCode {
			t.Errorf("%q: %d, want %d (%s)", tc.query, code, tc.wantCode, body)
			continue
		}
		fb.mu.Lock()
		got := fb.lastLimit
		fb.mu.Unlock()
		if code == 400 {
			m := decode[map[string]string](t, body)
			if !strings.Contains(m["error"], "limit") {
				t.Errorf("%q: error %s", tc.query, body)
			}
			if got != 0 {
				t.Errorf("%q: backend called with limit %d", tc.query, got)
			}
			continue
		}
		if got != tc.wantLimit {
			t.Errorf("%q: backend limit %d, want %d", tc.query, got, tc.wantLimit)
		}
		recs := decode[[]audit.Record](t, body)
		if len(recs) != tc.wantLen || recs[0].Seq != 3 || !recs[0].At.Equal(now) {
			t.Errorf("%q: records %s", tc.query, body)
		}
	}

	// An empty trail is [] not null.
	fb.mu.Lock()
	fb.records = nil
	fb.mu.Unlock()
	if _, _, body := r.do(t, "GET", "/v1/audit"); strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("empty audit: %s", body)
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	fb := newFake()
	r := start(t, Config{Backend: fb})
	for _, tc := range []struct {
		method, path string
		code         int
		msg, allow   string
	}{
		{"GET", "/", 404, "not found", ""},
		{"GET", "/v1/nope", 404, "not found", ""},
		{"GET", "/v1/health/", 404, "not found", ""},
		{"GET", "/v1/photos", 404, "not found", ""},
		{"POST", "/v1/health", 405, "method not allowed", "GET, HEAD"},
		{"DELETE", "/v1/audit", 405, "method not allowed", "GET, HEAD"},
		{"PUT", "/metrics", 405, "method not allowed", "GET, HEAD"},
		{"GET", "/v1/selftest", 405, "method not allowed", "POST"},
	} {
		code, hdr, body := r.do(t, tc.method, tc.path)
		if code != tc.code || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q, want %d json", tc.method, tc.path, code, hdr.Get("Content-Type"), tc.code)
			continue
		}
		wantError(t, body, tc.msg)
		if hdr.Get("Allow") != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, hdr.Get("Allow"), tc.allow)
		}
	}
	acc := fb.accesses()
	if len(acc) != 8 || acc[0].Status != 404 || acc[4] != (accessEntry{uint32(os.Getuid()), "POST", "/v1/health", 405}) {
		t.Errorf("access trail %+v", acc)
	}
}

func TestBackendErrorsAreNotLeaked(t *testing.T) {
	const secret = "bbolt: page 42 corrupt near subject s-77"
	fb := newFake()
	fb.statusErr = errors.New(secret)
	fb.auditErr = errors.New(secret)
	fb.verifyErr = errors.New(secret)
	r := start(t, Config{Backend: fb})
	for _, path := range []string{"/v1/status", "/v1/audit", "/v1/audit/verify"} {
		code, _, body := r.do(t, "GET", path)
		if code != 500 {
			t.Errorf("%s: %d, want 500", path, code)
		}
		wantError(t, body, "internal")
	}
	if !strings.Contains(r.logs.String(), secret) {
		t.Errorf("backend error not logged: %s", r.logs.String())
	}
	// Unmarshalable status is an internal error as well.
	fb.mu.Lock()
	fb.statusErr, fb.status = nil, map[string]any{"bad": make(chan int)}
	fb.mu.Unlock()
	if code, _, body := r.do(t, "GET", "/v1/status"); code != 500 {
		t.Errorf("unmarshalable status: %d %s", code, body)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "aibo_diag_test_total", Help: "test counter"})
	reg.MustRegister(c)
	c.Add(3)
	fb := newFake()
	r := start(t, Config{Backend: fb, Metrics: reg})
	code, hdr, body := r.do(t, "GET", "/metrics")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %q", code, hdr.Get("Content-Type"))
	}
	if !strings.Contains(string(body), "aibo_diag_test_total 3") {
		t.Errorf("metrics body lacks the counter:\n%s", body)
	}
	if acc := fb.accesses(); len(acc) != 1 || acc[0].Path != "/metrics" || acc[0].Status != 200 {
		t.Errorf("access %+v", acc)
	}
}

func TestOptionalRoutes(t *testing.T) {
	t.Run("not implemented", func(t *testing.T) {
		r := start(t, Config{Backend: newFake()})
		for _, rt := range [][2]string{{"GET", "/v1/queue"}, {"GET", "/v1/inventory"}, {"POST", "/v1/selftest"}} {
			code, _, body := r.do(t, rt[0], rt[1])
			if code != 501 {
				t.Errorf("%s %s: %d", rt[0], rt[1], code)
			}
			wantError(t, body, "not implemented")
		}
	})
	t.Run("implemented", func(t *testing.T) {
		fb := fullBackend{fakeBackend: newFake(), selftest: Health{Status: "degraded", Checks: map[string]Check{"clock": {OK: false, Detail: "year 1970"}}}}
		r := start(t, Config{Backend: fb})
		if code, _, body := r.do(t, "GET", "/v1/queue"); code != 200 || !strings.Contains(string(body), `"oldest_age_s":61`) {
			t.Errorf("queue: %d %s", code, body)
		}
		if code, _, body := r.do(t, "GET", "/v1/inventory"); code != 200 || !strings.Contains(string(body), `"count":4`) {
			t.Errorf("inventory: %d %s", code, body)
		}
		if code, _, body := r.do(t, "POST", "/v1/selftest"); code != 503 || !strings.Contains(string(body), "year 1970") {
			t.Errorf("selftest: %d %s", code, body)
		}
	})
}

func TestRedaction(t *testing.T) {
	fb := newFake()
	embedding := make([]float64, 128)
	fb.status = map[string]any{
		"subjects": 2,
		"people": []any{
			map[string]any{"subject_id": "s-1", "display_name": "Alice", "birthday": "04-12", "template": embedding},
		},
		"last_photo": map[string]any{"sha256": strings.Repeat("ab", 32), "image": strings.Repeat("A", 4000)},
		"outbox":     map[string]any{"face_template": map[string]any{"count": 1, "bytes": 2048}},
		"blob":       strings.Repeat("x", 600),
	}
	fb.records = []audit.Record{{Seq: 1, Type: "consent_granted", Subject: "s-1", Fields: map[string]string{"display_name": "Alice", "scopes": "face_recognition"}}}
	r := start(t, Config{Backend: fb})

	_, _, body := r.do(t, "GET", "/v1/status")
	for _, leak := range []string{"Alice", "04-12", "AAAA", "xxxx", "0,0,0"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("status leaks %q: %s", leak, body)
		}
	}
	for _, keep := range []string{`"subject_id":"s-1"`, `"sha256":"abab`, `"face_template":{"bytes":2048,"count":1}`, `"subjects":2`} {
		if !strings.Contains(string(body), keep) {
			t.Errorf("status lost %s: %s", keep, body)
		}
	}
	if !strings.Contains(r.logs.String(), "people[0].display_name") {
		t.Errorf("redaction not logged: %s", r.logs.String())
	}

	_, _, body = r.do(t, "GET", "/v1/audit")
	if strings.Contains(string(body), "Alice") || !strings.Contains(string(body), "face_recognition") {
		t.Errorf("audit: %s", body)
	}
	if fb.records[0].Fields["display_name"] != "Alice" {
		t.Error("redaction modified the backend's record")
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	dir := socketDir(t)
	sock := filepath.Join(dir, "diag.sock")
	// A crashed run leaves its socket file behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("stale socket not in place: %v", err)
	}
	r := start(t, Config{Backend: newFake(), Socket: sock})
	if code, _, _ := r.do(t, "GET", "/v1/health"); code != 200 {
		t.Errorf("health after replacing stale socket: %d", code)
	}

	// A second server must not steal a live socket.
	srv, err := New(Config{Backend: newFake(), Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Run on a live socket: %v", err)
	}
	if code, _, _ := r.do(t, "GET", "/v1/health"); code != 200 {
		t.Errorf("first server disturbed: %d", code)
	}
}

func TestRefusesToReplaceNonSocket(t *testing.T) {
	sock := filepath.Join(socketDir(t), "diag.sock")
	if err := os.WriteFile(sock, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Backend: newFake(), Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Run over a regular file: %v", err)
	}
	if b, err := os.ReadFile(sock); err != nil || string(b) != "precious" {
		t.Errorf("regular file disturbed: %q %v", b, err)
	}
}

func TestCreatesParentDir(t *testing.T) {
	dir := filepath.Join(socketDir(t), "run", "aibo")
	r := start(t, Config{Backend: newFake(), Socket: filepath.Join(dir, "d.sock")})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o750 {
		t.Errorf("parent dir mode %v, want 0750", fi.Mode().Perm())
	}
	if code, _, _ := r.do(t, "GET", "/v1/health"); code != 200 {
		t.Errorf("health: %d", code)
	}
}

func TestRunShutdown(t *testing.T) {
	fb := newFake()
	sock := filepath.Join(socketDir(t), "diag.sock")
	srv, err := New(Config{Backend: fb, Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	waitListening(t, sock, done)

	// An idle keep-alive connection and a request stuck in the backend must
	// not hold shutdown beyond its bound.
	c := newClient(sock)
	if resp, err := c.Get("http://diag/v1/health"); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	block := make(chan struct{})
	defer close(block)
	fb.mu.Lock()
	fb.block = block
	fb.mu.Unlock()
	go func() {
		if resp, err := newClient(sock).Get("http://diag/v1/status"); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)

	began := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(ShutdownTimeout + 3*time.Second):
		t.Fatal("Run did not return in time")
	}
	if d := time.Since(began); d > ShutdownTimeout+time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file still there after shutdown: %v", err)
	}
	if err := srv.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestNewValidation(t *testing.T) {
	long := "/" + strings.Repeat("d", 100) + "/diag.sock"
	for _, cfg := range []Config{
		{Socket: "/tmp/x.sock"},
		{Backend: newFake()},
		{Backend: newFake(), Socket: long},
		{Backend: newFake(), Socket: "@abstract"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// TestRealPeerUID checks SO_PEERCRED with a real second uid: the test binary
// is re-executed as nobody (65534) and talks to the socket as a client.
func TestRealPeerUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client under another uid; TestAllowedUIDs covers the allow-list")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "diagp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client.test")
	if err := copyFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		allowed []uint32
		want    int
	}{
		{"nobody allowed", []uint32{nobody}, 200},
		{"nobody not allowed", []uint32{0}, 403},
		{"no allow-list", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := os.MkdirTemp(dir, "s")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			fb := newFake()
			r := start(t, Config{Backend: fb, Socket: filepath.Join(sub, "diag.sock"), AllowedUIDs: tc.allowed})
			// The socket is 0660: put nobody in its group, as a deployment
			// would with a technicians' group.
			if err := os.Chown(r.sock, -1, nobody); err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(bin, "-test.run=^$")
			cmd.Env = append(os.Environ(), envClientSocket+"="+r.sock, envClientPath+"=/v1/health")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Skipf("cannot start a process as uid %d here: %v", nobody, err)
				}
				t.Fatalf("client as uid %d: %v\n%s", nobody, err, out)
			}
			if !strings.HasPrefix(string(out), fmt.Sprint(tc.want)+" ") {
				t.Fatalf("client as uid %d got %q, want status %d", nobody, out, tc.want)
			}
			acc := fb.accesses()
			if len(acc) != 1 || acc[0].UID != nobody || acc[0].Status != tc.want {
				t.Errorf("access trail %+v, want uid %d status %d", acc, nobody, tc.want)
			}
			// Root is refused when only nobody is allowed.
			if tc.allowed != nil && tc.allowed[0] == nobody {
				if code, _, _ := r.do(t, "GET", "/v1/health"); code != 403 {
					t.Errorf("root: %d, want 403", code)
				}
			}
		})
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// slowSelftest blocks each self-test until release is closed and counts
// how many ran.
type slowSelftest struct {
	*fakeBackend
	entered chan struct{}
	release chan struct{}
	ran     atomic.Int32
}

func (b *slowSelftest) Selftest(context.Context) Health {
	b.ran.Add(1)
	b.entered <- struct{}{}
	<-b.release
	return Health{Status: "ok"}
}

// TestSelftestRunsOneAtATime (issue 21, item 6): sixteen concurrent POST
// /v1/selftest each wrote a full store snapshot. One runs; the others are
// answered busy at once, and a later one runs again.
func TestSelftestRunsOneAtATime(t *testing.T) {
	b := &slowSelftest{fakeBackend: newFake(), entered: make(chan struct{}, 16), release: make(chan struct{})}
	// Sixteen connections at once, plus start's probe until the server has
	// seen it closed: over the default cap under load. The cap is
	// TestConnectionsAreCapped's, not this test's.
	r := start(t, Config{Backend: b, MaxConns: 32})
	first := make(chan int, 1)
	go func() { code, _, _ := r.do(t, "POST", "/v1/selftest"); first <- code }()
	<-b.entered
	var wg sync.WaitGroup
	var busy atomic.Int32
	for range 15 {
		wg.Go(func() {
			code, _, body := r.do(t, "POST", "/v1/selftest")
			if code == http.StatusTooManyRequests && strings.Contains(string(body), "busy") {
				busy.Add(1)
			} else {
				t.Errorf("a second self-test while one runs: %d %s", code, body)
			}
		})
	}
	answered := make(chan struct{})
	go func() { wg.Wait(); close(answered) }()
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Error("the other self-tests did not answer at once: they run or queue behind the first")
	}
	close(b.release)
	<-answered
	if code := <-first; code != 200 {
		t.Fatalf("the running self-test answered %d", code)
	}
	if busy.Load() != 15 || b.ran.Load() != 1 {
		t.Fatalf("%d answered busy, %d ran; want 15 and 1", busy.Load(), b.ran.Load())
	}
	if code, _, _ := r.do(t, "POST", "/v1/selftest"); code != 200 || b.ran.Load() != 2 {
		t.Fatalf("a self-test after the first ended: %d, %d ran", code, b.ran.Load())
	}
}
