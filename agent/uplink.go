package agent

import (
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// mayPublish is the outbox's gate, asked right before the manifest and
// every chunk: nothing leaves the device unless a consent covers it now.
// While a policy change awaits the owner's acceptance, what the accepted
// policy allowed is held, not dropped.
func (d *Daemon) mayPublish(m outbox.Meta) outbox.Verdict {
	verdict := outbox.Refuse
	_ = d.view(func(tx *bolt.Tx) error {
		st, err := d.pol.Read(tx)
		if err != nil {
			return err
		}
		if d.allowedKind(tx, st, m) {
			verdict = outbox.Send
			return nil
		}
		if st.PausedForPolicy != "" && m.Kind != outbox.KindInventory {
			unpaused := st
			unpaused.PausedForPolicy = ""
			if d.allowedKind(tx, unpaused, m) {
				verdict = outbox.Hold
			}
		}
		return nil
	})
	return verdict
}

func (d *Daemon) allowedKind(tx *bolt.Tx, st policy.State, m outbox.Meta) bool {
	switch m.Kind {
	case outbox.KindPhoto:
		return d.pol.Allows(st, policy.AutoPhoto)
	case outbox.KindSighting:
		return d.pol.Allows(st, policy.Patrol) && d.hasScope(tx, m.SubjectID, policy.ScopeFaceRecognition)
	case outbox.KindFaceTemplate:
		return d.pol.Allows(st, policy.CloudBackup) && !d.pol.Prohibited(st.Region) &&
			d.hasScope(tx, m.SubjectID, policy.ScopeCloudBackup) && d.hasScope(tx, m.SubjectID, policy.ScopeFaceRecognition)
	case outbox.KindUsage:
		return d.pol.Allows(st, policy.UsageAnalytics)
	case outbox.KindInventory:
		return true // counts and ids the owner asked for; never content
	}
	return false
}

func (d *Daemon) hasScope(tx *bolt.Tx, subject string, s policy.Scope) bool {
	c, ok, err := d.pol.Consent(tx, subject)
	return err == nil && ok && c.Has(s)
}

// artifactAcked counts an uploaded photo on its day once the cloud has it.
func (d *Daemon) artifactAcked(m outbox.Meta) {
	if m.Kind == outbox.KindPhoto {
		day, _ := m.Attrs["day"].(string)
		if day != "" {
			if err := d.st.Update(func(tx *bolt.Tx) error { return capture.AddUploaded(tx, day, 1) }); err != nil {
				d.log.Error("count uploaded photo", "err", err)
			}
		}
	}
	d.stateChanged()
}

func (d *Daemon) artifactDropped(m outbox.Meta, reason string) { d.stateChanged() }

// sightingArtifact queues a Patrol report inside the transaction that
// records the sighting.
func (d *Daemon) sightingArtifact(tx *bolt.Tx, subjectID string, at time.Time, confidence float64) error {
	body, _ := json.Marshal(map[string]any{"subject_id": subjectID, "time": at.UTC().Format(time.RFC3339), "confidence": round3(confidence)})
	p, err := d.outbox.Prepare(outbox.Artifact{Kind: outbox.KindSighting, ContentType: "application/json", SubjectID: subjectID,
		Attrs: map[string]any{"time": at.UTC().Format(time.RFC3339), "confidence": round3(confidence)}, CreatedAt: at, Content: body})
	if err != nil {
		return err
	}
	if _, err := d.outbox.EnqueueTx(tx, p); err != nil {
		p.Discard()
		return err
	}
	return nil
}

func round3(f float64) float64 { return float64(int(f*1000+0.5)) / 1000 }

// templateBackup queues a face_template artifact when the person and the
// owner both chose cloud backup; otherwise templates never leave.
func (d *Daemon) templateBackup(tx *bolt.Tx, subjectID string, samples [][]byte) error {
	st, err := d.pol.Read(tx)
	if err != nil {
		return err
	}
	c, ok, err := d.pol.Consent(tx, subjectID)
	if err != nil || !ok || !c.Has(policy.ScopeCloudBackup) || !d.pol.Allows(st, policy.CloudBackup) {
		return err
	}
	body, _ := json.Marshal(map[string]any{"subject_id": subjectID, "format": "aibo-face-template", "samples": samples})
	p, err := d.outbox.Prepare(outbox.Artifact{Kind: outbox.KindFaceTemplate, ContentType: "application/json",
		SubjectID: subjectID, Attrs: map[string]any{"samples": len(samples)}, Content: body})
	if err != nil {
		return err
	}
	if _, err := d.outbox.EnqueueTx(tx, p); err != nil {
		p.Discard()
		return err
	}
	return nil
}

// usageReport queues one de-identified usage artifact a day when the owner
// allows analytics: counters only, no person ids, names or images.
func (d *Daemon) usageReport(tx *bolt.Tx, now time.Time) error {
	st, err := d.pol.Read(tx)
	if err != nil || !d.pol.Allows(st, policy.UsageAnalytics) {
		return err
	}
	day := capture.LocalDay(now.Add(-24*time.Hour), d.cfg.Location())
	b := tx.Bucket(store.BucketScoring)
	key := []byte("usage/" + day)
	if b.Get(key) != nil {
		return nil // already reported
	}
	c, err := capture.ReadDay(tx, day)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"day": day, "photos": map[string]int{
		"admitted": c.Admitted, "refused": c.Refused, "over_cap": c.OverCap, "invalid": c.Invalid,
		"uploaded": c.Uploaded, "deleted": c.Deleted}, "firmware": d.cfg.Firmware.Version})
	p, err := d.outbox.Prepare(outbox.Artifact{Kind: outbox.KindUsage, ContentType: "application/json", Attrs: map[string]any{"day": day}, Content: body})
	if err != nil {
		return err
	}
	if _, err := d.outbox.EnqueueTx(tx, p); err != nil {
		p.Discard()
		return err
	}
	return b.Put(key, []byte(now.UTC().Format(time.RFC3339)))
}
