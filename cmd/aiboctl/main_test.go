package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibo-privacy/aibo-privacyd/agent/diag"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
)

// fakeBackend is a test double of diag.Backend.
type fakeBackend struct {
	mu        sync.Mutex
	health    diag.Health
	status    any
	statusErr error
	records   []audit.Record
	lastLimit int
	report    audit.Report
}

func newFake() *fakeBackend {
	at := time.Date(2025, 3, 1, 21, 0, 5, 0, time.UTC)
	return &fakeBackend{
		health: diag.Health{Status: "ok", Checks: map[string]diag.Check{
			"store":  {OK: true},
			"broker": {OK: true, Detail: "connected"},
		}},
		status: map[string]any{
			"device_id":      "aibo-0001",
			"policy_version": "2025-01",
			"photos_today":   map[string]any{"admitted": 30, "refused": 2, "day": "2025-03-01"},
			"features":       map[string]any{"auto_photo": true, "patrol": false},
			"subjects":       3,
			"outbox":         map[string]any{"pending": 0, "bytes": 0},
			"staged":         []any{},
		},
		records: []audit.Record{
			{Seq: 12, At: at, Type: "technician_access", Fields: map[string]string{"uid": "0", "path": "/v1/status", "method": "GET"}},
			{Seq: 11, At: at.Add(-time.Minute), Type: "consent_granted", Subject: "s-7", Fields: map[string]string{"scopes": "face_recognition cloud_backup"}},
		},
		report: audit.Report{OK: true, Records: 12},
	}
}

func (f *fakeBackend) Health(context.Context) diag.Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

func (f *fakeBackend) Status(context.Context) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.statusErr
}

func (f *fakeBackend) Audit(_ context.Context, limit int) ([]audit.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLimit = limit
	if len(f.records) > limit {
		return f.records[:limit], nil
	}
	return f.records, nil
}

func (f *fakeBackend) AuditVerify(context.Context) (audit.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.report, nil
}

func (f *fakeBackend) Access(context.Context, uint32, string, string, int) error { return nil }

type fakeFull struct{ *fakeBackend }

func (fakeFull) Queue(context.Context) (any, error) {
	return map[string]any{"photo": map[string]any{"count": 2, "bytes": 4096, "oldest_age_s": 30}}, nil
}

func (fakeFull) Inventory(context.Context) (any, error) {
	return map[string]any{"photos": map[string]any{"count": 4, "oldest_age_s": 3600}}, nil
}

func (fakeFull) Selftest(context.Context) diag.Health {
	return diag.Health{Status: "degraded", Checks: map[string]diag.Check{"clock": {OK: false, Detail: "year 1970"}}}
}

func socketDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if len(d) < 60 {
		return d
	}
	d, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serve runs a real diag.Server on a temp socket and returns its path.
func serve(t *testing.T, b diag.Backend, allowed ...uint32) string {
	t.Helper()
	sock := filepath.Join(socketDir(t), "diag.sock")
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "aibo_photos_admitted_total", Help: "admitted photos"})
	reg.MustRegister(c)
	c.Add(30)
	srv, err := diag.New(diag.Config{Socket: sock, Backend: b, AllowedUIDs: allowed, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("diag socket never came up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func mustMatch(t *testing.T, out, pattern string) {
	t.Helper()
	if !regexp.MustCompile(pattern).MatchString(out) {
		t.Errorf("output does not match %q:\n%s", pattern, out)
	}
}

func TestStatus(t *testing.T) {
	sock := serve(t, newFake())
	code, out, errOut := ctl(t, "-socket", sock, "status")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	mustMatch(t, out, `(?m)^photos_today\.admitted  +30$`)
	mustMatch(t, out, `(?m)^features\.auto_photo  +true$`)
	mustMatch(t, out, `(?m)^device_id  +aibo-0001$`)
	mustMatch(t, out, `(?m)^staged  +\[\]$`)
	// Sorted rows.
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		keys = append(keys, strings.Fields(line)[0])
	}
	want := []string{"device_id", "features.auto_photo", "features.patrol", "outbox.bytes", "outbox.pending",
		"photos_today.admitted", "photos_today.day", "photos_today.refused", "policy_version", "staged", "subjects"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("rows %v, want %v", keys, want)
	}
	// Values line up in one column.
	col := -1
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		i := strings.LastIndex(line, "  ") + 2
		if col == -1 {
			col = i
		} else if i != col {
			t.Errorf("misaligned row %q", line)
		}
	}
}

