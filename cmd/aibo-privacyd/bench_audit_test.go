package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// BenchmarkTechnicianAudit measures what technician traffic costs (issue 12
// item 6): the store's growth over 5,000 requests (4,000 /v1/status, 1,000
// /metrics, four clients at once) and the latency of one /metrics scrape
// at a time, audit included, over b.N scrapes.
//
//	go test -run '^$' -bench TechnicianAudit -benchtime 1000x ./cmd/aibo-privacyd/
func BenchmarkTechnicianAudit(b *testing.B) {
	br := testbroker.Start(b)
	r := newBenchRig(b, br)
	cmd := exec.Command(filepath.Join(binDir, "aibo-privacyd"), "-config", r.config)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	c := unixClient(r.socket)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := c.Get("http://diag/v1/health"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("daemon not answering")
		}
		time.Sleep(10 * time.Millisecond)
	}
	db := filepath.Join(r.dataDir, "state.db")
	before, _ := os.Stat(db)
	t0 := time.Now()
	hammerB(b, r.socket, "/v1/status", 4000, 4)
	hammerB(b, r.socket, "/metrics", 1000, 4)
	elapsed := time.Since(t0)
	after, _ := os.Stat(db)

	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		resp, err := c.Get("http://diag/metrics")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("metrics: %d", resp.StatusCode)
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, samples, "metrics")
	// Reported after ResetTimer, which clears reported metrics.
	b.ReportMetric(float64(after.Size()-before.Size())/1024, "store-growth-KiB/5000req")
	b.ReportMetric(5000/elapsed.Seconds(), "req/s")
}

func hammerB(b *testing.B, sock, path string, n, w int) {
	done := make(chan int, w)
	for i := range w {
		go func() {
			c := unixClient(sock)
			bad := 0
			for j := i; j < n; j += w {
				resp, err := c.Get("http://diag" + path)
				if err != nil {
					bad++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad++
				}
			}
			done <- bad
		}()
	}
	for range w {
		if bad := <-done; bad > 0 {
			b.Fatalf("%d requests to %s failed", bad, path)
		}
	}
}
