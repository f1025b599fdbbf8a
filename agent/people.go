package agent

import (
	"context"
	"errors"
	"slices"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
)

// grantConsent records a person's consent. A grant replaces the person's
// scopes: a scope the previous grant had and this one does not name is
// withdrawn first, exactly as revoke_consent withdraws it (contract v2).
func (d *Daemon) grantConsent(ctx context.Context, e *command.Exec) (any, error) {
	var g policy.Grant
	if err := command.Decode(e.Cmd.Payload, &g); err != nil {
		return nil, err
	}
	if policy.ValidSubjectID(g.SubjectID) {
		if err := e.Claim(consentSetting(g.SubjectID)); err != nil {
			return nil, err
		}
		old, had, err := d.pol.Consent(e.Tx, g.SubjectID)
		if err != nil {
			return nil, err
		}
		var drop []string
		for _, s := range old.Scopes {
			if had && !slices.Contains(g.Scopes, string(s)) {
				drop = append(drop, string(s))
			}
		}
		if len(drop) > 0 {
			if _, _, err := d.withdrawTx(e.Tx, e.Now, g.SubjectID, drop); err != nil {
				return nil, refusal(err)
			}
		}
	}
	c, _, err := d.pol.GrantConsent(e.Tx, e.Now, g)
	if err != nil {
		return nil, refusal(err) // a refused grant rolls the withdrawal back too
	}
	e.OnCommit(d.stateChanged)
	e.OnCommit(d.faces.ConsentChanged)
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
	if policy.ValidSubjectID(p.SubjectID) {
		if err := e.Claim(consentSetting(p.SubjectID)); err != nil {
			return nil, err
		}
	}
	revoked, f, err := d.withdrawTx(e.Tx, e.Now, p.SubjectID, p.Scopes)
	if err != nil {
		return nil, refusal(err)
	}
	return map[string]any{"subject_id": p.SubjectID, "revoked": revoked, "erased": f}, nil
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
	if err := e.Claim(enrollmentSetting(p.SubjectID)); err != nil {
		return nil, err
	}
	open, err := d.faces.StartEnrollment(e.Tx, e.Now, p.SubjectID)
	if err != nil {
		return nil, refusal(err)
	}
	e.OnCommit(open)
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
	// A cancel acts only on a window opened before it was issued: a start
	// the owner issued later is newer and stays (superseded).
	if policy.ValidSubjectID(p.SubjectID) {
		if err := e.Claim(enrollmentSetting(p.SubjectID)); err != nil {
			return nil, err
		}
	}
	closeWindow, err := d.faces.CancelEnrollment(e.Tx, p.SubjectID)
	if err != nil {
		return nil, refusal(err)
	}
	e.OnCommit(closeWindow)
	if _, err := audit.Append(e.Tx, e.Now, "enrollment_cancelled", p.SubjectID, nil); err != nil {
		return nil, err
	}
	return map[string]any{"subject_id": p.SubjectID}, nil
}

// The settings (command.Exec.Claim) of a person: their consent, and their
// enrollment window.
func consentSetting(subject string) string    { return "consent/" + subject }
func enrollmentSetting(subject string) string { return "enrollment/" + subject }

// refusal maps the policy's and the features' refusals to contract error
// codes; anything else is an internal error.
func refusal(err error) error {
	code := ""
	switch {
	case errors.Is(err, policy.ErrGuardianRequired):
		code = command.CodeGuardianRequired
	case errors.Is(err, policy.ErrConsentRequired):
		code = command.CodeConsentRequired
	case errors.Is(err, policy.ErrNotFound), errors.Is(err, facerec.ErrNoEnrollment):
		code = command.CodeNotFound
	case errors.Is(err, policy.ErrFeatureDisabled):
		code = command.CodeFeatureDisabled
	case errors.Is(err, facerec.ErrBusy):
		code = command.CodeBusy
	case errors.Is(err, policy.ErrPolicyNotAccepted):
		code = command.CodePolicyNotAccepted
	case errors.Is(err, policy.ErrRegionProhibited):
		code = command.CodeRegionProhibited
	case errors.Is(err, policy.ErrUnknownFeature), errors.Is(err, policy.ErrBadValue):
		code = command.CodeBadRequest
	default:
		return err
	}
	return command.Errorf(code, "%s", err.Error())
}