func TestJSONFlagPositions(t *testing.T) {
	sock := serve(t, newFake())
	for _, args := range [][]string{
		{"-socket", sock, "status", "--json"},
		{"--json", "-socket", sock, "status"},
		{"status", "-json", "--socket=" + sock},
		{"-json=true", "status", "-socket=" + sock},
	} {
		code, out, errOut := ctl(t, args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d stderr %q", args, code, errOut)
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil || m["device_id"] != "aibo-0001" {
			t.Errorf("%v: not the status JSON: %v\n%s", args, err, out)
		}
		if !strings.Contains(out, "\n  \"") {
			t.Errorf("%v: JSON not indented:\n%s", args, out)
		}
	}
}

func TestSocketFromEnv(t *testing.T) {
	sock := serve(t, newFake())
	t.Setenv(envSocket, sock)
	if code, _, errOut := ctl(t, "health"); code != 0 {
		t.Errorf("env socket: exit %d %s", code, errOut)
	}
	// -socket wins over the environment.
	bad := filepath.Join(socketDir(t), "none.sock")
	code, _, errOut := ctl(t, "health", "-socket", bad)
	if code != exitUnreachable || errOut != "aiboctl: cannot reach "+bad+": no such file or directory\n" {
		t.Errorf("flag over env: exit %d %q", code, errOut)
	}
}

func TestHealth(t *testing.T) {
	fb := newFake()
	sock := serve(t, fb)
	code, out, _ := ctl(t, "-socket", sock, "health")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out, "status: ok\n") {
		t.Errorf("first line: %q", out)
	}
	mustMatch(t, out, `(?m)^broker +OK +connected$`)
	mustMatch(t, out, `(?m)^store +OK *$`)

	fb.mu.Lock()
	fb.health = diag.Health{Status: "degraded", Checks: map[string]diag.Check{
		"store":  {OK: true},
		"broker": {OK: false, Detail: "connection refused"},
	}}
	fb.mu.Unlock()
	code, out, errOut := ctl(t, "-socket", sock, "health")
	if code != 1 || errOut != "" {
		t.Fatalf("degraded: exit %d stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "status: degraded\n") {
		t.Errorf("first line: %q", out)
	}
	mustMatch(t, out, `(?m)^broker +FAIL +connection refused$`)

	code, out, _ = ctl(t, "-socket", sock, "health", "--json")
	if code != 1 || !strings.Contains(out, `"status": "degraded"`) {
		t.Errorf("degraded --json: exit %d\n%s", code, out)
	}
}

func TestAudit(t *testing.T) {
	fb := newFake()
	sock := serve(t, fb)
	code, out, errOut := ctl(t, "-socket", sock, "audit")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d %q", code, errOut)
	}
	if fb.lastLimit != diag.DefaultAuditLimit {
		t.Errorf("default limit %d", fb.lastLimit)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header + 2 rows:\n%s", out)
	}
	mustMatch(t, lines[0], `^SEQ +TIME +TYPE +SUBJECT +FIELDS$`)
	mustMatch(t, lines[1], `^12 +2025-03-01T21:00:05Z +technician_access +- +method=GET path=/v1/status uid=0$`)
	mustMatch(t, lines[2], `^11 +2025-03-01T20:59:05Z +consent_granted +s-7 +scopes="face_recognition cloud_backup"$`)

	for _, args := range [][]string{
		{"-socket", sock, "audit", "-limit", "1"},
		{"-limit=1", "-socket", sock, "audit"},
		{"audit", "--limit", "1", "-socket", sock},
	} {
		code, out, _ := ctl(t, args...)
		if code != 0 || fb.lastLimit != 1 || strings.Count(out, "\n") != 2 {
			t.Errorf("%v: exit %d limit %d\n%s", args, code, fb.lastLimit, out)
		}
	}

	code, out, _ = ctl(t, "-socket", sock, "audit", "--json", "-limit", "1")
	var recs []audit.Record
	if err := json.Unmarshal([]byte(out), &recs); err != nil || code != 0 || len(recs) != 1 || recs[0].Seq != 12 {
		t.Errorf("audit --json: exit %d %v\n%s", code, err, out)
	}

	fb.mu.Lock()
	fb.records = nil
	fb.mu.Unlock()
	if code, out, _ := ctl(t, "-socket", sock, "audit"); code != 0 || out != "no audit records\n" {
		t.Errorf("empty audit: exit %d %q", code, out)
	}
}

