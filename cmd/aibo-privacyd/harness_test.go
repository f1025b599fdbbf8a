package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/escape"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
)

// The end-to-end tests drive the real daemon binary through its contract:
// the spool, MQTT on a real Mosquitto, and the diagnostic socket via aiboctl.

var binDir string

// faceModels is the absolute path of build/models, where make setup
// converts the face nets.
var faceModels string

// withoutLandlockEnv makes this test binary a wrapper: it hides Landlock
// from itself (a seccomp filter answers ENOSYS, as on a kernel without
// it) and execs the daemon named there, with its own arguments.
const withoutLandlockEnv = "AIBO_E2E_EXEC_WITHOUT_LANDLOCK"

func TestMain(m *testing.M) {
	if daemon := os.Getenv(withoutLandlockEnv); daemon != "" {
		err := escape.WithoutLandlock()
		if err == nil {
			err = syscall.Exec(daemon, append([]string{daemon}, os.Args[1:]...), os.Environ())
		}
		fmt.Fprintln(os.Stderr, "without Landlock:", err)
		os.Exit(125)
	}
	if mode := hostileMode(); mode != "" {
		os.Exit(hostileWorker(mode))
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "aibo-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Tests run the daemon with the race detector; benchmarks measure the
	// binary as shipped.
	flags := []string{"build", "-race", "-o", dir + "/"}
	if f := flag.Lookup("test.bench"); (f != nil && f.Value.String() != "") || os.Getenv("E2E_NO_RACE") != "" {
		flags = []string{"build", "-o", dir + "/"}
	}
	builds := [][]string{append(flags, "."), append(flags, "../aiboctl"),
		// The vision worker links OpenCV; the race detector adds nothing
		// to a process that holds no shared Go state with the daemon.
		{"build", "-o", dir + "/", "../aibo-vision"}}
	for _, args := range builds {
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go %v: %v\n%s", args, err, out)
			os.Exit(1)
		}
	}
	binDir = dir
	// The worker needs the converted face nets; make test runs make setup
	// first.
	if faceModels, err = filepath.Abs(filepath.Join("..", "..", "build", "models", "SHA256SUMS")); err == nil {
		_, err = os.Stat(faceModels)
		faceModels = filepath.Dir(faceModels)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "face models: %v\nrun make setup: it fetches face-api and converts its nets into build/models\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rig is one device: its directories, config and (when running) process.
type rig struct {
	t        *testing.T
	broker   *testbroker.Broker
	deviceID string
	dataDir  string
	spool    string
	socket   string
	config   string
	extra    string   // appended YAML
	env      []string // added to the daemon's environment
	// noLandlock runs the daemon on what looks like a kernel without
	// Landlock (withoutLandlockEnv).
	noLandlock bool
	cmd        *exec.Cmd
	// daemon, when set, is the daemon binary to run instead of binDir's
	// (shippedDaemon: built without the race detector).
	daemon  string
	exited  chan struct{}
	logs    *testlog.Buffer
	allLogs []string
}

func newRig(t *testing.T, b *testbroker.Broker, extraYAML string) *rig {
	t.Helper()
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "aibo-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	r := &rig{t: t, broker: b, deviceID: "e2e-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"),
		dataDir: filepath.Join(dir, "data"), spool: filepath.Join(dir, "spool"),
		socket: filepath.Join(sockDir, "diag.sock"), config: filepath.Join(dir, "config.yaml"), extra: extraYAML}
	if len(r.deviceID) > 64 {
		r.deviceID = r.deviceID[:64]
	}
	for _, d := range []string{r.spool + "/photos", r.spool + "/frames"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	broker := "tcp://127.0.0.1:1"
	if b != nil {
		broker = b.URL
	}
	// A test's own mqtt: block gets the broker added; otherwise the rig
	// writes one.
	mqttBlock := "mqtt:\n  broker: " + broker + "\n"
	// Uploads go as fast as the test broker acknowledges unless the test
	// sets a pace: the shipped 256 KiB/s would add a minute to the tests
	// that upload 12-megapixel photos and prove nothing they assert. The
	// pace is proven by sync/outbox's TestPacedSendsStayUnderTheRate and
	// by the tests here that set one.
	if !strings.Contains(extraYAML, "max_send_rate:") {
		mqttBlock += "  max_send_rate: 0\n"
	}
	if strings.Contains(extraYAML, "mqtt:\n") {
		extraYAML = strings.Replace(extraYAML, "mqtt:\n", mqttBlock, 1)
		mqttBlock = ""
	}
	// Every rig's worker gets the face nets make setup converted (before
	// the diag block, which some tests extend at the end of the file),
	// unless the test gives a vision: block of its own.
	visionBlock := "vision:\n  face_models_dir: " + faceModels + "\n"
	if strings.Contains(extraYAML, "vision:\n") {
		visionBlock = "" // the test's own, whole
	}
	cfg := fmt.Sprintf(`device_id: %s
data_dir: %s
spool_dir: %s
timezone: America/Los_Angeles
region: US-CA
log_level: debug
%s%sdiag:
  socket: %s
%s`, r.deviceID, r.dataDir, r.spool, mqttBlock, visionBlock, r.socket, extraYAML)
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.cmd != nil {
			r.kill()
		}
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("daemon logs:\n%s", strings.Join(append(r.allLogs, r.logs.String()), "\n--- restart ---\n"))
		}
	})
	return r
}

