package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/config"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/firmware"
	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

func (d *Daemon) handleCommand(ctx context.Context, raw []byte) []byte {
	return d.disp.Handle(ctx, raw)
}

// commands is every command type the daemon takes, with its handler: the
// one list of them (the metrics' type label and docs/PROTOCOL.md follow
// it; TestProtocolReferenceIsTrueToTheCode checks the document).
func (d *Daemon) commands() map[string]command.Handler {
	return map[string]command.Handler{
		"set_features":      d.setFeatures,
		"accept_policy":     d.acceptPolicy,
		"set_region":        d.setRegion,
		"firmware_offer":    d.firmwareOffer,
		"grant_consent":     d.grantConsent,
		"revoke_consent":    d.revokeConsent,
		"start_enrollment":  d.startEnrollment,
		"cancel_enrollment": d.cancelEnrollment,
		"delete_data":       d.deleteData,
		"export_inventory":  d.exportInventory,
		"select_photos":     d.selectPhotos,
		"photo_feedback":    d.photoFeedback,
	}
}

func (d *Daemon) registerCommands() {
	for typ, h := range d.commands() {
		d.disp.Register(typ, h)
	}
}

// firmwareOffer verifies and records an update offer; the chunks then
// arrive on their own topic. A refused offer is audited and reported as a
// firmware_rejected event as well as in the result.
func (d *Daemon) firmwareOffer(ctx context.Context, e *command.Exec) (any, error) {
	m, err := d.fw.Offer(e.Tx, e.Now, e.Cmd.Payload)
	var rej *firmware.Rejection
	switch {
	case errors.As(err, &rej):
		e.OnRefusal(func() {
			err := d.st.Update(func(tx *bolt.Tx) error {
				if err := firmware.RecordRejection(tx, e.Now, rej); err != nil {
					return err
				}
				return d.eventTx(tx, e.Now, map[string]any{"type": "firmware_rejected", "version": rej.Version, "reason": rej.Reason})
			})
			if err != nil {
				d.log.Error("audit firmware rejection", "err", err)
			}
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

// firmwareStagedTx runs in the transaction that stages an image: it
// raises firmware_staged, and a material policy change pauses every
// consent-gated feature until the owner accepts the new policy version
// (unless they already have).
func (d *Daemon) firmwareStagedTx(tx *bolt.Tx, now time.Time, m firmware.Manifest) error {
	if err := d.eventTx(tx, now, map[string]any{"type": "firmware_staged", "version": m.Version}); err != nil {
		return err
	}
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

func (d *Daemon) setFeatures(ctx context.Context, e *command.Exec) (any, error) {
	var fields map[string]json.RawMessage
	if err := command.Decode(e.Cmd.Payload, &fields); err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return nil, command.Errorf(command.CodeBadRequest, "payload names no feature")
	}
	set := map[policy.Feature]bool{}
	var settings []string
	for name, raw := range fields {
		var on bool
		if err := json.Unmarshal(raw, &on); err != nil {
			return nil, command.Errorf(command.CodeBadRequest, "feature %q must be true or false", textx.Cut(name, 40))
		}
		set[policy.Feature(name)] = on
		settings = append(settings, "feature/"+name)
	}
	// The newest signed command per feature wins: an older one (a switch
	// the network held back) changes nothing.
	if err := e.Claim(settings...); err != nil {
		return nil, err
	}
	ch, err := d.pol.SetFeatures(e.Tx, e.Now, set)
	if err != nil {
		return nil, refusal(err)
	}
	if ch.TurnedOff(policy.AutoPhoto) {
		ids, err := d.vault.ForgetUndecidedTx(e.Tx, time.Time{})
		if err != nil {
			return nil, err
		}
		if len(ids) > 0 {
			if _, err := audit.Append(e.Tx, e.Now, "photos_erased", "", map[string]string{"reason": "auto_photo_off", "count": strconv.Itoa(len(ids))}); err != nil {
				return nil, err
			}
		}
	}
	// Whatever the switches no longer allow may not leave: drop it in the
	// switch's own transaction rather than at its next publish attempt
	// (the broker may be away). Blurring switched on refuses the photos
	// queued unmasked.
	// A person's queued artifacts go through the one erasure path, so the
	// copies a freed page keeps are sealed by a key that no longer exists.
	if err := d.dropRefusedTx(e.Tx, e.Now); err != nil {
		return nil, err
	}
	e.OnCommit(func() {
		d.faces.ConsentChanged() // who may be recognised depends on the switches too
		d.stateChanged()
	})
	return map[string]any{"features": featureMap(ch.After)}, nil
}

// dropRefusedTx drops, in tx, every queued artifact the policy refuses
// now: a person's through forgetTx (their face key replaced), the others
// directly.
func (d *Daemon) dropRefusedTx(tx *bolt.Tx, now time.Time) error {
	after, err := d.outbox.DropTx(tx, func(m outbox.Meta) bool {
		return m.Slot == nil && d.pol.MaySend(tx, m.Outgoing()) == policy.Refuse
	}, outbox.ReasonGate)
	if err != nil {
		return err
	}
	tx.OnCommit(after)
	consents, err := d.pol.Consents(tx)
	if err != nil {
		return err
	}
	for _, c := range consents {
		var drop []policy.Kind
		for _, k := range faceKinds {
			if d.pol.MaySend(tx, policy.Outgoing{Kind: k, Subject: c.SubjectID}) == policy.Refuse {
				drop = append(drop, k)
			}
		}
		if len(drop) == 0 {
			continue
		}
		if _, err := d.forgetTx(tx, now, c.SubjectID, erasure{reason: outbox.ReasonGate, drop: drop}); err != nil {
			return err
		}
	}
	return nil
}

func (d *Daemon) acceptPolicy(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		Version string `json:"version"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	if err := e.Claim("policy_version"); err != nil {
		return nil, err
	}
	ch, err := d.pol.AcceptPolicy(e.Tx, e.Now, p.Version)
	if err != nil {
		return nil, refusal(err)
	}
	e.OnCommit(d.stateChanged)
	e.OnCommit(d.outbox.Wake)          // what a pause held may go now
	e.OnCommit(d.faces.ConsentChanged) // and recognition may resume
	return map[string]any{"policy_version": ch.After.PolicyVersion, "paused_for_policy": ch.After.PausedForPolicy}, nil
}

func (d *Daemon) setRegion(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		Region string `json:"region"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	if err := e.Claim("region"); err != nil {
		return nil, err
	}
	ch, err := d.pol.SetRegion(e.Tx, e.Now, p.Region, config.ValidRegion)
	if err != nil {
		return nil, refusal(err)
	}
	if d.pol.Prohibited(ch.After.Region) {
		// Face data may not exist here: erase every person's templates,
		// sightings and queued face artifacts now, and ask the cloud to
		// erase its copies.
		held, err := d.everyoneTx(e.Tx, e.Now, erasure{reason: "region_prohibited", what: allFaceData, drop: faceKinds, cloud: faceKinds})
		if err != nil {
			return nil, err
		}
		if len(held) > 0 {
			if _, err := audit.Append(e.Tx, e.Now, "faces_erased", "", map[string]string{"reason": "region_prohibited", "subjects": strconv.Itoa(len(held))}); err != nil {
				return nil, err
			}
		}
	}
	e.OnCommit(d.stateChanged)
	return map[string]any{"region": ch.After.Region, "prohibited": d.pol.Prohibited(ch.After.Region), "features": featureMap(ch.After)}, nil
}

func featureMap(s policy.State) map[string]bool {
	m := map[string]bool{}
	for _, f := range policy.Features {
		m[string(f)] = s.On(f)
	}
	return m
}