func TestAuditVerify(t *testing.T) {
	fb := newFake()
	sock := serve(t, fb)
	code, out, _ := ctl(t, "-socket", sock, "audit", "verify")
	if code != 0 || out != "audit chain OK (12 records)\n" {
		t.Errorf("ok chain: exit %d %q", code, out)
	}
	fb.mu.Lock()
	fb.report = audit.Report{OK: false, Records: 12, BadSeq: 5, Problem: "hash mismatch"}
	fb.mu.Unlock()
	code, out, _ = ctl(t, "audit", "verify", "-socket", sock)
	if code != 1 || out != "audit chain BROKEN at seq 5: hash mismatch\n" {
		t.Errorf("broken chain: exit %d %q", code, out)
	}
	code, out, _ = ctl(t, "audit", "verify", "-socket", sock, "--json")
	if code != 1 || !strings.Contains(out, `"bad_seq": 5`) {
		t.Errorf("broken chain --json: exit %d %q", code, out)
	}
}

func TestMetrics(t *testing.T) {
	sock := serve(t, newFake())
	code, out, _ := ctl(t, "-socket", sock, "metrics")
	if code != 0 || !strings.Contains(out, "# TYPE aibo_photos_admitted_total counter\naibo_photos_admitted_total 30\n") {
		t.Errorf("metrics: exit %d\n%s", code, out)
	}
	// --json is JSON, one object per family.
	code, out, _ = ctl(t, "-socket", sock, "metrics", "--json")
	var fams map[string]metricFamily
	if err := json.Unmarshal([]byte(out), &fams); err != nil || code != 0 {
		t.Fatalf("metrics --json: exit %d, not JSON (%v):\n%s", code, err, out)
	}
	f := fams["aibo_photos_admitted_total"]
	if f.Type != "counter" || f.Help != "admitted photos" || len(f.Metrics) != 1 || f.Metrics[0].Value == nil || *f.Metrics[0].Value != 30 {
		t.Errorf("aibo_photos_admitted_total = %+v", f)
	}
}

func TestMetricsJSONCarriesLabelsHistogramsAndSummaries(t *testing.T) {
	text := `# HELP a_seconds how long
# TYPE a_seconds histogram
a_seconds_bucket{kind="photo",le="0.5"} 2
a_seconds_bucket{kind="photo",le="+Inf"} 3
a_seconds_sum{kind="photo"} 1.25
a_seconds_count{kind="photo"} 3
# HELP q quantiles
# TYPE q summary
q{quantile="0.5"} NaN
q_sum 0
q_count 0
`
	var buf bytes.Buffer
	if err := metricsJSON(&buf, []byte(text)); err != nil {
		t.Fatal(err)
	}
	var fams map[string]metricFamily
	if err := json.Unmarshal(buf.Bytes(), &fams); err != nil {
		t.Fatalf("%v:\n%s", err, buf.String())
	}
	h := fams["a_seconds"].Metrics[0]
	if h.Labels["kind"] != "photo" || *h.Count != 3 || *h.Sum != 1.25 || h.Buckets["0.5"] != 2 || h.Buckets["+Inf"] != 3 {
		t.Errorf("histogram: %+v", h)
	}
	if q := fams["q"].Metrics[0]; len(q.Quantiles) != 0 || *q.Count != 0 {
		t.Errorf("a NaN quantile must be left out, not break the JSON: %+v", q)
	}
	if err := metricsJSON(&buf, []byte("not { metrics")); err == nil {
		t.Error("garbage accepted as metrics")
	}
}

func TestOptionalCommands(t *testing.T) {
	plain := serve(t, newFake())
	code, _, errOut := ctl(t, "-socket", plain, "queue")
	if code != exitDaemonError || errOut != "aiboctl: daemon answered 501 Not Implemented: not implemented\n" {
		t.Errorf("queue on a basic backend: exit %d %q", code, errOut)
	}

	full := serve(t, fakeFull{newFake()})
	code, out, _ := ctl(t, "-socket", full, "queue")
	if code != 0 {
		t.Errorf("queue: exit %d", code)
	}
	mustMatch(t, out, `(?m)^photo\.oldest_age_s +30$`)
	code, out, _ = ctl(t, "-socket", full, "inventory")
	if code != 0 {
		t.Errorf("inventory: exit %d", code)
	}
	mustMatch(t, out, `(?m)^photos\.count +4$`)
	code, out, _ = ctl(t, "-socket", full, "selftest")
	if code != 1 || !strings.HasPrefix(out, "selftest: degraded\n") {
		t.Errorf("selftest: exit %d\n%s", code, out)
	}
	mustMatch(t, out, `(?m)^clock +FAIL +year 1970$`)
}

