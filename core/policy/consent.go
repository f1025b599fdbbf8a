package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
)

// Scope is a purpose a person consented to.
type Scope string

// The scopes of contract section 5.
const (
	ScopeFaceRecognition Scope = "face_recognition"
	ScopeCloudBackup     Scope = "cloud_backup"
)

// Scopes lists every scope.
var Scopes = []Scope{ScopeFaceRecognition, ScopeCloudBackup}

// More refusals.
var (
	ErrGuardianRequired = errors.New("a minor's consent must be granted by a guardian")
	ErrConsentRequired  = errors.New("no consent recorded for this purpose")
	ErrNotFound         = errors.New("no such subject")
	ErrFeatureDisabled  = errors.New("the feature is off")
	// ErrNoFaceKey: the person has no face key, so no face data of theirs
	// can be read (none is held, or it was erased).
	ErrNoFaceKey = errors.New("no face key for this subject")
	// ErrNoKeyring: the Policy was built without a keyring.
	ErrNoKeyring = errors.New("policy: no keyring for people's keys")
)

// Consent is one person's recorded consent: what the device needs to
// decide, as opaque ids, scopes and times. Their name and birthday are kept
// with it, sealed, and never leave this package.
type Consent struct {
	SubjectID     string    `json:"subject_id"`
	Minor         bool      `json:"minor"`
	GrantedBy     string    `json:"granted_by"`
	Scopes        []Scope   `json:"scopes"`
	GrantedAt     time.Time `json:"granted_at"`
	PolicyVersion string    `json:"policy_version"`
}

// Has reports whether the consent covers s.
func (c Consent) Has(s Scope) bool { return slices.Contains(c.Scopes, s) }

// Grant is a grant_consent request.
type Grant struct {
	SubjectID   string   `json:"subject_id"`
	DisplayName string   `json:"display_name"`
	Birthday    string   `json:"birthday"`
	Minor       bool     `json:"minor"`
	GrantedBy   string   `json:"granted_by"`
	Scopes      []string `json:"scopes"`
}

var (
	subjectPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	birthdayPattern = regexp.MustCompile(`^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$`)
)

// ValidSubjectID reports whether id is an acceptable opaque subject id.
func ValidSubjectID(id string) bool { return subjectPattern.MatchString(id) }

func validBirthday(s string) bool {
	if !birthdayPattern.MatchString(s) {
		return false
	}
	// 2024 is a leap year, so 02-29 is a real birthday.
	_, err := time.Parse("2006-01-02", "2024-"+s)
	return err == nil
}

// A person is stored under personName(id) in store.BucketSubjects, with
// keys of two purposes, each in a keyring slot of its own (people.keys):
//
//   - the identity key seals the whole consent record, name and birthday
//     included. It is replaced at every change of the record (the old
//     slot erased once the change commits), and erased with the person
//     when no consent is left.
//   - the face key seals the person's face data: templates and sightings
//     (facerec) and their queued artifacts (the outbox). It is made at the
//     first face data, erased when all of it is erased, and replaced when
//     part of it is (RotateFaceKeyTx), so that nothing erased opens again.
//
// Only slot numbers are in clear. bbolt keeps deleted records in free
// pages; a slot is overwritten in place, so what those pages keep of a
// person can no longer be opened by any key left on the device.
type person struct {
	IdentitySlot uint32  `json:"identity_slot"`
	FaceSlot     *uint32 `json:"face_slot,omitempty"`
	Sealed       []byte  `json:"sealed"` // record, sealed by the identity key
}

// record is a person's consent as sealed.
type record struct {
	Consent
	DisplayName string `json:"display_name"`
	Birthday    string `json:"birthday,omitempty"`
}

func personName(id string) []byte { return []byte("person/" + id) }
func recordAAD(id string) []byte  { return []byte("consent/" + id) }

var personPrefix = []byte("person/")

