package agent

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/agent/config"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/firmware"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

func (d *Daemon) handleCommand(ctx context.Context, raw []byte) []byte {
	return d.disp.Handle(ctx, raw)
}

func (d *Daemon) registerCommands() {
	d.disp.Register("set_features", d.setFeatures)
	d.disp.Register("accept_policy", d.acceptPolicy)
	d.disp.Register("set_region", d.setRegion)
	d.disp.Register("firmware_offer", d.firmwareOffer)
	d.disp.Register("grant_consent", d.grantConsent)
	d.disp.Register("revoke_consent", d.revokeConsent)
	d.disp.Register("start_enrollment", d.startEnrollment)
	d.disp.Register("cancel_enrollment", d.cancelEnrollment)
	d.disp.Register("delete_data", d.deleteData)
	d.disp.Register("export_inventory", d.exportInventory)
	d.disp.Register("select_photos", d.selectPhotos)
	d.disp.Register("photo_feedback", d.photoFeedback)
}

// firmwareOffer verifies and records an update offer; the chunks then
// arrive on their own topic. A refused offer is audited and reported as a
// firmware_rejected event as well as in the result.
func (d *Daemon) firmwareOffer(ctx context.Context, e *command.Exec) (any, error) {
	m, err := d.fw.Offer(e.Tx, e.Now, e.Cmd.Payload)
	var rej *firmware.Rejection
	switch {
	case errors.As(err, &rej):
		e.AfterRefusal(func() {
			err := d.st.Update(func(tx *bolt.Tx) error { return firmware.RecordRejection(tx, e.Now, rej) })
			if err != nil {
				d.log.Error("audit firmware rejection", "err", err)
			}
			d.event(map[string]any{"type": "firmware_rejected", "version": rej.Version, "reason": rej.Reason})
		})
		code := command.CodeBadRequest
		if rej.Reason == firmware.ReasonSignature {
			code = command.CodeBadSignature
		}
		return nil, command.Errorf(code, "firmware_rejected: %s", rej.Reason)
	case errors.Is(err, firmware.ErrBadOffer):
		return nil, command.Errorf(command.CodeBadRequest, "%s", err.Error())
	case err != nil:
		return nil, err
	}
	return map[string]any{"version": m.Version, "chunks": m.Chunks, "size": m.Size}, nil
}

// pauseForMaterialChange runs in the transaction that stages an image: a
// material policy change pauses every consent-gated feature until the owner
// accepts the new policy version (unless they already have).
func (d *Daemon) pauseForMaterialChange(tx *bolt.Tx, now time.Time, m firmware.Manifest) error {
	if !m.MaterialPolicyChange {
		return nil
	}
	st, err := d.pol.Read(tx)
	if err != nil || st.PolicyVersion == m.PolicyVersion {
		return err
	}
	_, err = d.pol.PauseFor(tx, now, m.PolicyVersion)
	return err
}

// refusal maps the policy's refusals to contract error codes.
func refusal(err error) error {
	if e := peopleRefusal(err); e != nil {
		return e
	}
	switch {
	case errors.Is(err, policy.ErrPolicyNotAccepted):
		return command.Errorf(command.CodePolicyNotAccepted, "%s", err.Error())
	case errors.Is(err, policy.ErrRegionProhibited):
		return command.Errorf(command.CodeRegionProhibited, "%s", err.Error())
	case errors.Is(err, policy.ErrUnknownFeature), errors.Is(err, policy.ErrBadValue):
		return command.Errorf(command.CodeBadRequest, "%s", err.Error())
	}
	return err
}

func (d *Daemon) setFeatures(ctx context.Context, e *command.Exec) (any, error) {
	var fields map[string]json.RawMessage
	if err := command.Decode(e.Cmd.Payload, &fields); err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return nil, command.Errorf(command.CodeBadRequest, "payload names no feature")
	}
	set := map[policy.Feature]bool{}
	for name, raw := range fields {
		var on bool
		if err := json.Unmarshal(raw, &on); err != nil {
			return nil, command.Errorf(command.CodeBadRequest, "feature %q must be true or false", trim(name))
		}
		set[policy.Feature(name)] = on
	}
	ch, err := d.pol.SetFeatures(e.Tx, e.Now, set)
	if err != nil {
		return nil, refusal(err)
	}
	if ch.TurnedOff(policy.AutoPhoto) {
		ids, err := capture.ForgetUndecided(e.Tx)
		if err != nil {
			return nil, err
		}
		if len(ids) > 0 {
			if _, err := audit.Append(e.Tx, e.Now, "photos_erased", "", map[string]string{"reason": "auto_photo_off", "count": strconv.Itoa(len(ids))}); err != nil {
				return nil, err
			}
		}
		e.AfterCommit(func() {
			if err := d.vault.RemoveFiles(ids); err != nil {
				d.log.Error("remove erased photo files", "err", err)
			}
		})
	}
	e.AfterCommit(func() {
		// Whatever a switch turned off may no longer leave: drop it now
		// rather than at its next publish attempt (the broker may be away).
		d.dropQueued(func(m outbox.Meta) bool { return d.mayPublish(m) == outbox.Refuse }, "consent_withdrawn")
		d.faces.ConsentChanged() // who may be recognised depends on the switches too
		d.stateChanged()
	})
	return map[string]any{"features": featureMap(ch.After)}, nil
}

func (d *Daemon) acceptPolicy(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		Version string `json:"version"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	ch, err := d.pol.AcceptPolicy(e.Tx, e.Now, p.Version)
	if err != nil {
		return nil, refusal(err)
	}
	e.AfterCommit(d.stateChanged)
	return map[string]any{"policy_version": ch.After.PolicyVersion, "paused_for_policy": ch.After.PausedForPolicy}, nil
}

func (d *Daemon) setRegion(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		Region string `json:"region"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	ch, err := d.pol.SetRegion(e.Tx, e.Now, p.Region, config.ValidRegion)
	if err != nil {
		return nil, refusal(err)
	}
	if d.pol.Prohibited(ch.After.Region) {
		// Face data may not exist here: erase every person's templates and
		// sightings now, and ask the cloud to erase its copies.
		held, err := d.faces.Holdings(e.Tx)
		if err != nil {
			return nil, err
		}
		for subject := range held {
			if _, err := d.faces.Forget(e.Tx, subject); err != nil {
				return nil, err
			}
		}
		if len(held) > 0 {
			if _, err := audit.Append(e.Tx, e.Now, "faces_erased", "", map[string]string{"reason": "region_prohibited", "subjects": strconv.Itoa(len(held))}); err != nil {
				return nil, err
			}
		}
		kinds := []string{outbox.KindFaceTemplate, outbox.KindSighting}
		for _, subject := range slices.Sorted(maps.Keys(held)) {
			if err := d.eraseRequest(e, kinds, subject); err != nil {
				return nil, err
			}
		}
		if err := d.dropQueuedTx(e, func(m outbox.Meta) bool { return slices.Contains(kinds, m.Kind) }, "region_prohibited"); err != nil {
			return nil, err
		}
		e.AfterCommit(func() {
			for subject := range held {
				d.faces.Forgot(subject)
			}
		})
	}
	e.AfterCommit(d.stateChanged)
	return map[string]any{"region": ch.After.Region, "prohibited": d.pol.Prohibited(ch.After.Region), "features": featureMap(ch.After)}, nil
}

func featureMap(s policy.State) map[string]bool {
	m := map[string]bool{}
	for _, f := range policy.Features {
		m[string(f)] = s.On(f)
	}
	return m
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}
