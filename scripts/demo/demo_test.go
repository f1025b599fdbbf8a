package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// make demo failed 2 runs in 3 (a paho callback waited on a publish, which
// deadlocks the client). It has to work every time: ten runs in a row,
// each with fresh state, each ending with the table and the contact sheet.
func TestMakeDemoWorksTenTimesInARow(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, pkg := range []string{"./cmd/aibo-privacyd", "./cmd/aiboctl", "./cmd/aibo-vision", "./cmd/bestshot", "./scripts/demo"} {
		cmd := exec.Command("go", "build", "-o", bin+"/", pkg)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	for run := 1; run <= 10; run++ {
		dir, err := os.MkdirTemp("", "demo") // short: the socket path must fit
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		port := freePort(t)
		cmd := exec.Command("scripts/demo.sh")
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "DEMO_DIR="+dir, "DEMO_PORT="+strconv.Itoa(port), "BIN="+bin, "DEMO_BIN="+filepath.Join(bin, "demo"))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			t.Fatalf("run %d: %v\n%s\ndaemon.log:\n%s", run, err, out, log)
		}
		t.Logf("run %d: %s", run, time.Since(start).Round(10*time.Millisecond))
		for _, want := range []string{
			`(?m)^PHOTO +DECISION +SCORE +RANK +WHY$`,
			`(?m)^portrait\.jpg +kept +0\.\d+ +1 +uploaded: ` + regexp.QuoteMeta(dir) + `/cloud/[0-9a-f]+\.jpg$`,
			`(?m)^rocket\.jpg +deleted +0\.1\d\d +\d +scored under photos\.min_score \(below_min_score\)$`,
			`(?m)^portrait-noisy\.jpg +deleted .*near-duplicate`,
			`contact sheet .*: ` + regexp.QuoteMeta(dir) + `/sheet\.png`,
		} {
			if !regexp.MustCompile(want).Match(out) {
				t.Fatalf("run %d: output lacks %s:\n%s", run, want, out)
			}
		}
		if st, err := os.Stat(filepath.Join(dir, "sheet.png")); err != nil || st.Size() == 0 {
			t.Fatalf("run %d: no contact sheet: %v", run, err)
		}
		log, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
		if n := strings.Count(string(log), `"msg":"photo admitted"`); n != 6 {
			t.Fatalf("run %d: daemon.log has %d admissions, want 6 (log level info):\n%s", run, n, log)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// make demo while another program holds its port (make run's broker took
// 18830 and the demo talked to it, timing out with the wrong log): it
// says the port is taken and starts nothing.
func TestMakeDemoSaysWhenItsPortIsTaken(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	dir, err := os.MkdirTemp("", "demo")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("scripts/demo.sh")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "DEMO_DIR="+dir, "DEMO_PORT="+port, "BIN=/nonexistent", "DEMO_BIN=/nonexistent")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("make demo on a taken port did not end within 10 s")
	}
	if err == nil || !strings.Contains(string(out), "port "+port+" (DEMO_PORT) is taken") {
		t.Fatalf("make demo on a taken port: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "broker.log")); err == nil {
		t.Error("a broker was started anyway")
	}
}