func (p *Policy) readPerson(tx *bolt.Tx, id string) (*person, error) {
	raw := tx.Bucket(store.BucketSubjects).Get(personName(id))
	if raw == nil {
		return nil, nil
	}
	var ps person
	if err := json.Unmarshal(raw, &ps); err != nil {
		return nil, fmt.Errorf("person %s unreadable: %w", id, err)
	}
	return &ps, nil
}

func (p *Policy) writePerson(tx *bolt.Tx, id string, ps *person) error {
	raw, err := json.Marshal(ps)
	if err != nil {
		return err
	}
	return tx.Bucket(store.BucketSubjects).Put(personName(id), raw)
}

// openRecord opens a person's sealed consent record.
func (p *Policy) openRecord(id string, ps *person) (record, error) {
	if p.ring == nil {
		return record{}, ErrNoKeyring
	}
	k, err := p.ring.Get(ps.IdentitySlot)
	if err != nil {
		return record{}, fmt.Errorf("consent of %s: %w", id, err)
	}
	defer clear(k)
	pt, err := keys.Open(k, ps.Sealed, recordAAD(id))
	if err != nil {
		return record{}, fmt.Errorf("consent of %s: %w", id, err)
	}
	var r record
	if err := json.Unmarshal(pt, &r); err != nil {
		return record{}, fmt.Errorf("consent of %s unreadable: %w", id, err)
	}
	return r, nil
}

