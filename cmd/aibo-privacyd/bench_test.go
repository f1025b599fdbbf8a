package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// The figures in the README come from these benchmarks:
//   go test -run '^$' -bench . -benchtime 20x ./cmd/aibo-privacyd/

// BenchmarkStartupToHealthySocket measures the time from exec to the
// first answer on /v1/health (ready: what Type=notify's READY=1 marks),
// and to the first 200 (healthy: every check ok, with a broker up; the
// vision check waits until a worker has started and loaded its nets).
func BenchmarkStartupToHealthySocket(b *testing.B) {
	br := testbroker.Start(b)
	var ready, healthy []time.Duration
	for i := 0; i < b.N; i++ {
		r := newBenchRig(b, br)
		start := time.Now()
		cmd := exec.Command(filepath.Join(binDir, "aibo-privacyd"), "-config", r.config)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		c := unixClient(r.socket)
		answered := false
		for {
			resp, err := c.Get("http://diag/v1/health")
			if err == nil {
				resp.Body.Close()
				if !answered {
					answered = true
					ready = append(ready, time.Since(start))
				}
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Since(start) > 10*time.Second {
				b.Fatal("daemon not healthy in 10 s")
			}
			time.Sleep(200 * time.Microsecond)
		}
		healthy = append(healthy, time.Since(start))
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	reportPercentiles(b, ready, "ready")
	reportPercentiles(b, healthy, "healthy")
}

// BenchmarkIdleRSS reports the resident memory of the daemon after it has
// started, connected and sat idle for two seconds.
func BenchmarkIdleRSS(b *testing.B) {
	br := testbroker.Start(b)
	var worst int
	for i := 0; i < b.N; i++ {
		r := newBenchRig(b, br)
		cmd := exec.Command(filepath.Join(binDir, "aibo-privacyd"), "-config", r.config)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if rss := procKB(b, cmd.Process.Pid, "VmRSS:"); rss > worst {
			worst = rss
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	b.ReportMetric(float64(worst)/1024, "idle-RSS-MiB")
}

// BenchmarkCommandRoundTrip measures publish-to-result through Mosquitto:
// the app publishes set_features, the daemon commits it and answers.
func BenchmarkCommandRoundTrip(b *testing.B) {
	br := testbroker.Start(b)
	r := newBenchRig(b, br)
	cmd := exec.Command(filepath.Join(binDir, "aibo-privacyd"), "-config", r.config)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	c := br.Client(b)
	results := c.Subscribe(b, "aibo/bench/cmd/result")
	send := func(id string, typ string, payload string) {
		c.Publish(b, "aibo/bench/cmd", []byte(`{"id":"`+id+`","type":"`+typ+`","payload":`+payload+`}`), false)
		results.WaitFor(b, 10*time.Second, func(m testbroker.Message) bool {
			var r struct{ ID string }
			return json.Unmarshal(m.Payload, &r) == nil && r.ID == id
		})
	}
	// The daemon subscribes shortly after start: retry the first command.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.Publish(b, "aibo/bench/cmd", []byte(`{"id":"warm","type":"accept_policy","payload":{"version":"v1"}}`), false)
		got := false
		for _, m := range results.All() {
			if strings.Contains(string(m.Payload), `"warm"`) {
				got = true
			}
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("daemon never answered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		send("rt-"+strconv.Itoa(i), "set_features", fmt.Sprintf(`{"auto_photo":%v}`, i%2 == 0))
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, samples, "roundtrip")
}

func newBenchRig(b *testing.B, br *testbroker.Broker) *rig {
	dir := b.TempDir()
	sockDir, _ := os.MkdirTemp("", "aibo-bench")
	b.Cleanup(func() { os.RemoveAll(sockDir) })
	r := &rig{dataDir: filepath.Join(dir, "data"), spool: filepath.Join(dir, "spool"),
		socket: filepath.Join(sockDir, "diag.sock"), config: filepath.Join(dir, "config.yaml")}
	cfg := fmt.Sprintf("device_id: bench\ndata_dir: %s\nspool_dir: %s\nlog_level: warn\nmqtt:\n  broker: %s\ndiag:\n  socket: %s\nvision:\n  face_models_dir: %s\n",
		r.dataDir, r.spool, br.URL, r.socket, faceModels)
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	return r
}

// benchStart appends extraYAML to the bench rig's config and starts the
// daemon as shipped.
func benchStart(b *testing.B, r *rig, extraYAML string) *exec.Cmd {
	b.Helper()
	cfg, _ := os.ReadFile(r.config)
	os.WriteFile(r.config, append(cfg, extraYAML...), 0o600)
	os.MkdirAll(filepath.Join(r.spool, "photos"), 0o755)
	cmd := exec.Command(filepath.Join(binDir, "aibo-privacyd"), "-config", r.config)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return cmd
}

// benchSend returns a function that publishes a command to the bench
// device until its result comes back (the daemon may not be connected
// yet).
func benchSend(b *testing.B, c *testbroker.Client) func(id, typ, payload string) {
	results := c.Subscribe(b, "aibo/bench/cmd/result")
	return func(id, typ, payload string) {
		b.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			c.Publish(b, "aibo/bench/cmd", []byte(`{"id":"`+id+`","type":"`+typ+`","payload":`+payload+`}`), false)
			for _, m := range results.All() {
				if bytes.Contains(m.Payload, []byte(`"`+id+`"`)) {
					return
				}
			}
		}
		b.Fatalf("no answer to %s", typ)
	}
}

// benchDrop puts files into the bench rig's spool as the camera does and
// waits until the intake has taken them all.
func benchDrop(b *testing.B, r *rig, files map[string][]byte, within time.Duration) {
	b.Helper()
	dir := filepath.Join(r.spool, "photos")
	for name, data := range files {
		os.WriteFile(filepath.Join(dir, name+".part"), data, 0o644)
		os.Rename(filepath.Join(dir, name+".part"), filepath.Join(dir, name))
	}
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		if entries, _ := os.ReadDir(dir); len(entries) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("photos stayed in the spool")
		}
	}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

func procKB(b *testing.B, pid int, field string) int {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	b.Fatalf("no %s", field)
	return 0
}

func reportPercentiles(b *testing.B, samples []time.Duration, name string) {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	p := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.5), name+"-p50-ms")
	b.ReportMetric(p(0.99), name+"-p99-ms")
}
