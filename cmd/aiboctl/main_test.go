package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

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

func ctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
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