// sealRecord seals r under a fresh identity key in a new slot, and erases
// the person's previous identity slot (if any) once tx commits.
func (p *Policy) sealRecord(tx *bolt.Tx, ps *person, r record) error {
	if p.ring == nil {
		return ErrNoKeyring
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	defer clear(raw)
	slot, k, err := p.ring.Alloc() // a rolled-back grant leaves it to ScrubKeys
	if err != nil {
		return err
	}
	defer clear(k)
	sealed, err := keys.Seal(k, raw, recordAAD(r.SubjectID))
	if err != nil {
		return err
	}
	if ps.Sealed != nil {
		p.eraseOnCommit(tx, ps.IdentitySlot)
	}
	ps.IdentitySlot, ps.Sealed = slot, sealed
	return nil
}

// eraseOnCommit overwrites slots once tx commits (their keys are no longer
// referenced by then). A failure is logged and retried by ScrubKeys.
func (p *Policy) eraseOnCommit(tx *bolt.Tx, slots ...uint32) {
	if len(slots) == 0 {
		return
	}
	slots = slices.Clone(slots)
	tx.OnCommit(func() {
		if err := p.ring.Erase(slots...); err != nil {
			p.log().Error("keyring slots not erased yet; retried at the next start", "slots", len(slots), "err", err)
		}
	})
}

// GrantConsent records (or replaces) a person's consent. The record,
// name and birthday included, is sealed under a new identity key. It
// returns the consent and the scopes a previous grant had and this one no
// longer names: the caller withdraws those exactly as revoke_consent does
// (erasing what they covered) in the same transaction.
func (p *Policy) GrantConsent(tx *bolt.Tx, now time.Time, g Grant) (Consent, []Scope, error) {
	if !ValidSubjectID(g.SubjectID) {
		return Consent{}, nil, fmt.Errorf("%w: subject_id must match [A-Za-z0-9_-]{1,64}", ErrBadValue)
	}
	n := utf8.RuneCountInString(g.DisplayName)
	if !utf8.ValidString(g.DisplayName) || n < 1 || n > 80 || strings.TrimSpace(g.DisplayName) == "" {
		return Consent{}, nil, fmt.Errorf("%w: display_name must be 1..80 characters", ErrBadValue)
	}
	if g.Birthday != "" && !validBirthday(g.Birthday) {
		return Consent{}, nil, fmt.Errorf("%w: birthday must be a real MM-DD", ErrBadValue)
	}
	if g.GrantedBy != "self" && g.GrantedBy != "guardian" {
		return Consent{}, nil, fmt.Errorf("%w: granted_by must be self or guardian", ErrBadValue)
	}
	if g.Minor && g.GrantedBy != "guardian" {
		return Consent{}, nil, ErrGuardianRequired
	}
	if len(g.Scopes) == 0 {
		return Consent{}, nil, fmt.Errorf("%w: scopes must name at least one purpose", ErrBadValue)
	}
	var scopes []Scope
	for _, s := range g.Scopes {
		if !slices.Contains(Scopes, Scope(s)) {
			return Consent{}, nil, fmt.Errorf("%w: unknown scope %q", ErrBadValue, textx.Cut(s, 40))
		}
		if !slices.Contains(scopes, Scope(s)) {
			scopes = append(scopes, Scope(s))
		}
	}
	sort.Slice(scopes, func(i, j int) bool { return scopes[i] < scopes[j] })
	st, err := p.Read(tx)
	if err != nil {
		return Consent{}, nil, err
	}
	ps, err := p.readPerson(tx, g.SubjectID)
	if err != nil {
		return Consent{}, nil, err
	}
	var dropped []Scope
	if ps == nil {
		ps = &person{}
	} else if old, err := p.openRecord(g.SubjectID, ps); err == nil {
		for _, s := range old.Scopes {
			if !slices.Contains(scopes, s) {
				dropped = append(dropped, s)
			}
		}
	} else {
		return Consent{}, nil, err
	}
	c := Consent{SubjectID: g.SubjectID, Minor: g.Minor, GrantedBy: g.GrantedBy, Scopes: scopes,
		GrantedAt: now.UTC(), PolicyVersion: st.PolicyVersion}
	if err := p.sealRecord(tx, ps, record{Consent: c, DisplayName: g.DisplayName, Birthday: g.Birthday}); err != nil {
		return Consent{}, nil, err
	}
	if err := p.writePerson(tx, g.SubjectID, ps); err != nil {
		return Consent{}, nil, err
	}
	fields := map[string]string{"scopes": scopeList(scopes), "granted_by": g.GrantedBy, "minor": fmt.Sprint(g.Minor), "policy_version": st.PolicyVersion}
	if _, err := audit.Append(tx, now, "consent_granted", g.SubjectID, fields); err != nil {
		return Consent{}, nil, err
	}
	return c, dropped, nil
}

// Withdrawal works out, without writing anything, which of subjectID's
// scopes a revocation of scopes (all when none are named) withdraws and
// which remain.
func (p *Policy) Withdrawal(tx *bolt.Tx, subjectID string, scopes []string) (revoked, kept []Scope, err error) {
	if !ValidSubjectID(subjectID) {
		return nil, nil, fmt.Errorf("%w: subject_id must match [A-Za-z0-9_-]{1,64}", ErrBadValue)
	}
	want := Scopes
	if len(scopes) > 0 {
		want = nil
		for _, s := range scopes {
			if !slices.Contains(Scopes, Scope(s)) {
				return nil, nil, fmt.Errorf("%w: unknown scope %q", ErrBadValue, textx.Cut(s, 40))
			}
			want = append(want, Scope(s))
		}
	}
	c, ok, err := p.Consent(tx, subjectID)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, ErrNotFound
	}
	for _, s := range c.Scopes {
		if slices.Contains(want, s) {
			revoked = append(revoked, s)
		} else {
			kept = append(kept, s)
		}
	}
	return revoked, kept, nil
}

// RecordWithdrawalTx writes a withdrawal Withdrawal worked out: the record
// keeps only the scopes kept (sealed again under a new identity key), or,
// when none is left, the person is forgotten entirely (ForgetPersonTx).
// Withdrawing face_recognition moves RecognitionGen on. The caller erases
// the data the revoked scopes covered first, in the same transaction (it
// needs the person's face key for that).
func (p *Policy) RecordWithdrawalTx(tx *bolt.Tx, now time.Time, subjectID string, revoked, kept []Scope) error {
	if slices.Contains(revoked, ScopeFaceRecognition) {
		if err := BumpRecognitionTx(tx); err != nil {
			return err
		}
	}
	if _, err := audit.Append(tx, now, "consent_revoked", subjectID, map[string]string{"scopes": scopeList(revoked), "remaining": scopeList(kept)}); err != nil {
		return err
	}
	if len(kept) == 0 {
		return p.ForgetPersonTx(tx, subjectID)
	}
	ps, err := p.readPerson(tx, subjectID)
	if err != nil || ps == nil {
		return err
	}
	r, err := p.openRecord(subjectID, ps)
	if err != nil {
		return err
	}
	r.Scopes = kept
	if err := p.sealRecord(tx, ps, r); err != nil {
		return err
	}
	return p.writePerson(tx, subjectID, ps)
}