// start runs the daemon and waits until its diagnostic socket answers.
func (r *rig) start() {
	r.t.Helper()
	if r.logs != nil {
		r.allLogs = append(r.allLogs, r.logs.String())
	}
	r.logs = &testlog.Buffer{}
	daemon := filepath.Join(binDir, "aibo-privacyd")
	if r.daemon != "" {
		daemon = r.daemon
	}
	r.cmd = exec.Command(daemon, "-config", r.config)
	// The daemon talks to systemd only when a test asks (r.env), never to
	// a systemd the test runner may run under.
	r.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET=", "WATCHDOG_USEC="), r.env...)
	if r.noLandlock {
		r.cmd.Args[0] = os.Args[0]
		r.cmd.Path = os.Args[0]
		r.cmd.Env = append(r.cmd.Env, withoutLandlockEnv+"="+filepath.Join(binDir, "aibo-privacyd"))
	}
	r.cmd.Stdout = r.logs
	r.cmd.Stderr = r.logs
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(r.cmd, r.exited)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			r.t.Fatalf("daemon exited at start: %s", r.logs.String())
		default:
		}
		// Any answer will do: ok, degraded (1), forbidden (4), an error (5).
		if _, code := r.ctl("health", "--json"); code == 0 || code == 1 || code == 4 || code == 5 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("daemon not answering on %s", r.socket)
}

