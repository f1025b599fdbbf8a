package agent

import (
	"context"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/audit"
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
}
