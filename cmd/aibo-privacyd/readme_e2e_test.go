package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// readmeBlock returns the first ```sh block after heading in the README.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	end := strings.Index(s[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatalf("no sh block under %q", heading)
	}
	return s[start+6 : start+6+end]
}

// P16: the README's signed flow works as written. Its block is run line by
// line in a scratch folder against a real Mosquitto; only what ties it to
// this machine is substituted: the broker's port, the tools already built
// (`go run ./scripts/X` and `bin/`) and `make run CONFIG=...`, which starts
// the daemon with that config in the background instead of a terminal.
func TestREADMESignedFlowWorksAsWritten(t *testing.T) {
	flow := readmeBlock(t, "### Trying signed commands and firmware by hand")
	tools := t.TempDir()
	for _, tool := range []string{"sign-command", "sign-firmware"} {
		if out, err := exec.Command("go", "build", "-o", tools+"/", "../../scripts/"+tool).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", tool, err, out)
		}
	}
	b := testbroker.Start(t)
	port := strings.TrimPrefix(b.URL[strings.LastIndex(b.URL, ":"):], ":")
	work, err := os.MkdirTemp("", "flow") // short: the socket path must fit
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

	script := strings.NewReplacer(
		"go run ./scripts/", tools+"/",
		"bin/aiboctl", filepath.Join(binDir, "aiboctl"),
		"18830", port,
	).Replace(flow)
	script = regexp.MustCompile(`(?m)^make run CONFIG=(\S+).*$`).ReplaceAllString(script, "start_daemon $1")
	if strings.Count(script, "start_daemon ") != 1 {
		t.Fatalf("the flow no longer starts the daemon with make run CONFIG=:\n%s", flow)
	}
	preamble := fmt.Sprintf(`set -euo pipefail
cd %q
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
start_daemon() {
  %q -config "$1" 2>var/daemon.log &
  for _ in $(seq 100); do
    rc=0; %q -socket var/diag.sock health >/dev/null 2>&1 || rc=$?
    [ "$rc" -le 1 ] && return 0 # it answers, ok or degraded (no face nets in this copy)
    sleep 0.1
  done
  echo "daemon not answering" >&2; cat var/daemon.log >&2; return 1
}
`, work, filepath.Join(binDir, "aibo-privacyd"), filepath.Join(binDir, "aiboctl"))

	cloud := b.Client(t)
	results := cloud.Subscribe(t, "aibo/aibo-dev/cmd/result")
	events := cloud.Subscribe(t, "aibo/aibo-dev/events")
	cmd := exec.Command("bash", "-c", preamble+script+"\nsleep 1\n")
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
