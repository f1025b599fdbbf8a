package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
)

// make run | jq works: standard output carries the daemon's JSON lines and
// nothing else (the broker logs to a file, the hints go to standard
// error), and the README's mosquitto_sub shows the traffic without the
// JPEG chunks.
func TestMakeRunPrintsOnlyJSONAndTheREADMESubscriptionSkipsChunks(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	dir, err := os.MkdirTemp("", "run")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dev, err := os.ReadFile("../../configs/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("18830", port, "./var/", dir+"/").Replace(string(dev))
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	repo, _ := filepath.Abs("../..")
	run := exec.Command("scripts/run-dev.sh", cfgPath)
	run.Dir = repo
	run.Env = append(os.Environ(), "RUN_DIR="+dir, "RUN_PORT="+port, "BIN="+binDir)
	var stdout, stderr testlog.Buffer // read while the script writes
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill()
	ctl := func(args ...string) error {
		return exec.Command(filepath.Join(binDir, "aiboctl"), append([]string{"-socket", filepath.Join(dir, "diag.sock")}, args...)...).Run()
	}
	deadline := time.Now().Add(15 * time.Second)
	for ctl("health") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("make run's daemon never answered:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The README's first mosquitto_sub, against this broker.
	readme, _ := os.ReadFile("../../README.md")
	var subLine string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "mosquitto_sub -p 18830 -t 'aibo/aibo-dev/#'") {
			subLine = line
			break
		}
	}
	if subLine == "" {
		t.Fatal("no mosquitto_sub in the README's first flow")
	}
	if i := strings.Index(subLine, " # "); i > 0 {
		subLine = subLine[:i]
	}
	subLine = strings.ReplaceAll(subLine, "18830", port)
	var seen bytes.Buffer
	sub := exec.Command("sh", "-c", subLine+" -W 3")
	sub.Stdout = &seen
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	pub := func(topic, msg string) {
		if out, err := exec.Command("mosquitto_pub", "-p", port, "-t", topic, "-m", msg).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	pub("aibo/aibo-dev/artifacts/a1/chunk/0", "\xff\xd8JPEG BYTES")
	pub("aibo/aibo-dev/artifacts/a1/meta", `{"artifact_id":"a1"}`)
	pub("aibo/aibo-dev/cmd", `{"id":"1","type":"accept_policy","payload":{"version":"2026-11"}}`)
	sub.Wait()
	if !strings.Contains(seen.String(), "aibo/aibo-dev/artifacts/a1/meta") || strings.Contains(seen.String(), "JPEG BYTES") {
		t.Errorf("the README's mosquitto_sub showed:\n%s", seen.String())
	}

	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), `"msg":"command done"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no command done line on stdout:\n%s", stdout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	run.Process.Signal(syscall.SIGTERM)
	run.Wait()
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	lines := 0
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Errorf("stdout line is not JSON (jq would stop here): %q", sc.Text())
		}
		lines++
	}
	if lines < 3 {
		t.Errorf("only %d lines on stdout", lines)
	}
	if !regexp.MustCompile(`run: daemon with .*unsigned commands accepted`).MatchString(stderr.String()) {
		t.Errorf("stderr does not say the commands are unsigned:\n%s", stderr.String())
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log")); !strings.Contains(string(log), "mosquitto version") {
		t.Errorf("the broker's log is not in RUN_DIR/mosquitto.log: %q", log)
	}
}
