package agent

import (
	"errors"
	"slices"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// This file is the one erasure path. Every trigger that forgets face data
// or a person (revoke_consent, a narrower grant_consent, delete_data, a
// move to a prohibited region, retention, a change of face model) builds an
// erasure and calls forgetTx for each person, inside the trigger's own
// transaction. forgetTx, in that transaction:
//
//  1. erases the person's face data the erasure selects (facerec);
//  2. drops their queued artifacts of the kinds it names, chosen by
//     scanning the store through the slot index (the outbox), so an
//     artifact committed a moment before is never missed;
//  3. settles their face key: forgotten when none of their face data is
//     left, replaced when some is (everything left is sealed again under
//     the new key), so what bbolt's free pages keep of the erased part
//     opens with no key left on the device; the old slot is overwritten
//     once the transaction commits (policy, through tx.OnCommit);
//  4. records a withdrawal, or forgets the consent record, when asked;
//  5. queues the erase_request for the cloud's copies and audits.
//
// After the commit, the in-memory state follows: queued artifacts stop
// mid-send, the matcher is dropped (and one built before the erasure is
// never used again: see policy.RecognitionGen), an open enrollment closes.

// erasure says what to forget of one person.
type erasure struct {
	reason string       // in the audit and as the outbox's drop reason
	what   facerec.What // face data on the device
	// drop names the kinds of the person's queued artifacts to drop.
	drop []policy.Kind
	// cloud names the kinds the erase_request asks the cloud to erase
	// (none: no request, as for retention).
	cloud []policy.Kind
	// withdraw records these scopes withdrawn and keep as kept (an empty
	// keep forgets the person entirely); nil: the consent is untouched.
	withdraw, keep []policy.Scope
	// person forgets the consent record too, whatever it says
	// (delete_data all), unless spare says the owner granted it after the
	// withdrawal was issued.
	person bool
	spare  func(subject string) bool
	// before limits what goes to what was recorded before it (zero:
	// everything): a withdrawal that names no single setting acts only on
	// what was recorded before its issued_at (contract v3). It bounds the
	// queued artifacts dropped and the cloud's erase_request; what.Before
	// bounds the face data.
	before time.Time
}

// Erasures of face data, by trigger.
var (
	allFaceData = facerec.What{Templates: true, Sightings: true}
	faceKinds   = []policy.Kind{policy.KindFaceTemplate, policy.KindSighting}
)

// forgotten is what forgetTx did for one person.
type forgotten struct {
	Templates int `json:"templates"`
	Sightings int `json:"sightings"`
	Queued    int `json:"queued_dropped"`
}

// forgetTx carries out e for subject in tx (see the top of this file).
func (d *Daemon) forgetTx(tx *bolt.Tx, now time.Time, subject string, e erasure) (forgotten, error) {
	var out forgotten
	forgetPerson := e.person && (e.spare == nil || !e.spare(subject))
	if forgetPerson {
		// A person forgotten is forgotten whole, whenever it was recorded.
		e.what, e.drop, e.before = allFaceData, faceKinds, time.Time{}
	}
	slot, key, kerr := d.pol.FaceKey(tx, subject)
	clear(key)
	hasKey := kerr == nil
	orphan := errors.Is(kerr, policy.ErrNotFound) // no record names their key any more
	if kerr != nil && !errors.Is(kerr, policy.ErrNoFaceKey) && !orphan {
		return out, kerr
	}
	f, remains, err := d.faces.EraseTx(tx, subject, e.what)
	if err != nil {
		return out, err
	}
	out.Templates, out.Sightings = f.Templates, f.Sightings
	switch {
	case len(e.drop) == 0:
	case hasKey:
		after, dropped, err := d.outbox.DropSlotTx(tx, slot, e.drop, e.before, e.reason)
		if err != nil {
			return out, err
		}
		tx.OnCommit(after)
		out.Queued = len(dropped)
	case orphan:
		// Nobody's record names this person's face key any more (an
		// orphan an older version left): find their artifacts by opening
		// the store's records. (A person without a face key has none.)
		n := 0
		after, err := d.outbox.DropTx(tx, func(m outbox.Meta) bool {
			hit := m.SubjectID == subject && slices.Contains(e.drop, m.Kind) && recordedBefore(m.CreatedAt, e.before)
			if hit {
				n++
			}
			return hit
		}, e.reason)
		if err != nil {
			return out, err
		}
		tx.OnCommit(after)
		out.Queued = n
	}
	if hasKey {
		queued, err := d.outbox.SlotCountTx(tx, slot)
		if err != nil {
			return out, err
		}
		switch {
		case !remains && queued == 0:
			if err := d.pol.DropFaceKeyTx(tx, subject); err != nil {
				return out, err
			}
		case out.Templates+out.Sightings+out.Queued > 0:
			// Part of it is erased and part kept: a new key for what is
			// kept, and the old one, which still opens the erased part in
			// free pages, overwritten once this commits.
			r, ok, err := d.pol.RotateFaceKeyTx(tx, subject)
			if err != nil {
				return out, err
			}
			if ok {
				if _, err := d.faces.ResealTx(tx, subject, r.OldKey, r.NewKey); err != nil {
					return out, err
				}
				if _, err := d.outbox.ResealSlotTx(tx, r.From, r.To); err != nil {
					return out, err
				}
				clear(r.OldKey)
				clear(r.NewKey)
			}
		}
	}
	if out.Templates > 0 {
		if err := policy.BumpRecognitionTx(tx); err != nil {
			return out, err
		}
	}
	switch {
	case e.withdraw != nil:
		if err := d.pol.RecordWithdrawalTx(tx, now, subject, e.withdraw, e.keep); err != nil {
			return out, err
		}
	case forgetPerson:
		if err := d.pol.ForgetPersonTx(tx, subject); err != nil {
			return out, err
		}
	}
	if len(e.cloud) > 0 {
		if err := d.eraseRequestTx(tx, now, e.cloud, subject, e.before); err != nil {
			return out, err
		}
	}
	if out.Templates+out.Sightings+out.Queued > 0 {
		kind := "faces_erased"
		if e.reason == "retention" {
			kind = "retention_erased"
		}
		if _, err := audit.Append(tx, now, kind, subject, map[string]string{"reason": e.reason,
			"templates": strconv.Itoa(out.Templates), "sightings": strconv.Itoa(out.Sightings), "queued": strconv.Itoa(out.Queued)}); err != nil {
			return out, err
		}
	}
	if out.Templates+out.Sightings+out.Queued > 0 || e.withdraw != nil || forgetPerson {
		tx.OnCommit(func() { d.faces.Forgot(subject) })
	}
	return out, nil
}

// withdrawTx withdraws scopes (all when none are named) from subject and
// erases what they covered: losing face_recognition erases every piece of
// their face data, whatever else remains; losing cloud_backup drops their
// queued template backups and asks the cloud to erase its copies.
func (d *Daemon) withdrawTx(tx *bolt.Tx, now time.Time, subject string, scopes []string) ([]policy.Scope, forgotten, error) {
	revoked, kept, err := d.pol.Withdrawal(tx, subject, scopes)
	if err != nil {
		return nil, forgotten{}, err
	}
	e := erasure{reason: "consent_revoked", withdraw: revoked, keep: kept}
	if e.keep == nil {
		e.keep = []policy.Scope{}
	}
	switch {
	case slices.Contains(revoked, policy.ScopeFaceRecognition):
		e.what, e.drop, e.cloud = allFaceData, faceKinds, faceKinds
	case slices.Contains(revoked, policy.ScopeCloudBackup):
		e.drop = []policy.Kind{policy.KindFaceTemplate}
		e.cloud = e.drop
	}
	f, err := d.forgetTx(tx, now, subject, e)
	if err != nil {
		return nil, f, err
	}
	if err := d.eventTx(tx, now, map[string]any{"type": "consent_revoked", "subject_id": subject, "scopes": revoked}); err != nil {
		return nil, f, err
	}
	tx.OnCommit(d.stateChanged)
	return revoked, f, nil
}

// everyoneTx forgets e of every person the store holds anything about:
// face data, a consent, or queued artifacts sealed by a key nobody's
// record names any more (those are dropped by kind).
func (d *Daemon) everyoneTx(tx *bolt.Tx, now time.Time, e erasure) (map[string]forgotten, error) {
	subjects, err := d.subjectsTx(tx)
	if err != nil {
		return nil, err
	}
	out := map[string]forgotten{}
	for _, s := range subjects {
		f, err := d.forgetTx(tx, now, s, e)
		if err != nil {
			return nil, err
		}
		out[s] = f
	}
	if len(e.drop) > 0 {
		after, err := d.outbox.DropTx(tx, func(m outbox.Meta) bool {
			return slices.Contains(e.drop, m.Kind) && m.Slot != nil && recordedBefore(m.CreatedAt, e.before)
		}, e.reason)
		if err != nil {
			return nil, err
		}
		tx.OnCommit(after)
	}
	return out, nil
}

// recordedBefore reports whether something recorded at at falls under a
// cutoff (every time does when the cutoff is zero).
func recordedBefore(at, cutoff time.Time) bool { return cutoff.IsZero() || at.Before(cutoff) }

// subjectsTx lists every person the store holds anything about: a
// consent record or face data.
func (d *Daemon) subjectsTx(tx *bolt.Tx) ([]string, error) {
	seen := map[string]bool{}
	held, err := d.faces.Subjects(tx)
	if err != nil {
		return nil, err
	}
	for _, s := range held {
		seen[s] = true
	}
	consents, err := d.pol.Consents(tx)
	if err != nil {
		return nil, err
	}
	for _, c := range consents {
		seen[c.SubjectID] = true
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// eraseRequestTx raises an erase_request in tx, the transaction of the
// erasure it reports: the cloud gets it even if the broker is down now or
// the daemon restarts first. A non-zero before asks only for what was
// recorded before it (v3: a delete_data that arrived after the owner's
// later grant).
func (d *Daemon) eraseRequestTx(tx *bolt.Tx, now time.Time, kinds []policy.Kind, subjectID string, before time.Time) error {
	ev := map[string]any{"type": "erase_request", "kinds": kinds}
	if subjectID != "" {
		ev["subject_id"] = subjectID
	}
	if !before.IsZero() {
		ev["before"] = before.UTC().Format(time.RFC3339)
	}
	return d.eventTx(tx, now, ev)
}
