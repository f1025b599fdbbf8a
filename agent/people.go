package agent

import (
	"context"
	"errors"
	"slices"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

func (d *Daemon) grantConsent(ctx context.Context, e *command.Exec) (any, error) {
	var g policy.Grant
	if err := command.Decode(e.Cmd.Payload, &g); err != nil {
		return nil, err
	}
	c, err := d.pol.GrantConsent(e.Tx, e.Now, g)
	if err != nil {
		return nil, refusal(err)
	}
	e.AfterCommit(d.stateChanged)
	e.AfterCommit(d.faces.ConsentChanged)
	return map[string]any{"subject_id": c.SubjectID, "scopes": c.Scopes, "policy_version": c.PolicyVersion}, nil
}

func (d *Daemon) revokeConsent(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		SubjectID string   `json:"subject_id"`
		Scopes    []string `json:"scopes"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	slot, hasSlot := d.pol.KeySlot(e.Tx, p.SubjectID)
	revoked, err := d.pol.RevokeConsent(e.Tx, e.Now, p.SubjectID, p.Scopes)
	if err != nil {
		return nil, refusal(err)
	}
	res := map[string]any{"subject_id": p.SubjectID, "revoked": revoked}
	var kinds []string
	for _, s := range revoked {
		switch s {
		case policy.ScopeFaceRecognition:
			f, err := d.faces.Forget(e.Tx, p.SubjectID)
			if err != nil {
				return nil, err
			}
			res["erased"] = f
			kinds = append(kinds, outbox.KindFaceTemplate, outbox.KindSighting)
		case policy.ScopeCloudBackup:
			kinds = append(kinds, outbox.KindFaceTemplate)
		}
	}
	kinds = unique(kinds)
	if len(kinds) > 0 {
		if err := d.eraseRequest(e, kinds, p.SubjectID); err != nil {
			return nil, err
		}
	}
	if err := d.dropQueuedTx(e, func(m outbox.Meta) bool { return m.SubjectID == p.SubjectID && slices.Contains(kinds, m.Kind) }, "consent_revoked"); err != nil {
		return nil, err
	}
	_, stillConsenting, err := d.pol.Consent(e.Tx, p.SubjectID)
	if err != nil {
		return nil, err
	}
	e.AfterCommit(func() {
		if !stillConsenting && hasSlot {
			// The person's key is gone from the store: overwrite the slot
			// that could still open its copies in bbolt's free pages. A
			// failure is retried by ScrubKeys at the next start.
			if err := d.pol.EraseKeySlot(slot); err != nil {
				d.log.Error("keyring slot not erased yet", "subject_id", p.SubjectID, "err", err)
			}
		}
		d.faces.Forgot(p.SubjectID)
		d.event(map[string]any{"type": "consent_revoked", "subject_id": p.SubjectID, "scopes": revoked})
		d.stateChanged()
	})
	return res, nil
}

func (d *Daemon) startEnrollment(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		SubjectID string `json:"subject_id"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	if !policy.ValidSubjectID(p.SubjectID) {
		return nil, command.Errorf(command.CodeBadRequest, "subject_id must match [A-Za-z0-9_-]{1,64}")
	}
	open, err := d.faces.StartEnrollment(e.Tx, e.Now, p.SubjectID)
	if err != nil {
		return nil, refusal(err)
	}
	e.AfterCommit(open)
	return map[string]any{"subject_id": p.SubjectID, "samples": d.cfg.Faces.EnrollmentSamples,
		"timeout_seconds": d.cfg.Faces.EnrollmentTimeout.D().Seconds()}, nil
}

func (d *Daemon) cancelEnrollment(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		SubjectID string `json:"subject_id"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	closeWindow, err := d.faces.CancelEnrollment(e.Tx, p.SubjectID)
	if err != nil {
		return nil, refusal(err)
	}
	e.AfterCommit(closeWindow)
	if _, err := audit.Append(e.Tx, e.Now, "enrollment_cancelled", p.SubjectID, nil); err != nil {
		return nil, err
	}
	return map[string]any{"subject_id": p.SubjectID}, nil
}

// dropQueuedTx removes the queued artifacts match selects in the command's
// own transaction (match must not open one); the rest of the removal runs
// after the commit.
func (d *Daemon) dropQueuedTx(e *command.Exec, match func(outbox.Meta) bool, reason string) error {
	after, err := d.outbox.DropTx(e.Tx, match, reason)
	if err != nil {
		return err
	}
	e.AfterCommit(after)
	return nil
}

// dropQueued removes queued artifacts; the gate already refuses them, so a
// failure here only delays their removal to the next publish attempt.
func (d *Daemon) dropQueued(match func(outbox.Meta) bool, reason string) {
	if _, err := d.outbox.Drop(match, reason); err != nil {
		d.log.Error("drop queued artifacts", "reason", reason, "err", err)
	}
}

func peopleRefusal(err error) error {
	switch {
	case errors.Is(err, policy.ErrGuardianRequired):
		return command.Errorf(command.CodeGuardianRequired, "%s", err.Error())
	case errors.Is(err, policy.ErrConsentRequired):
		return command.Errorf(command.CodeConsentRequired, "%s", err.Error())
	case errors.Is(err, policy.ErrNotFound), errors.Is(err, facerec.ErrNoEnrolment):
		return command.Errorf(command.CodeNotFound, "%s", err.Error())
	case errors.Is(err, policy.ErrFeatureDisabled):
		return command.Errorf(command.CodeFeatureDisabled, "%s", err.Error())
	case errors.Is(err, facerec.ErrBusy):
		return command.Errorf(command.CodeBusy, "%s", err.Error())
	}
	return nil
}

func unique(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