// ForgetPersonTx deletes subjectID's consent record; their identity and
// face slots are overwritten once tx commits, so nothing of them a freed
// page keeps (name, birthday, face data, queued artifacts) opens again.
// The caller erases their data first. Forgetting nobody is not an error.
func (p *Policy) ForgetPersonTx(tx *bolt.Tx, subjectID string) error {
	ps, err := p.readPerson(tx, subjectID)
	if err != nil || ps == nil {
		return err
	}
	if err := tx.Bucket(store.BucketSubjects).Delete(personName(subjectID)); err != nil {
		return err
	}
	slots := []uint32{ps.IdentitySlot}
	if ps.FaceSlot != nil {
		slots = append(slots, *ps.FaceSlot)
	}
	p.eraseOnCommit(tx, slots...)
	return nil
}

// Consent returns the consent of subjectID.
func (p *Policy) Consent(tx *bolt.Tx, subjectID string) (Consent, bool, error) {
	ps, err := p.readPerson(tx, subjectID)
	if err != nil || ps == nil {
		return Consent{}, false, err
	}
	r, err := p.openRecord(subjectID, ps)
	if err != nil {
		return Consent{}, false, err
	}
	return r.Consent, true, nil
}

// Consents lists every recorded consent, by subject id.
func (p *Policy) Consents(tx *bolt.Tx) ([]Consent, error) {
	var out []Consent
	for _, id := range p.people(tx) {
		c, ok, err := p.Consent(tx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

func (p *Policy) people(tx *bolt.Tx) []string {
	var ids []string
	c := tx.Bucket(store.BucketSubjects).Cursor()
	for k, _ := c.Seek(personPrefix); k != nil && bytes.HasPrefix(k, personPrefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(personPrefix):]))
	}
	return ids
}

// FaceKey returns the slot and key of subjectID's face key: ErrNotFound
// when no consent is recorded, ErrNoFaceKey when they have none.
func (p *Policy) FaceKey(tx *bolt.Tx, subjectID string) (uint32, []byte, error) {
	ps, err := p.readPerson(tx, subjectID)
	switch {
	case err != nil:
		return 0, nil, err
	case ps == nil:
		return 0, nil, ErrNotFound
	case ps.FaceSlot == nil:
		return 0, nil, ErrNoFaceKey
	case p.ring == nil:
		return 0, nil, ErrNoKeyring
	}
	k, err := p.ring.Get(*ps.FaceSlot)
	if err != nil {
		return 0, nil, fmt.Errorf("face key of %s: %w", subjectID, err)
	}
	return *ps.FaceSlot, k, nil
}

// FaceKeyForWriteTx is FaceKey, making the face key when the person has
// none yet. It refuses a person without the face_recognition scope.
func (p *Policy) FaceKeyForWriteTx(tx *bolt.Tx, subjectID string) (uint32, []byte, error) {
	slot, k, err := p.FaceKey(tx, subjectID)
	if !errors.Is(err, ErrNoFaceKey) {
		if errors.Is(err, ErrNotFound) {
			err = ErrConsentRequired
		}
		return slot, k, err
	}
	c, ok, err := p.Consent(tx, subjectID)
	if err != nil {
		return 0, nil, err
	}
	if !ok || !c.Has(ScopeFaceRecognition) {
		return 0, nil, ErrConsentRequired
	}
	ps, err := p.readPerson(tx, subjectID)
	if err != nil {
		return 0, nil, err
	}
	slot, k, err = p.ring.Alloc()
	if err != nil {
		return 0, nil, err
	}
	ps.FaceSlot = &slot
	return slot, k, p.writePerson(tx, subjectID, ps)
}