// waitHealthy waits until /v1/health says ok: right after a start the
// vision check is not done yet (it starts a worker with its nets).
func (r *rig) waitHealthy(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, code := r.ctl("health")
		if code == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not healthy within %s: exit %d\n%s", d, code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitConnected waits until the running daemon logs its MQTT connection
// and returns its log lines. A test that restarts the daemon in quick
// succession makes it keep a crash loop's backoff (sync/link), whose wait
// grows to a draw of up to 30 s, longer than a command's retries last.
func (r *rig) waitConnected(d time.Duration) []map[string]any {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		lines := logLines(r.t, r.logs.String())
		if findLog(lines, "mqtt connected", nil) != nil {
			return lines
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not connected to the broker within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit 0 within the shutdown bound.
func (r *rig) stop() {
	r.t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.t.Fatal("daemon did not stop within 10 s of SIGTERM")
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		r.t.Fatalf("daemon exit code %d after SIGTERM", code)
	}
	r.cmd = nil
}

// kill is kill -9: no chance to clean up.
func (r *rig) kill() {
	r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// ctl runs aiboctl against the rig's socket.
func (r *rig) ctl(args ...string) (string, int) {
	cmd := exec.Command(filepath.Join(binDir, "aiboctl"), append([]string{"-socket", r.socket}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return out.String(), code
}

// status is /v1/status as JSON.
func (r *rig) status() map[string]any {
	r.t.Helper()
	out, code := r.ctl("status", "--json")
	if code != 0 {
		r.t.Fatalf("aiboctl status: exit %d: %s", code, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		r.t.Fatalf("aiboctl status --json: %v: %s", err, out)
	}
	return m
}

// counts is photos_today from /v1/status.
type counts struct {
	Day                                                    string
	Admitted, Refused, OverCap, Invalid, Uploaded, Deleted int
}

func (r *rig) today() counts {
	r.t.Helper()
	raw, _ := json.Marshal(r.status()["photos_today"])
	var c struct {
		Day      string `json:"day"`
		Admitted int    `json:"admitted"`
		Refused  int    `json:"refused"`
		OverCap  int    `json:"over_cap"`
		Invalid  int    `json:"invalid"`
		Uploaded int    `json:"uploaded"`
		Deleted  int    `json:"deleted"`
	}
	json.Unmarshal(raw, &c)
	return counts{c.Day, c.Admitted, c.Refused, c.OverCap, c.Invalid, c.Uploaded, c.Deleted}
}

func (c counts) decided() int { return c.Admitted + c.Refused + c.OverCap + c.Invalid }

// spoolCount is the number of files left in spool/photos.
func (r *rig) spoolCount() int {
	entries, _ := os.ReadDir(filepath.Join(r.spool, "photos"))
	return len(entries)
}

// waitSpoolEmpty fails unless the spool empties within d.
func (r *rig) waitSpoolEmpty(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if r.spoolCount() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("%d files still in the spool after %s", r.spoolCount(), d)
}

// drop writes photos the way the camera does: a temporary name, then a
// rename to the final one.
func (r *rig) drop(name string, data []byte) {
	r.t.Helper()
	dir := filepath.Join(r.spool, "photos")
	tmp := filepath.Join(dir, "."+name+".part")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		r.t.Fatal(err)
	}
}

// photos returns n real JPEGs from testdata, cycling through the set.
func photos(t *testing.T, n int) [][]byte {
	t.Helper()
	files, err := filepath.Glob("../../testdata/photos/*.jpg")
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata photos missing: %v", err)
	}
	out := make([][]byte, n)
	for i := range out {
		b, err := os.ReadFile(files[i%len(files)])
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// app is the owner's phone app (and the cloud) on the broker.
type app struct {
	t        *testing.T
	c        *testbroker.Client
	results  *testbroker.Sub
	states   *testbroker.Sub
	events   *testbroker.Sub
	status   *testbroker.Sub
	deviceID string
}

func newApp(t *testing.T, b *testbroker.Broker, deviceID string) *app {
	c := b.Client(t)
	p := "aibo/" + deviceID + "/"
	return &app{t: t, c: c, deviceID: deviceID,
		results: c.Subscribe(t, p+"cmd/result"), states: c.Subscribe(t, p+"state"),
		events: c.Subscribe(t, p+"events"), status: c.Subscribe(t, p+"status")}
}

func (a *app) topic(s string) string { return "aibo/" + a.deviceID + "/" + s }

type result struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Result json.RawMessage `json:"result"`
}

// send publishes a command and waits for its result.
func (a *app) send(id, typ string, payload any) result {
	a.t.Helper()
	raw, _ := json.Marshal(map[string]any{"id": id, "type": typ, "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": payload})
	return a.sendRaw(id, raw)
}

func (a *app) sendRaw(id string, raw []byte) result {
	a.t.Helper()
	a.c.Publish(a.t, a.topic("cmd"), raw, false)
	var r result
	match := func(m testbroker.Message) bool {
		var got result
		return json.Unmarshal(m.Payload, &got) == nil && got.ID == id && json.Unmarshal(m.Payload, &r) == nil
	}
	// A command published before the daemon's (clean) session has
	// subscribed is lost: right after a start or a reconnect, more often
	// on a loaded machine or a slower broker (RabbitMQ). Send the same id
	// again, as an app would; a repeated id gets the stored result and no
	// second effect.
	for range 10 {
		if a.results.WaitWithin(time.Second, match) {
			return r
		}
		a.c.Publish(a.t, a.topic("cmd"), raw, false)
	}
	a.results.WaitFor(a.t, time.Second, match)
	return r
}

// must sends a command that has to succeed.
func (a *app) must(id, typ string, payload any) {
	a.t.Helper()
	if r := a.send(id, typ, payload); !r.OK {
		a.t.Fatalf("%s %s: %+v", typ, id, r.Error)
	}
}

// state waits for a reported state that satisfies ok.
func (a *app) state(ok func(map[string]any) bool) map[string]any {
	a.t.Helper()
	var st map[string]any
	a.states.WaitFor(a.t, 10*time.Second, func(m testbroker.Message) bool {
		var s map[string]any
		if json.Unmarshal(m.Payload, &s) != nil || !ok(s) {
			return false
		}
		st = s
		return true
	})
	return st
}

// runOnce runs the daemon binary to completion (for config errors).
func runOnce(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "aibo-privacyd"), args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("daemon kept running on a bad config")
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

var (
	shippedOnce sync.Once
	shippedPath string
	shippedErr  error
)

// shippedDaemon builds, once, the daemon as it ships (no race detector,
// whose shadow memory would be measured with it) for tests that bound its
// memory.
func shippedDaemon(t *testing.T) string {
	t.Helper()
	shippedOnce.Do(func() {
		dir := filepath.Join(binDir, "shipped")
		if shippedErr = os.MkdirAll(dir, 0o755); shippedErr != nil {
			return
		}
		if out, err := exec.Command("go", "build", "-o", dir+"/", ".").CombinedOutput(); err != nil {
			shippedErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		shippedPath = filepath.Join(dir, "aibo-privacyd")
	})
	if shippedErr != nil {
		t.Fatal(shippedErr)
	}
	return shippedPath
}
