package diag

// aiboctl against the real server: the technician's tool is built from
// cmd/aiboctl and run as a technician runs it, against a Server on a
// temporary socket with a backend that answers what each test needs. (The
// tests live here, not beside aiboctl, so that nothing but the daemon
// imports the composition, tests included.)

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
)

// aiboctl's exit codes and socket variable (cmd/aiboctl).
const (
	exitNotOK       = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitForbidden   = 4
	exitDaemonError = 5
	envSocket       = "AIBO_DIAG_SOCKET"
)

var (
	aiboctlOnce sync.Once
	aiboctlBin  string
	aiboctlErr  error
)

// ctl runs the aiboctl binary (built once) with args.
func ctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	aiboctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "aiboctl-bin")
		if err != nil {
			aiboctlErr = err
			return
		}
		aiboctlBin = filepath.Join(dir, "aiboctl")
		if out, err := exec.Command("go", "build", "-o", aiboctlBin, "../../cmd/aiboctl").CombinedOutput(); err != nil {
			aiboctlErr = errors.New("go build aiboctl: " + err.Error() + "\n" + string(out))
		}
	})
	if aiboctlErr != nil {
		t.Fatal(aiboctlErr)
	}
	var o, e bytes.Buffer
	cmd := exec.Command(aiboctlBin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}

func cliMatch(t *testing.T, out, pattern string) {
	t.Helper()
	if !regexp.MustCompile(pattern).MatchString(out) {
		t.Errorf("output does not match %q:\n%s", pattern, out)
	}
}

// cliBackend is a test double of Backend.
type cliBackend struct {
	mu        sync.Mutex
	health    Health
	status    any
	statusErr error
	records   []audit.Record
	lastLimit int
	report    audit.Report
}

func newCLIBackend() *cliBackend {
	at := time.Date(2025, 3, 1, 21, 0, 5, 0, time.UTC)
	return &cliBackend{
		health: Health{Status: "ok", Checks: map[string]Check{
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

func (f *cliBackend) Health(context.Context) Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

func (f *cliBackend) Status(context.Context) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.statusErr
}

func (f *cliBackend) Audit(_ context.Context, limit int) ([]audit.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLimit = limit
	if len(f.records) > limit {
		return f.records[:limit], nil
	}
	return f.records, nil
}

// limit is the last limit the server passed on.
func (f *cliBackend) limit() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastLimit
}

func (f *cliBackend) AuditVerify(context.Context) (audit.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.report, nil
}

func (f *cliBackend) Access(context.Context, uint32, string, string, int) error { return nil }

type cliFull struct{ *cliBackend }

func (cliFull) Queue(context.Context) (any, error) {
	return map[string]any{"photo": map[string]any{"count": 2, "bytes": 4096, "oldest_age_s": 30}}, nil
}

func (cliFull) Inventory(context.Context) (any, error) {
	return map[string]any{"photos": map[string]any{"count": 4, "oldest_age_s": 3600}}, nil
}

func (cliFull) Selftest(context.Context) Health {
	return Health{Status: "degraded", Checks: map[string]Check{"clock": {OK: false, Detail: "year 1970"}}}
}

// cliServe runs a real Server for backend b on a temporary socket (with
// one counter to scrape) and returns the socket's path.
func cliServe(t *testing.T, b Backend, allowed ...uint32) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "aibo_photos_admitted_total", Help: "admitted photos"})
	reg.MustRegister(c)
	c.Add(30)
	return start(t, Config{Backend: b, AllowedUIDs: allowed, Metrics: reg}).sock
}

