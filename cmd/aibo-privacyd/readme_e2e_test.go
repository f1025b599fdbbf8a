package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/readme"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// readmeCheckout is a scratch folder laid out like a checkout for the
// README's commands: configs/dev.yaml with the test broker's port for
// 18830, bin/ holding the binaries built for these tests, and testdata/
// and build/ (the face nets) of this checkout. Its path is short: the
// daemon's socket path must fit.
func readmeCheckout(t *testing.T, port string) string {
	t.Helper()
	work, err := os.MkdirTemp("", "flow")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	dev, err := os.ReadFile("../../configs/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(work, "configs"), 0o755)
	os.WriteFile(filepath.Join(work, "configs/dev.yaml"), []byte(strings.ReplaceAll(string(dev), "18830", port)), 0o644)
	for link, target := range map[string]string{"bin": binDir, "testdata": "../../testdata", "build": "../../build"} {
		abs, _ := filepath.Abs(target)
		if err := os.Symlink(abs, filepath.Join(work, link)); err != nil {
			t.Fatal(err)
		}
	}
	return work
}

// readmeScript is the README block as a bash script run in work: set -e,
// background jobs killed at the end, and start_daemon CONFIG standing for
// make run CONFIG=... (the daemon in the background, its log in
// var/daemon.log, once its socket answers).
func readmeScript(work, block string) string {
	return fmt.Sprintf(`set -euo pipefail
cd %q
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
start_daemon() {
  mkdir -p var/spool/photos var/spool/frames
  bin/aibo-privacyd -config "$1" 2>var/daemon.log &
  for _ in $(seq 100); do
    bin/aiboctl -socket var/diag.sock health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "daemon not answering" >&2; cat var/daemon.log >&2; return 1
}
`, work) + block
}

// P16: the README's signed flow works as written. Its block is run line by
// line in a scratch folder against a real Mosquitto; only what ties it to
// this machine is substituted: the broker's port, the tools already built
// (`go run ./scripts/X` and `bin/`) and `make run CONFIG=...`, which starts
// the daemon with that config in the background instead of a terminal.
func TestREADMESignedFlowWorksAsWritten(t *testing.T) {
	flow := readme.For(t)[0].Text
	tools := t.TempDir()
	for _, tool := range []string{"sign-command", "sign-firmware"} {
		if out, err := exec.Command("go", "build", "-o", tools+"/", "../../scripts/"+tool).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", tool, err, out)
		}
	}
	b := testbroker.Start(t)
	port := strconv.Itoa(b.Port)
	work := readmeCheckout(t, port)
	script := strings.NewReplacer(
		"go run ./scripts/", tools+"/",
		"18830", port,
	).Replace(flow)
	script = regexp.MustCompile(`(?m)^make run CONFIG=(\S+).*$`).ReplaceAllString(script, "start_daemon $1")
	if strings.Count(script, "start_daemon ") != 1 {
		t.Fatalf("the flow no longer starts the daemon with make run CONFIG=:\n%s", flow)
	}

	cloud := b.Client(t)
	results := cloud.Subscribe(t, "aibo/aibo-dev/cmd/result")
	events := cloud.Subscribe(t, "aibo/aibo-dev/events")
	cmd := exec.Command("bash", "-c", readmeScript(work, script)+"\nsleep 1\n")
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(work, "var/daemon.log"))
	if err != nil {
		t.Fatalf("the flow failed: %v\n%s\ndaemon log:\n%s", err, out, log)
	}
	// In the order the flow sends them (WaitFor reads on from the last match).
	for _, w := range [][2]string{{"s1", ""}, {"u1", "unsigned"}, {"f1", "bad_signature"}} {
		id, code := w[0], w[1]
		results.WaitFor(t, 10*time.Second, func(m testbroker.Message) bool {
			var r result
			if json.Unmarshal(m.Payload, &r) != nil || r.ID != id {
				return false
			}
			if code == "" && !r.OK || code != "" && (r.OK || r.Error.Code != code) {
				t.Errorf("%s: %s, want %q", id, m.Payload, code)
			}
			return true
		})
	}
	results.WaitFor(t, 10*time.Second, func(m testbroker.Message) bool {
		var r result
		if json.Unmarshal(m.Payload, &r) != nil || !strings.HasPrefix(r.ID, "fw-1.1.0-") {
			return false
		}
		if !r.OK {
			t.Errorf("the signed firmware offer was refused: %s", m.Payload)
		}
		return true
	})
	events.WaitFor(t, 15*time.Second, func(m testbroker.Message) bool {
		return strings.Contains(string(m.Payload), `"type":"firmware_staged"`) && strings.Contains(string(m.Payload), `"version":"1.1.0"`)
	})
	for _, refused := range []string{`"type":"select_photos","code":"unsigned"`, `"type":"select_photos","code":"bad_signature"`} {
		if !strings.Contains(string(log), refused) {
			t.Errorf("the daemon's log lacks a refusal with %s", refused)
		}
	}
	if !strings.Contains(string(out), "firmware_staged") {
		t.Errorf("the audit the flow ends with does not show the staged firmware:\n%s", out)
	}
	for _, f := range []string{"owner.key", "fw.key"} {
		if st, err := os.Stat(filepath.Join(work, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v (want a private key, mode 0600)", f, err)
		}
	}
}

// The README's first flow, run as written while make run runs (here the
// daemon with configs/dev.yaml started the way make run starts it, in a
// scratch checkout, against a real Mosquitto on a free port for 18830):
// the smiling face is kept and queued for upload, the launch pad deleted
// under photos.min_score, and the technician's status answers.
func TestREADMEMakeRunFlowWorksAsWritten(t *testing.T) {
	flow := readme.For(t)[0].Text
	b := testbroker.Start(t)
	port := strconv.Itoa(b.Port)
	work := readmeCheckout(t, port)
	script := readmeScript(work, "start_daemon configs/dev.yaml\n"+strings.ReplaceAll(flow, "18830", port))
	// select_photos answers "started"; the selection and the upload it
	// queues follow. Wait for the upload in the log (up to 60 s, a loaded
	// machine) before the script's end stops the daemon.
	waitSent := "for _ in $(seq 600); do grep -q '\"msg\":\"artifact sent\"' var/daemon.log && break; sleep 0.1; done\n"
	out, err := exec.Command("bash", "-c", script+waitSent).CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(work, "var/daemon.log"))
	if err != nil {
		t.Fatalf("the flow failed: %v\n%s\ndaemon log:\n%s", err, out, log)
	}
	for _, want := range []string{
		`"msg":"photo kept by selection".*"rank":1`,
		`"msg":"photo deleted by selection".*"rank":2,"reason":"below_min_score"`,
		`"msg":"artifact sent".*"kind":"photo"`,
	} {
		if !regexp.MustCompile(want).Match(log) {
			t.Errorf("the daemon's log lacks %s:\n%s", want, log)
		}
	}
	for _, want := range []string{`"id":"1","ok":true`, `"id":"2","ok":true`, `"id":"3","ok":true`, "photos_today.admitted        2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the flow's output lacks %q:\n%s", want, out)
		}
	}
}