func TestServerErrors(t *testing.T) {
	t.Run("forbidden", func(t *testing.T) {
		sock := serve(t, newFake(), uint32(os.Getuid())+12345)
		for _, cmd := range [][]string{{"status"}, {"health"}, {"metrics"}, {"audit", "verify"}} {
			code, out, errOut := ctl(t, append([]string{"-socket", sock}, cmd...)...)
			if code != exitForbidden || out != "" || errOut != "aiboctl: forbidden: this user is not allowed on the diagnostic socket\n" {
				t.Errorf("%v: exit %d stdout %q stderr %q", cmd, code, out, errOut)
			}
		}
	})
	t.Run("internal", func(t *testing.T) {
		fb := newFake()
		fb.statusErr = errors.New("disk on fire")
		sock := serve(t, fb)
		code, out, errOut := ctl(t, "-socket", sock, "status")
		if code != exitDaemonError || out != "" || errOut != "aiboctl: daemon answered 500 Internal Server Error: internal\n" {
			t.Errorf("exit %d stdout %q stderr %q", code, out, errOut)
		}
		code, out, _ = ctl(t, "-socket", sock, "status", "--json")
		if code != exitDaemonError || !strings.Contains(out, `"error": "internal"`) {
			t.Errorf("--json: exit %d %q", code, out)
		}
	})
}

func TestUnreachable(t *testing.T) {
	dir := socketDir(t)
	missing := filepath.Join(dir, "missing.sock")
	code, out, errOut := ctl(t, "-socket", missing, "status")
	if code != exitUnreachable || out != "" || errOut != "aiboctl: cannot reach "+missing+": no such file or directory\n" {
		t.Errorf("missing: exit %d %q", code, errOut)
	}

	// A socket left by a crashed daemon: nobody listens.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	code, _, errOut = ctl(t, "-socket", stale, "health")
	if code != exitUnreachable || errOut != "aiboctl: cannot reach "+stale+": connection refused\n" {
		t.Errorf("stale: exit %d %q", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"status", "extra"},
		{"audit", "bogus"},
		{"audit", "verify", "now"},
		{"audit", "-limit", "0"},
		{"audit", "-limit", "1001"},
		{"audit", "-limit", "ten"},
		{"audit", "-limit"},
		{"status", "-limit", "5"},
		{"audit", "verify", "-limit", "5"},
		{"-socket"},
		{"-socket=", "status"},
		{"--verbose", "status"},
		{"-json=maybe", "status"},
	} {
		code, out, errOut := ctl(t, args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "aiboctl: ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d stdout %q stderr %q", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"status", "-help"}, {"help"}} {
		code, out, errOut := ctl(t, args...)
		if code != 0 || !strings.HasPrefix(out, "usage: aiboctl") || errOut != "" {
			t.Errorf("%q: exit %d %q %q", args, code, out, errOut)
		}
	}
}

func TestFlatten(t *testing.T) {
	var rows [][2]string
	var v any
	dec := json.NewDecoder(strings.NewReader(`{"b":{"c":[1,{"d":null}],"e":{}},"a":"x\ty","z":""}`))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	flatten("", v, &rows)
	got := make([]string, len(rows))
	for i, r := range rows {
		got[i] = r[0] + "=" + r[1]
	}
	want := []string{`a="x\ty"`, "b.c[0]=1", "b.c[1].d=null", "b.e={}", `z=""`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %q, want %q", got, want)
	}

	var buf bytes.Buffer
	if code, err := renderFlat(&buf, []byte(`42`)); code != 0 || err != nil || buf.String() != "42\n" {
		t.Errorf("scalar: %d %v %q", code, err, buf.String())
	}
}

// TestDeps keeps aiboctl free of gocv (like the daemon) and of the store: a
// technician's tool has no way to content other than the socket.
func TestDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "gocv.io/") || strings.HasPrefix(dep, "go.etcd.io/bbolt") ||
			strings.HasPrefix(dep, "github.com/aibo-privacy/aibo-privacyd/agent") {
			t.Errorf("aiboctl depends on %s", dep)
		}
	}
}

func TestLimitMatchesServer(t *testing.T) {
	if maxAuditLimit != diag.MaxAuditLimit {
		t.Errorf("aiboctl max limit %d, server %d", maxAuditLimit, diag.MaxAuditLimit)
	}
}

