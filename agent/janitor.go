package agent

import (
	"context"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
)

// retentionEvery is how often retention is enforced (and once at start).
const retentionEvery = time.Hour

// janitor enforces retention: what outlived its purpose is erased. Each
// pass is bounded so no transaction grows large; a backlog drains over the
// following passes.
func (d *Daemon) janitor(ctx context.Context) error {
	t := time.NewTicker(retentionEvery)
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
		// Old sightings, through the one erasure path: what is kept of a
		// person is sealed again under a new face key.
		cutoff := now.Add(-d.cfg.Retention.Sightings.D())
		held, err := d.faces.Holdings(tx)
		if err != nil {
			return err
		}
		for subject, h := range held {
			if h.Sightings == 0 || (!h.OldestSighting.IsZero() && !h.OldestSighting.Before(cutoff) && h.Unreadable == 0) {
				continue
			}
			if _, err := d.forgetTx(tx, now, subject, erasure{reason: "retention", what: facerec.What{Sightings: true, Before: cutoff}}); err != nil {
				return err
			}
		}
		n, err := audit.Prune(tx, now.Add(-d.cfg.Retention.Audit.D()), 10000)
		if err != nil {
			return err
		}
		if n > 0 {
			if _, err := audit.Append(tx, now, "retention_erased", "", map[string]string{"category": "audit", "count": strconv.Itoa(n)}); err != nil {
				return err
			}
		}
		// The day clock's trusted time, so that a start with the clock
		// behind counts from no earlier than an hour ago.
		d.days.Day(tx)
		if err := d.days.RecordTx(tx); err != nil {
			return err
		}
		// Slots of grants that rolled back since the start.
		_, err = d.pol.ScrubKeys(tx)
		return err
	})
	if err != nil {
		d.log.Error("retention", "err", err)
	}
	// Usage goes in a transaction of its own: a full outbox must not hold
	// up retention.
	if err := d.st.Update(func(tx *bolt.Tx) error { return d.usageReportTx(tx, now) }); err != nil {
		d.log.Warn("usage report not queued", "err", err)
	}
}
