package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// BenchmarkRevokeWith10kQueued measures revoke_consent from the command's
// arrival to the durable erase (consent, key, templates, sightings and the
// person's queued artifacts gone in one committed transaction, then the
// key's keyring slot overwritten and synced) while 10,000 artifacts wait
// in the outbox.
//
//	go test -run '^$' -bench RevokeWith10kQueued -benchtime 50x ./agent/
func BenchmarkRevokeWith10kQueued(b *testing.B) {
	dir := b.TempDir()
	sock, _ := os.MkdirTemp("", "aibo-bench")
	b.Cleanup(func() { os.RemoveAll(sock) })
	cfg, err := config.Parse([]byte(fmt.Sprintf("data_dir: %s\nspool_dir: %s\nmqtt:\n  broker: tcp://127.0.0.1:1\ndiag:\n  socket: %s\nvision:\n  worker: /nonexistent\n",
		filepath.Join(dir, "data"), filepath.Join(dir, "spool"), filepath.Join(sock, "d.sock"))))
	if err != nil {
		b.Fatal(err)
	}
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer d.st.Close()
	subjects := max(b.N, 1)
	perSubject := 10000 / subjects
	now := time.Now()
	slots := map[string]uint32{}
	err = d.st.Update(func(tx *bolt.Tx) error {
		if _, err := d.pol.AcceptPolicy(tx, now, "v1"); err != nil {
			return err
		}
		for i := 0; i < subjects; i++ {
			g := policy.Grant{SubjectID: fmt.Sprintf("s%d", i), DisplayName: "P", GrantedBy: "self", Scopes: []string{"face_recognition"}}
			if _, _, err := d.pol.GrantConsent(tx, now, g); err != nil {
				return err
			}
			slot, _, err := d.pol.FaceKeyForWriteTx(tx, g.SubjectID)
			if err != nil {
				return err
			}
			slots[g.SubjectID] = slot
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10000; i += 500 {
		err := d.st.Update(func(tx *bolt.Tx) error {
			for j := i; j < i+500; j++ {
				subject := fmt.Sprintf("s%d", min(j/max(perSubject, 1), subjects-1))
				slot := slots[subject]
				p, err := d.outbox.Prepare(outbox.Artifact{Kind: policy.KindSighting, SubjectID: subject, Slot: &slot, Content: []byte(`{"confidence":0.9}`)})
				if err != nil {
					return err
				}
				if _, err := d.outbox.EnqueueTx(tx, p); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if n, _ := d.outbox.Summary(); n != 10000 {
		b.Fatalf("%d queued", n)
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("rv-%d", i), "type": "revoke_consent", "payload": map[string]any{"subject_id": fmt.Sprintf("s%d", i)}})
		t0 := time.Now()
		out := d.disp.Handle(context.Background(), raw)
		lat = append(lat, time.Since(t0))
		var r struct{ OK bool }
		if json.Unmarshal(out, &r); !r.OK {
			b.Fatalf("revoke: %s", out)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
	left, _ := d.outbox.Summary()
	b.ReportMetric(float64(left), "queued-after")
}