func TestAiboctlStatus(t *testing.T) {
	sock := cliServe(t, newCLIBackend())
	code, out, errOut := ctl(t, "-socket", sock, "status")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	cliMatch(t, out, `(?m)^photos_today\.admitted  +30$`)
	cliMatch(t, out, `(?m)^features\.auto_photo  +true$`)
	cliMatch(t, out, `(?m)^device_id  +aibo-0001$`)
	cliMatch(t, out, `(?m)^staged  +\[\]$`)
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

func TestAiboctlJSONFlagPositions(t *testing.T) {
	sock := cliServe(t, newCLIBackend())
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

func TestAiboctlSocketFromEnv(t *testing.T) {
	sock := cliServe(t, newCLIBackend())
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

func TestAiboctlHealth(t *testing.T) {
	fb := newCLIBackend()
	sock := cliServe(t, fb)
	code, out, _ := ctl(t, "-socket", sock, "health")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out, "status: ok\n") {
		t.Errorf("first line: %q", out)
	}
	cliMatch(t, out, `(?m)^broker +OK +connected$`)
	cliMatch(t, out, `(?m)^store +OK *$`)

	fb.mu.Lock()
	fb.health = Health{Status: "degraded", Checks: map[string]Check{
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
	cliMatch(t, out, `(?m)^broker +FAIL +connection refused$`)

	code, out, _ = ctl(t, "-socket", sock, "health", "--json")
	if code != 1 || !strings.Contains(out, `"status": "degraded"`) {
		t.Errorf("degraded --json: exit %d\n%s", code, out)
	}
}

func TestAiboctlAudit(t *testing.T) {
	fb := newCLIBackend()
	sock := cliServe(t, fb)
	code, out, errOut := ctl(t, "-socket", sock, "audit")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d %q", code, errOut)
	}
	if got := fb.limit(); got != DefaultAuditLimit {
		t.Errorf("default limit %d", got)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header + 2 rows:\n%s", out)
	}
	cliMatch(t, lines[0], `^SEQ +TIME +TYPE +SUBJECT +FIELDS$`)
	cliMatch(t, lines[1], `^12 +2025-03-01T21:00:05Z +technician_access +- +method=GET path=/v1/status uid=0$`)
	cliMatch(t, lines[2], `^11 +2025-03-01T20:59:05Z +consent_granted +s-7 +scopes="face_recognition cloud_backup"$`)

	for _, args := range [][]string{
		{"-socket", sock, "audit", "-limit", "1"},
		{"-limit=1", "-socket", sock, "audit"},
		{"audit", "--limit", "1", "-socket", sock},
	} {
		code, out, _ := ctl(t, args...)
		if code != 0 || fb.limit() != 1 || strings.Count(out, "\n") != 2 {
			t.Errorf("%v: exit %d limit %d\n%s", args, code, fb.limit(), out)
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

func TestAiboctlAuditVerify(t *testing.T) {
	fb := newCLIBackend()
	sock := cliServe(t, fb)
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

func TestAiboctlMetrics(t *testing.T) {
	sock := cliServe(t, newCLIBackend())
	code, out, _ := ctl(t, "-socket", sock, "metrics")
	if code != 0 || !strings.Contains(out, "# TYPE aibo_photos_admitted_total counter\naibo_photos_admitted_total 30\n") {
		t.Errorf("metrics: exit %d\n%s", code, out)
	}
	// --json is JSON, one object per family.
	code, out, _ = ctl(t, "-socket", sock, "metrics", "--json")
	var fams map[string]struct {
		Type    string `json:"type"`
		Help    string `json:"help"`
		Metrics []struct {
			Value *float64 `json:"value"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(out), &fams); err != nil || code != 0 {
		t.Fatalf("metrics --json: exit %d, not JSON (%v):\n%s", code, err, out)
	}
	f := fams["aibo_photos_admitted_total"]
	if f.Type != "counter" || f.Help != "admitted photos" || len(f.Metrics) != 1 || f.Metrics[0].Value == nil || *f.Metrics[0].Value != 30 {
		t.Errorf("aibo_photos_admitted_total = %+v", f)
	}
}

func TestAiboctlOptionalCommands(t *testing.T) {
	plain := cliServe(t, newCLIBackend())
	code, _, errOut := ctl(t, "-socket", plain, "queue")
	if code != exitDaemonError || errOut != "aiboctl: daemon answered 501 Not Implemented: not implemented\n" {
		t.Errorf("queue on a basic backend: exit %d %q", code, errOut)
	}

	full := cliServe(t, cliFull{newCLIBackend()})
	code, out, _ := ctl(t, "-socket", full, "queue")
	if code != 0 {
		t.Errorf("queue: exit %d", code)
	}
	cliMatch(t, out, `(?m)^photo\.oldest_age_s +30$`)
	code, out, _ = ctl(t, "-socket", full, "inventory")
	if code != 0 {
		t.Errorf("inventory: exit %d", code)
	}
	cliMatch(t, out, `(?m)^photos\.count +4$`)
	code, out, _ = ctl(t, "-socket", full, "selftest")
	if code != 1 || !strings.HasPrefix(out, "selftest: degraded\n") {
		t.Errorf("selftest: exit %d\n%s", code, out)
	}
	cliMatch(t, out, `(?m)^clock +FAIL +year 1970$`)
}

func TestAiboctlServerErrors(t *testing.T) {
	t.Run("forbidden", func(t *testing.T) {
		sock := cliServe(t, newCLIBackend(), uint32(os.Getuid())+12345)
		for _, cmd := range [][]string{{"status"}, {"health"}, {"metrics"}, {"audit", "verify"}} {
			code, out, errOut := ctl(t, append([]string{"-socket", sock}, cmd...)...)
			if code != exitForbidden || out != "" || errOut != "aiboctl: forbidden: this user is not allowed on the diagnostic socket\n" {
				t.Errorf("%v: exit %d stdout %q stderr %q", cmd, code, out, errOut)
			}
		}
	})
	t.Run("internal", func(t *testing.T) {
		fb := newCLIBackend()
		fb.statusErr = errors.New("disk on fire")
		sock := cliServe(t, fb)
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

// aiboctl takes every limit the server takes, and refuses one over it.
func TestAiboctlLimitMatchesServer(t *testing.T) {
	sock := cliServe(t, newCLIBackend())
	if code, _, errOut := ctl(t, "-socket", sock, "audit", "-limit", strconv.Itoa(MaxAuditLimit)); code != 0 {
		t.Errorf("limit %d: exit %d %s", MaxAuditLimit, code, errOut)
	}
	if code, _, _ := ctl(t, "-socket", sock, "audit", "-limit", strconv.Itoa(MaxAuditLimit+1)); code != exitUsage {
		t.Errorf("limit %d: exit %d, want usage", MaxAuditLimit+1, code)
	}
}

// status shows the uptime as a duration, and the firmware once.
func TestAiboctlStatusShowsUptimeAsADuration(t *testing.T) {
	fb := newCLIBackend()
	fb.status = map[string]any{"device_id": "aibo-0001", "uptime_seconds": 6190.309681119,
		"firmware": map[string]any{"version": "1.0.0", "staged": ""}, "firmware_update": map[string]any{"highest": "1.0.0"}}
	sock := cliServe(t, fb)
	code, out, _ := ctl(t, "-socket", sock, "status")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	cliMatch(t, out, `(?m)^uptime +1h43m10s$`)
	if strings.Contains(out, "uptime_seconds") {
		t.Errorf("seconds shown as a float:\n%s", out)
	}
	// --json keeps the daemon's numbers.
	if _, out, _ := ctl(t, "-socket", sock, "status", "--json"); !strings.Contains(out, `"uptime_seconds": 6190.309681119`) {
		t.Errorf("--json changed the answer:\n%s", out)
	}
}

type cliInventory struct {
	*cliBackend
	inv string
}

func (cliInventory) Queue(context.Context) (any, error) { return map[string]any{}, nil }
func (f cliInventory) Inventory(context.Context) (any, error) {
	return json.RawMessage(f.inv), nil
}
func (cliInventory) Selftest(context.Context) Health { return Health{Status: "ok"} }

// inventory never prints "subjects null": an empty household is "none",
// people are rows of opaque ids.
func TestAiboctlInventoryTables(t *testing.T) {
	empty := `{"generated_at":"2026-12-01T10:00:00Z","categories":{"photos":{"count":2,"bytes":4096,"oldest_age_seconds":3700,"newest_age_seconds":65,"erased_by":"the day's selection"},"consents":{"count":0,"erased_by":"revoke_consent"}},"subjects":null}`
	sock := cliServe(t, cliInventory{newCLIBackend(), empty})
	code, out, _ := ctl(t, "-socket", sock, "inventory")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	cliMatch(t, out, `(?m)^photos +2 +4096 +1h1m40s +1m5s +the day's selection$`)
	cliMatch(t, out, `(?m)^subjects: none$`)
	if strings.Contains(out, "null") {
		t.Errorf("null shown:\n%s", out)
	}
	one := `{"categories":{"faces":{"count":5,"erased_by":"revoke_consent"}},"subjects":[{"subject_id":"s-7","consent":true,"scopes":["face_recognition"],"minor":false,"templates":5,"sightings":2,"queued_artifacts":1}]}`
	sock = cliServe(t, cliInventory{newCLIBackend(), one})
	_, out, _ = ctl(t, "-socket", sock, "inventory")
	cliMatch(t, out, `(?m)^s-7 +true +face_recognition +false +5 +2 +1 +-$`)
}
