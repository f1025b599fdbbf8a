package capture

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkAdmissions measures durable admissions per second: each photo is
// read, fully decoded, sealed, written temp-fsync-rename, and committed with
// its cap reservation (one bbolt fsync) before its spool file is removed.
//
//	go test -run '^$' -bench Admissions -benchtime 200x ./capture/
func BenchmarkAdmissions(b *testing.B) {
	photo, err := os.ReadFile("../testdata/photos/rocket.jpg")
	if err != nil {
		b.Fatal(err)
	}
	f := newFixture(b, true)
	f.in.cfg.DailyCap = b.N + 1
	os.MkdirAll(f.spool, 0o755)
	for i := 0; i < b.N; i++ {
		os.WriteFile(filepath.Join(f.spool, "b"+strconv.Itoa(i)+".jpg"), photo, 0o644)
	}
	b.ResetTimer()
	start := time.Now()
	f.run()
	for {
		entries, _ := os.ReadDir(f.spool)
		if len(entries) == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	f.stop()
	if c := f.today(); c.Admitted != b.N {
		b.Fatalf("admitted %d of %d", c.Admitted, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "admissions/s")
}
