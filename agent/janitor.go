package agent

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// JanitorEvery is how often retention is enforced (and once at start).
var JanitorEvery = time.Hour

// janitor enforces retention: what outlived its purpose is erased. Each
// pass is bounded so no transaction grows large; a backlog drains over the
// following passes.
func (d *Daemon) janitor(ctx context.Context) error {
	t := time.NewTicker(JanitorEvery)
	defer t.Stop()
	for {
		d.sweep()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *Daemon) sweep() {
	now := d.now()
	err := d.st.Update(func(tx *bolt.Tx) error {
		n, err := d.faces.PruneSightings(tx, now.Add(-d.cfg.Retention.Sightings.D()))
		if err != nil {
			return err
		}
		if n > 0 {
			if _, err := audit.Append(tx, now, "retention_erased", "", map[string]string{"category": "sightings", "count": strconv.Itoa(n)}); err != nil {
				return err
			}
		}
		if _, err := d.pruneScores(tx, now.Add(-scoreRetention)); err != nil {
			return err
		}
		n, err = audit.Prune(tx, now.Add(-d.cfg.Retention.Audit.D()), 10000)
		if err != nil || n == 0 {
			return err
		}
		_, err = audit.Append(tx, now, "retention_erased", "", map[string]string{"category": "audit", "count": strconv.Itoa(n)})
		return err
	})
	if err != nil {
		d.log.Error("retention", "err", err)
	}
	// Usage goes in a transaction of its own: a full outbox must not hold
	// up retention.
	if err := d.st.Update(func(tx *bolt.Tx) error { return d.usageReport(tx, now) }); err != nil {
		d.log.Warn("usage report not queued", "err", err)
	}
}

// scoreRetention is how long the features of an uploaded photo are kept
// for the owner's feedback to teach from.
const scoreRetention = 90 * 24 * time.Hour

func (d *Daemon) pruneScores(tx *bolt.Tx, cutoff time.Time) (int, error) {
	b := tx.Bucket(store.BucketScoring)
	var old [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if !strings.HasPrefix(string(k), "score/") {
			return nil
		}
		var r scoreRecord
		if json.Unmarshal(v, &r) == nil && r.At.Before(cutoff) {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range old {
		if err == nil {
			err = b.Delete(k)
		}
	}
	return len(old), err
}