// DropFaceKeyTx forgets subjectID's face key; its slot is overwritten
// once tx commits. The caller has erased all their face data in tx.
func (p *Policy) DropFaceKeyTx(tx *bolt.Tx, subjectID string) error {
	ps, err := p.readPerson(tx, subjectID)
	if err != nil || ps == nil || ps.FaceSlot == nil {
		return err
	}
	p.eraseOnCommit(tx, *ps.FaceSlot)
	ps.FaceSlot = nil
	return p.writePerson(tx, subjectID, ps)
}

// FaceRotation is a face key being replaced: the caller seals everything
// the old key sealed again under the new one in the same transaction; the
// old slot is overwritten once it commits.
type FaceRotation struct {
	From, To       uint32
	OldKey, NewKey []byte
}

// RotateFaceKeyTx replaces subjectID's face key after part of their face
// data was erased, so that what freed pages keep of it can no longer be
// opened while the rest is kept. ok is false when they have no face key.
func (p *Policy) RotateFaceKeyTx(tx *bolt.Tx, subjectID string) (r FaceRotation, ok bool, err error) {
	from, oldKey, err := p.FaceKey(tx, subjectID)
	if errors.Is(err, ErrNoFaceKey) || errors.Is(err, ErrNotFound) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	to, newKey, err := p.ring.Alloc()
	if err != nil {
		return r, false, err
	}
	ps, err := p.readPerson(tx, subjectID)
	if err != nil {
		return r, false, err
	}
	ps.FaceSlot = &to
	if err := p.writePerson(tx, subjectID, ps); err != nil {
		return r, false, err
	}
	p.eraseOnCommit(tx, from)
	return FaceRotation{From: from, To: to, OldKey: oldKey, NewKey: newKey}, true, nil
}

// ScrubKeys erases every keyring slot no recorded person's key uses: the
// slots of erasures whose overwrite a crash cut short, and of grants that
// rolled back. Call it in a write transaction, so no grant allocates a
// slot meanwhile (the daemon does at start and with each retention pass).
func (p *Policy) ScrubKeys(tx *bolt.Tx) (int, error) {
	if p.ring == nil {
		return 0, ErrNoKeyring
	}
	used := map[uint32]bool{}
	for _, id := range p.people(tx) {
		ps, err := p.readPerson(tx, id)
		if err != nil {
			return 0, err
		}
		used[ps.IdentitySlot] = true
		if ps.FaceSlot != nil {
			used[*ps.FaceSlot] = true
		}
	}
	return p.ring.Scrub(func(slot uint32) bool { return used[slot] })
}

// MayRecognize answers whether face data of subjectID may be captured or
// used now for feature f (patrol or familiar_faces): the policy accepted
// and not paused, the region permits it, the feature is on, and the person
// consented to face recognition.
func (p *Policy) MayRecognize(tx *bolt.Tx, f Feature, subjectID string) error {
	if err := p.MayRecognizeAnyone(tx, f); err != nil {
		return err
	}
	c, ok, err := p.Consent(tx, subjectID)
	if err != nil {
		return err
	}
	if !ok || !c.Has(ScopeFaceRecognition) {
		return ErrConsentRequired
	}
	return nil
}

// MayRecognizeAnyone answers whether anyone may be recognised now for
// feature f: what MayRecognize asks, but a person's consent.
func (p *Policy) MayRecognizeAnyone(tx *bolt.Tx, f Feature) error {
	st, err := p.Read(tx)
	if err != nil {
		return err
	}
	switch {
	case st.PolicyVersion == "" || st.PausedForPolicy != "":
		return ErrPolicyNotAccepted
	case p.Prohibited(st.Region):
		return ErrRegionProhibited
	case !st.On(f):
		return ErrFeatureDisabled
	}
	return nil
}

func scopeList(s []Scope) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ",")
}

func (p *Policy) log() *slog.Logger {
	if p.logger != nil {
		return p.logger
	}
	return slog.Default()
}