// Each failure kind has an exit code of its own, all different, so a
// probe can tell a degraded robot (1) from a wrong account (4), a daemon
// that is not running (3) or one that answers errors (5).
func TestExitCodesAreDistinct(t *testing.T) {
	codes := map[int]string{}
	for name, c := range map[string]int{"ok": exitOK, "not ok": exitNotOK, "usage": exitUsage, "unreachable": exitUnreachable, "forbidden": exitForbidden, "daemon error": exitDaemonError} {
		if prev, dup := codes[c]; dup {
			t.Errorf("%s and %s share exit code %d", prev, name, c)
		}
		codes[c] = name
		if !strings.Contains(usageText, fmt.Sprintf("\n  %d  ", c)) {
			t.Errorf("exit code %d (%s) is not in the usage text", c, name)
		}
	}
	// A socket file this user may not open is "forbidden", not "unreachable".
	denied := &net.OpError{Op: "dial", Net: "unix", Err: &os.SyscallError{Syscall: "connect", Err: syscall.EACCES}}
	if got := transportExit(denied); got != exitForbidden {
		t.Errorf("EACCES on connect: exit %d, want %d", got, exitForbidden)
	}
	refused := &net.OpError{Op: "dial", Net: "unix", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	if got := transportExit(refused); got != exitUnreachable {
		t.Errorf("ECONNREFUSED: exit %d, want %d", got, exitUnreachable)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"-version"}, {"--version"}, {"version"}} {
		code, out, errOut := ctl(t, args...)
		if code != 0 || !strings.HasPrefix(out, "aiboctl ") || !strings.Contains(out, runtime.Version()) || errOut != "" {
			t.Errorf("%q: exit %d %q %q", args, code, out, errOut)
		}
	}
}

// status shows the uptime as a duration, and the firmware once.
func TestStatusShowsUptimeAsADuration(t *testing.T) {
	fb := newFake()
	fb.status = map[string]any{"device_id": "aibo-0001", "uptime_seconds": 6190.309681119,
		"firmware": map[string]any{"version": "1.0.0", "staged": ""}, "firmware_update": map[string]any{"highest": "1.0.0"}}
	sock := serve(t, fb)
	code, out, _ := ctl(t, "-socket", sock, "status")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustMatch(t, out, `(?m)^uptime +1h43m10s$`)
	if strings.Contains(out, "uptime_seconds") {
		t.Errorf("seconds shown as a float:\n%s", out)
	}
	// --json keeps the daemon's numbers.
	if _, out, _ := ctl(t, "-socket", sock, "status", "--json"); !strings.Contains(out, `"uptime_seconds": 6190.309681119`) {
		t.Errorf("--json changed the answer:\n%s", out)
	}
}

type fakeInventory struct {
	*fakeBackend
	inv string
}

func (fakeInventory) Queue(context.Context) (any, error) { return map[string]any{}, nil }
func (f fakeInventory) Inventory(context.Context) (any, error) {
	return json.RawMessage(f.inv), nil
}
func (fakeInventory) Selftest(context.Context) diag.Health { return diag.Health{Status: "ok"} }

// inventory never prints "subjects null": an empty household is "none",
// people are rows of opaque ids.
func TestInventoryTables(t *testing.T) {
	empty := `{"generated_at":"2026-12-01T10:00:00Z","categories":{"photos":{"count":2,"bytes":4096,"oldest_age_seconds":3700,"newest_age_seconds":65,"erased_by":"the day's selection"},"consents":{"count":0,"erased_by":"revoke_consent"}},"subjects":null}`
	sock := serve(t, fakeInventory{newFake(), empty})
	code, out, _ := ctl(t, "-socket", sock, "inventory")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	mustMatch(t, out, `(?m)^photos +2 +4096 +1h1m40s +1m5s +the day's selection$`)
	mustMatch(t, out, `(?m)^subjects: none$`)
	if strings.Contains(out, "null") {
		t.Errorf("null shown:\n%s", out)
	}
	one := `{"categories":{"faces":{"count":5,"erased_by":"revoke_consent"}},"subjects":[{"subject_id":"s-7","consent":true,"scopes":["face_recognition"],"minor":false,"templates":5,"sightings":2,"queued_artifacts":1}]}`
	sock = serve(t, fakeInventory{newFake(), one})
	_, out, _ = ctl(t, "-socket", sock, "inventory")
	mustMatch(t, out, `(?m)^s-7 +true +face_recognition +false +5 +2 +1 +-$`)
}
