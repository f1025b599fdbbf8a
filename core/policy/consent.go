package policy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
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
)

// Consent is one person's recorded consent. The display name and birthday
// are sealed with the person's own key; the rest is what the device needs
// to decide, and is safe to show as ids and times.
type Consent struct {
	SubjectID      string    `json:"subject_id"`
	Minor          bool      `json:"minor"`
	GrantedBy      string    `json:"granted_by"`
	Scopes         []Scope   `json:"scopes"`
	GrantedAt      time.Time `json:"granted_at"`
	PolicyVersion  string    `json:"policy_version"`
	SealedName     []byte    `json:"sealed_name"`
	SealedBirthday []byte    `json:"sealed_birthday,omitempty"`
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

// A person's key is stored under ringKeyName, sealed by a key in a
// keyring slot: 4 bytes of slot (big endian), then the sealed key. Stores
// written before the keyring hold it under legacyKeyName, sealed by the
// device key; AdoptLegacyKeys moves those.
func ringKeyName(id string) []byte        { return []byte("ringkey/" + id) }
func legacyKeyName(id string) []byte      { return []byte("key/" + id) }
func subjectConsentName(id string) []byte { return []byte("consent/" + id) }

// GrantConsent records (or replaces) a person's consent. A new person gets
// a key of their own, which seals their name and birthday now and their
// face data later.
func (p *Policy) GrantConsent(tx *bolt.Tx, now time.Time, g Grant) (Consent, error) {
	if !ValidSubjectID(g.SubjectID) {
		return Consent{}, fmt.Errorf("%w: subject_id must match [A-Za-z0-9_-]{1,64}", ErrBadValue)
	}
	n := utf8.RuneCountInString(g.DisplayName)
	if !utf8.ValidString(g.DisplayName) || n < 1 || n > 80 || strings.TrimSpace(g.DisplayName) == "" {
		return Consent{}, fmt.Errorf("%w: display_name must be 1..80 characters", ErrBadValue)
	}
	if g.Birthday != "" && !validBirthday(g.Birthday) {
		return Consent{}, fmt.Errorf("%w: birthday must be a real MM-DD", ErrBadValue)
	}
	if g.GrantedBy != "self" && g.GrantedBy != "guardian" {
		return Consent{}, fmt.Errorf("%w: granted_by must be self or guardian", ErrBadValue)
	}
	if g.Minor && g.GrantedBy != "guardian" {
		return Consent{}, ErrGuardianRequired
	}
	if len(g.Scopes) == 0 {
		return Consent{}, fmt.Errorf("%w: scopes must name at least one purpose", ErrBadValue)
	}
	var scopes []Scope
	for _, s := range g.Scopes {
		if !slices.Contains(Scopes, Scope(s)) {
			return Consent{}, fmt.Errorf("%w: unknown scope %q", ErrBadValue, trimTo(s, 40))
		}
		if !slices.Contains(scopes, Scope(s)) {
			scopes = append(scopes, Scope(s))
		}
	}
	sort.Slice(scopes, func(i, j int) bool { return scopes[i] < scopes[j] })
	st, err := p.Read(tx)
	if err != nil {
		return Consent{}, err
	}
	key, err := p.subjectKey(tx, g.SubjectID, true)
	if err != nil {
		return Consent{}, err
	}
	c := Consent{SubjectID: g.SubjectID, Minor: g.Minor, GrantedBy: g.GrantedBy, Scopes: scopes,
		GrantedAt: now.UTC(), PolicyVersion: st.PolicyVersion}
	if c.SealedName, err = keys.Seal(key, []byte(g.DisplayName), []byte("name/"+g.SubjectID)); err != nil {
		return Consent{}, err
	}
	if g.Birthday != "" {
		if c.SealedBirthday, err = keys.Seal(key, []byte(g.Birthday), []byte("birthday/"+g.SubjectID)); err != nil {
			return Consent{}, err
		}
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return Consent{}, err
	}
	if err := tx.Bucket(store.BucketSubjects).Put(subjectConsentName(g.SubjectID), raw); err != nil {
		return Consent{}, err
	}
	fields := map[string]string{"scopes": scopeList(scopes), "granted_by": g.GrantedBy, "minor": fmt.Sprint(g.Minor), "policy_version": st.PolicyVersion}
	if _, err := audit.Append(tx, now, "consent_granted", g.SubjectID, fields); err != nil {
		return Consent{}, err
	}
	return c, nil
}

// RevokeConsent withdraws scopes (all when none are named). It returns
// the scopes actually withdrawn; when no scope remains the consent record
// and the person's key are destroyed, which makes every sealed copy of
// their data unreadable. The caller erases what the scopes covered.
func (p *Policy) RevokeConsent(tx *bolt.Tx, now time.Time, subjectID string, scopes []string) ([]Scope, error) {
	if !ValidSubjectID(subjectID) {
		return nil, fmt.Errorf("%w: subject_id must match [A-Za-z0-9_-]{1,64}", ErrBadValue)
	}
	c, ok, err := p.Consent(tx, subjectID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	want := Scopes
	if len(scopes) > 0 {
		want = nil
		for _, s := range scopes {
			if !slices.Contains(Scopes, Scope(s)) {
				return nil, fmt.Errorf("%w: unknown scope %q", ErrBadValue, trimTo(s, 40))
			}
			want = append(want, Scope(s))
		}
	}
	var revoked, kept []Scope
	for _, s := range c.Scopes {
		if slices.Contains(want, s) {
			revoked = append(revoked, s)
		} else {
			kept = append(kept, s)
		}
	}
	b := tx.Bucket(store.BucketSubjects)
	if len(kept) == 0 {
		if err := b.Delete(subjectConsentName(subjectID)); err != nil {
			return nil, err
		}
		// The caller erases the key's slot (EraseKeySlot) once this
		// commits; ScrubKeys catches it at the next start otherwise.
		if err := b.Delete(ringKeyName(subjectID)); err != nil {
			return nil, err
		}
		if err := b.Delete(legacyKeyName(subjectID)); err != nil {
			return nil, err
		}
	} else {
		c.Scopes = kept
		raw, _ := json.Marshal(c)
		if err := b.Put(subjectConsentName(subjectID), raw); err != nil {
			return nil, err
		}
	}
	if _, err := audit.Append(tx, now, "consent_revoked", subjectID, map[string]string{"scopes": scopeList(revoked), "remaining": scopeList(kept)}); err != nil {
		return nil, err
	}
	return revoked, nil
}

// Consent returns the consent of subjectID.
func (p *Policy) Consent(tx *bolt.Tx, subjectID string) (Consent, bool, error) {
	raw := tx.Bucket(store.BucketSubjects).Get(subjectConsentName(subjectID))
	if raw == nil {
		return Consent{}, false, nil
	}
	var c Consent
	if err := json.Unmarshal(raw, &c); err != nil {
		return Consent{}, false, fmt.Errorf("consent of %s unreadable: %w", subjectID, err)
	}
	return c, true, nil
}

// Consents lists every recorded consent, by subject id.
func (p *Policy) Consents(tx *bolt.Tx) ([]Consent, error) {
	var out []Consent
	c := tx.Bucket(store.BucketSubjects).Cursor()
	prefix := []byte("consent/")
	for k, v := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, v = c.Next() {
		var cs Consent
		if err := json.Unmarshal(v, &cs); err != nil {
			return nil, fmt.Errorf("consent %s unreadable: %w", k, err)
		}
		out = append(out, cs)
	}
	return out, nil
}

// SubjectKey returns the person's key, or an error when they have no
// recorded consent (their key is gone with it).
func (p *Policy) SubjectKey(tx *bolt.Tx, subjectID string) ([]byte, error) {
	return p.subjectKey(tx, subjectID, false)
}

// ErrNoKeyring: the Policy was built without a keyring.
var ErrNoKeyring = errors.New("policy: no keyring for people's keys")

func (p *Policy) subjectKey(tx *bolt.Tx, id string, create bool) ([]byte, error) {
	b := tx.Bucket(store.BucketSubjects)
	aad := []byte("subject-key/" + id)
	if p.ring == nil {
		return nil, ErrNoKeyring
	}
	if v := b.Get(ringKeyName(id)); v != nil {
		if len(v) < 4 {
			return nil, fmt.Errorf("key of %s is corrupt", id)
		}
		kek, err := p.ring.Get(binary.BigEndian.Uint32(v))
		if err != nil {
			return nil, fmt.Errorf("key of %s: %w", id, err)
		}
		return keys.Open(kek, v[4:], aad)
	}
	if !create {
		return nil, ErrConsentRequired
	}
	slot, kek, err := p.ring.Alloc() // a rolled-back grant leaves it to ScrubKeys
	if err != nil {
		return nil, err
	}
	k := keys.New()
	sealed, err := keys.Seal(kek, k, aad)
	if err != nil {
		return nil, err
	}
	v := binary.BigEndian.AppendUint32(nil, slot)
	return k, b.Put(ringKeyName(id), append(v, sealed...))
}

// KeySlot is the keyring slot of subjectID's key, if they have one. Read
// it before a revocation, to erase the slot once the revocation commits.
func (p *Policy) KeySlot(tx *bolt.Tx, subjectID string) (uint32, bool) {
	v := tx.Bucket(store.BucketSubjects).Get(ringKeyName(subjectID))
	if len(v) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// EraseKeySlot overwrites a slot whose key the store no longer references
// (after the revocation that deleted it committed). Until then the slot
// stays occupied, so no grant can be given it meanwhile.
func (p *Policy) EraseKeySlot(slot uint32) error {
	if p.ring == nil {
		return ErrNoKeyring
	}
	return p.ring.Erase(slot)
}

// ScrubKeys erases every keyring slot no recorded person's key uses: the
// slots of revocations whose EraseKeySlot a crash cut short, and of grants
// that rolled back. The daemon runs it at start. Call it in a write
// transaction, so no grant allocates a slot meanwhile.
func (p *Policy) ScrubKeys(tx *bolt.Tx) (int, error) {
	if p.ring == nil {
		return 0, ErrNoKeyring
	}
	used := map[uint32]bool{}
	c := tx.Bucket(store.BucketSubjects).Cursor()
	prefix := []byte("ringkey/")
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) >= 4 {
			used[binary.BigEndian.Uint32(v)] = true
		}
	}
	return p.ring.Scrub(func(slot uint32) bool { return used[slot] })
}

// AdoptLegacyKeys moves people's keys written before the keyring (sealed
// by the device key) into keyring slots, inside tx. The old sealed copies
// may linger in the store's free pages; keys adopted here are protected
// from the next erasure on.
func (p *Policy) AdoptLegacyKeys(tx *bolt.Tx, deviceKey []byte) (int, error) {
	if p.ring == nil {
		return 0, ErrNoKeyring
	}
	b := tx.Bucket(store.BucketSubjects)
	prefix := []byte("key/")
	var ids []string
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	for _, id := range ids {
		aad := []byte("subject-key/" + id)
		key, err := keys.Open(deviceKey, b.Get(legacyKeyName(id)), aad)
		if err != nil {
			return 0, fmt.Errorf("legacy key of %s: %w", id, err)
		}
		slot, kek, err := p.ring.Alloc()
		if err != nil {
			return 0, err
		}
		sealed, err := keys.Seal(kek, key, aad)
		if err != nil {
			return 0, err
		}
		if err := b.Put(ringKeyName(id), append(binary.BigEndian.AppendUint32(nil, slot), sealed...)); err != nil {
			return 0, err
		}
		if err := b.Delete(legacyKeyName(id)); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// MayRecognize answers whether face data of subjectID may be captured or
// used now for feature f (patrol or familiar_faces): the policy accepted
// and not paused, the region permits it, the feature is on, and the person
// consented to face recognition.
func (p *Policy) MayRecognize(tx *bolt.Tx, f Feature, subjectID string) error {
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
	c, ok, err := p.Consent(tx, subjectID)
	if err != nil {
		return err
	}
	if !ok || !c.Has(ScopeFaceRecognition) {
		return ErrConsentRequired
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

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
