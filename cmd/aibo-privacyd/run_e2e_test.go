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
	subLine = strings.TrimSuffix(strings.TrimSpace(subLine), "&") // run in the background in the README
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

// make run stops its broker however it ends: a config the daemon refuses
// (the EXIT trap used to stop at its first failing kill under set -e and
// left Mosquitto running), Ctrl-C, or SIGTERM; and it says so plainly
// when its port is taken instead of talking to another broker.
func TestMakeRunStopsItsBrokerOnEveryExit(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	dev, err := os.ReadFile("../../configs/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	freePort := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}
	type run struct {
		cmd        *exec.Cmd
		out        *testlog.Buffer
		port, dir  string
		exited     chan struct{}
		exitStatus error
	}
	// start runs make run's script in a process group of its own, which
	// the test kills whatever happens.
	start := func(t *testing.T, port, extra string) *run {
		dir, err := os.MkdirTemp("", "run")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		cfg := strings.NewReplacer("18830", port, "./var/", dir+"/").Replace(string(dev)) + extra
		cfgPath := filepath.Join(dir, "config.yaml")
		os.WriteFile(cfgPath, []byte(cfg), 0o600)
		r := &run{cmd: exec.Command("scripts/run-dev.sh", cfgPath), out: &testlog.Buffer{}, port: port, dir: dir, exited: make(chan struct{})}
		r.cmd.Dir = repo
		r.cmd.Env = append(os.Environ(), "RUN_DIR="+dir, "RUN_PORT="+port, "BIN="+binDir)
		r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { r.exitStatus = r.cmd.Wait(); close(r.exited) }()
		t.Cleanup(func() { syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL) })
		return r
	}
	ended := func(t *testing.T, r *run, within time.Duration) error {
		t.Helper()
		select {
		case <-r.exited:
			return r.exitStatus
		case <-time.After(within):
			t.Fatalf("make run did not end within %v:\n%s", within, r.out)
			return nil
		}
	}
	// brokerGone: no process runs this run's broker config, and its port
	// refuses connections.
	brokerGone := func(t *testing.T, r *run) {
		t.Helper()
		conf := filepath.Join(r.dir, "mosquitto.conf")
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), conf) {
				t.Errorf("the broker still runs (%s: %q)", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			}
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+r.port, time.Second); err == nil {
			c.Close()
			t.Errorf("port %s still accepts after make run ended", r.port)
		}
	}

	t.Run("a config the daemon refuses", func(t *testing.T) {
		r := start(t, freePort(t), "typo_key: 1\n")
		if err := ended(t, r, 15*time.Second); err == nil {
			t.Fatalf("make run with a bad config exited 0:\n%s", r.out)
		}
		if !strings.Contains(r.out.String(), "typo_key") {
			t.Errorf("the daemon's refusal does not name the key:\n%s", r.out)
		}
		brokerGone(t, r)
	})
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			r := start(t, freePort(t), "")
			sock := filepath.Join(r.dir, "diag.sock")
			for deadline := time.Now().Add(15 * time.Second); exec.Command(filepath.Join(binDir, "aiboctl"), "-socket", sock, "health").Run() != nil; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("make run's daemon never answered:\n%s", r.out)
				}
			}
			r.cmd.Process.Signal(sig) // the script alone, not its group
			ended(t, r, 15*time.Second)
			brokerGone(t, r)
			if _, err := os.Stat(sock); err == nil {
				t.Error("the daemon's socket is still there: the daemon was not stopped")
			}
		})
	}
	t.Run("the port is taken", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		taken := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		r := start(t, taken, "")
		if err := ended(t, r, 15*time.Second); err == nil || !strings.Contains(r.out.String(), "port "+taken+" is taken") {
			t.Fatalf("make run on a taken port: %v\n%s", err, r.out)
		}
		if _, err := os.Stat(filepath.Join(r.dir, "diag.sock")); err == nil {
			t.Error("a daemon was started against the other program's port")
		}
	})
}
