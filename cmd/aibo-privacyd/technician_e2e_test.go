package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// storeRecords reads the audit chain from the stopped daemon's store.
func storeRecords(t *testing.T, r *rig) []audit.Record {
	t.Helper()
	s, err := store.Open(filepath.Join(r.dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var recs []audit.Record
	s.View(func(tx *bolt.Tx) error {
		var err error
		recs, err = audit.Newest(tx, 1<<20)
		if rep := audit.Verify(tx); !rep.OK {
			t.Errorf("audit chain: %+v", rep)
		}
		return err
	})
	return recs
}

// hammer sends n GETs of path over the socket from w workers.
func hammer(t *testing.T, sock, path string, n, w int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range w {
		wg.Go(func() {
			c := unixClient(sock)
			c.Timeout = 10 * time.Second
			for j := i; j < n; j += w {
				resp, err := c.Get("http://diag" + path)
				code := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return codes
}

// TestP16_TechnicianAccessIsAuditedAggregated (issue 12 item 6): 2,500
// requests grow the store by less than 1 MiB (one durable record each grew
// it by 2 MiB; BenchmarkTechnicianAudit measures 5,000), every one is counted
// in the audit (aggregated per uid, path and status per minute), and a
// refused peer's requests stay visible with its uid.
func TestP16_TechnicianAccessIsAuditedAggregated(t *testing.T) {
	r := newRig(t, nil, "")
	r.start()
	before, err := os.Stat(filepath.Join(r.dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	codes := hammer(t, r.socket, "/v1/status", 2000, 4)
	codes2 := hammer(t, r.socket, "/metrics", 500, 4)
	if codes[200] != 2000 || codes2[200] != 500 {
		t.Fatalf("answers: status %v, metrics %v", codes, codes2)
	}
	r.stop()
	after, _ := os.Stat(filepath.Join(r.dataDir, "state.db"))
	grew := after.Size() - before.Size()
	t.Logf("2,500 requests grew state.db by %d bytes (%d to %d)", grew, before.Size(), after.Size())
	if grew >= 1<<20 {
		t.Fatalf("2,500 requests grew the store by %d bytes, want < 1 MiB", grew)
	}
	counted := map[string]int{}
	records := 0
	for _, rec := range storeRecords(t, r) {
		if rec.Type != "technician_access" {
			continue
		}
		records++
		n, _ := strconv.Atoi(rec.Fields["count"])
		counted[rec.Fields["path"]+" "+rec.Fields["status"]] += n
		if rec.Fields["uid"] != strconv.Itoa(os.Getuid()) || rec.Fields["since"] == "" {
			t.Errorf("record %+v", rec)
		}
	}
	if counted["/v1/status 200"] != 2000 || counted["/metrics 200"] != 500 {
		t.Fatalf("audited counts %v, want 2000 status and 500 metrics", counted)
	}
	if records > 40 {
		t.Fatalf("%d access records for 2,500 requests", records)
	}

	// A peer outside allowed_uids: refused, and on record with its uid.
	other := os.Getuid() + 12345
	r2 := newRig(t, nil, "")
	os.WriteFile(r2.config, append(mustRead(t, r2.config), []byte("  allowed_uids: ["+itoa(other)+"]\n")...), 0o600)
	r2.start()
	if codes := hammer(t, r2.socket, "/v1/inventory", 50, 2); codes[http.StatusForbidden] != 50 {
		t.Fatalf("refused peer: %v", codes)
	}
	r2.stop()
	refused := 0
	for _, rec := range storeRecords(t, r2) {
		if rec.Type == "technician_access" && rec.Fields["status"] == "403" && rec.Fields["path"] == "/v1/inventory" &&
			rec.Fields["uid"] == strconv.Itoa(os.Getuid()) {
			n, _ := strconv.Atoi(rec.Fields["count"])
			refused += n
		}
	}
	if refused != 50 {
		t.Fatalf("%d refused requests on record, want 50", refused)
	}
}
