package agent

import (
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
)

// ReportedState is the retained state of contract section 5.
type ReportedState struct {
	DeviceID        string            `json:"device_id"`
	Features        map[string]bool   `json:"features"`
	PolicyVersion   string            `json:"policy_version"`
	Region          string            `json:"region"`
	PhotosToday     capture.DayCounts `json:"photos_today"`
	Subjects        int               `json:"subjects"`
	Outbox          OutboxSummary     `json:"outbox"`
	Firmware        FirmwareSummary   `json:"firmware"`
	PausedForPolicy string            `json:"paused_for_policy"`
	Intake          IntakeStatus      `json:"intake"` // addition: the spool waits (a full disk, no worker)
	UpdatedAt       time.Time         `json:"updated_at"`
}

// IntakeStatus says whether spool files are being decided ("ok") or wait
// ("waiting", since when and why: disk_full or storage_error while
// decisions cannot be recorded, vision_unavailable while images cannot be
// judged).
type IntakeStatus struct {
	Status string     `json:"status"`
	Reason string     `json:"reason,omitempty"`
	Since  *time.Time `json:"since,omitempty"`
}

func (d *Daemon) intakeStatus() IntakeStatus {
	w := d.intake.Waiting()
	if w.Since.IsZero() {
		return IntakeStatus{Status: "ok"}
	}
	return IntakeStatus{Status: "waiting", Reason: w.Reason, Since: &w.Since}
}

// OutboxSummary counts artifacts waiting for the cloud's ack.
type OutboxSummary struct {
	Pending int   `json:"pending"`
	Bytes   int64 `json:"bytes"`
}

// FirmwareSummary is the installed and staged firmware.
type FirmwareSummary struct {
	Version string `json:"version"`
	Staged  string `json:"staged"`
}

func (d *Daemon) readState(tx *bolt.Tx) (ReportedState, error) {
	ps, err := d.pol.Read(tx)
	if err != nil {
		return ReportedState{}, err
	}
	today, err := d.days.Today(tx)
	if err != nil {
		return ReportedState{}, err
	}
	fw, err := d.fw.Status(tx)
	if err != nil {
		return ReportedState{}, err
	}
	consents, err := d.pol.Consents(tx)
	if err != nil {
		return ReportedState{}, err
	}
	pending, bytes := d.outbox.Summary()
	s := ReportedState{
		DeviceID:        d.cfg.DeviceID,
		Features:        map[string]bool{},
		PolicyVersion:   ps.PolicyVersion,
		Region:          ps.Region,
		PhotosToday:     today,
		Firmware:        FirmwareSummary{Version: fw.Version, Staged: fw.Staged},
		PausedForPolicy: ps.PausedForPolicy,
		Subjects:        len(consents),
		Outbox:          OutboxSummary{Pending: pending, Bytes: bytes},
		Intake:          d.intakeStatus(),
	}
	for _, f := range policy.Features {
		s.Features[string(f)] = ps.On(f)
	}
	return s, nil
}

// stateChanged asks for the reported state to be published; bursts coalesce.
func (d *Daemon) stateChanged() {
	select {
	case d.stateDirty <- struct{}{}:
	default:
	}
}

// publishStates publishes the reported state whenever it changed, at most
// every 50 ms, so a storm of photos costs a handful of publishes.
func (d *Daemon) publishStates(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.stateDirty:
		}
		var s ReportedState
		if err := d.view(func(tx *bolt.Tx) (err error) { s, err = d.readState(tx); return }); err != nil {
			d.log.Error("read state", "err", err)
			continue
		}
		raw, _ := json.Marshal(s) // without updated_at, to tell a real change
		if d.lastState != string(raw) {
			d.lastState = string(raw)
			s.UpdatedAt = d.now().UTC()
			out, _ := json.Marshal(s)
			d.link.SetState(out)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}
