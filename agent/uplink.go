package agent

import (
	"encoding/json"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// mayPublish is the outbox's MaySend: the policy decides, right before the
// manifest and every chunk.
func (d *Daemon) mayPublish(m outbox.Meta) (v policy.Verdict) {
	if err := d.view(func(tx *bolt.Tx) error { v = d.pol.MaySend(tx, m.Outgoing()); return nil }); err != nil {
		return policy.Hold
	}
	return v
}

// artifactAckedTx counts an uploaded photo on its day, in the transaction
// that forgets it once the cloud has it.
func (d *Daemon) artifactAckedTx(tx *bolt.Tx, m outbox.Meta) error {
	if day, _ := m.Attrs["day"].(string); m.Kind == policy.KindPhoto && day != "" {
		return capture.UploadedTx(tx, day)
	}
	return nil
}

// artifactDroppedTx counts a queued photo that will never be uploaded as
// deleted on its day, in the transaction that drops it.
func (d *Daemon) artifactDroppedTx(tx *bolt.Tx, m outbox.Meta, reason string) error {
	if day, _ := m.Attrs["day"].(string); m.Kind == policy.KindPhoto && day != "" {
		return capture.UnsentTx(tx, day)
	}
	return nil
}

// sightingTx queues a Patrol report inside the transaction that records
// the sighting, sealed whole by the person's face key: its time and
// confidence are never in clear on the device.
func (d *Daemon) sightingTx(tx *bolt.Tx, subjectID string, faceSlot uint32, at time.Time, confidence float64) error {
	body, _ := json.Marshal(map[string]any{"subject_id": subjectID, "time": at.UTC().Format(time.RFC3339), "confidence": round3(confidence)})
	return d.enqueueTx(tx, outbox.Artifact{Kind: policy.KindSighting, ContentType: "application/json", SubjectID: subjectID, Slot: &faceSlot,
		Attrs: map[string]any{"time": at.UTC().Format(time.RFC3339), "confidence": round3(confidence)}, CreatedAt: at, Content: body})
}

// templateBackupTx queues a face_template artifact, sealed whole by the
// person's face key, when the policy would let it leave now (the
// cloud_backup feature and the person's cloud_backup scope); otherwise
// templates never leave.
func (d *Daemon) templateBackupTx(tx *bolt.Tx, subjectID string, faceSlot uint32, samples [][]byte) error {
	if d.pol.MaySend(tx, policy.Outgoing{Kind: policy.KindFaceTemplate, Subject: subjectID}) != policy.Send {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"subject_id": subjectID, "format": "aibo-face-template", "model": d.recognizer.Model(), "samples": samples})
	err := d.enqueueTx(tx, outbox.Artifact{Kind: policy.KindFaceTemplate, ContentType: "application/json",
		SubjectID: subjectID, Slot: &faceSlot, Attrs: map[string]any{"samples": len(samples)}, Content: body})
	if errors.Is(err, outbox.ErrQueueFull) {
		d.log.Warn("face template backup not queued: outbox full", "subject_id", subjectID)
		return nil // the enrollment itself is kept
	}
	return err
}

// usageReportTx queues one de-identified usage artifact a day when the
// owner allows analytics: counters only, no person ids, names or images.
func (d *Daemon) usageReportTx(tx *bolt.Tx, now time.Time) error {
	return d.selector.UsageReportTx(tx, now, func(c capture.DayCounts) error {
		body, _ := json.Marshal(map[string]any{"day": c.Day, "photos": map[string]int{
			"admitted": c.Admitted, "refused": c.Refused, "over_cap": c.OverCap, "invalid": c.Invalid,
			"uploaded": c.Uploaded, "deleted": c.Deleted}, "firmware": d.cfg.Firmware.Version})
		return d.enqueueTx(tx, outbox.Artifact{Kind: policy.KindUsage, ContentType: "application/json", Attrs: map[string]any{"day": c.Day}, Content: body})
	})
}

// enqueueTx prepares and queues a in tx.
func (d *Daemon) enqueueTx(tx *bolt.Tx, a outbox.Artifact) error {
	p, err := d.outbox.Prepare(a)
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
