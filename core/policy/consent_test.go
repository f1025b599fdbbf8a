package policy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

var deviceKey = keys.New()

func grant(t *testing.T, s interface {
	Update(func(*bolt.Tx) error) error
}, p *Policy, g Grant) error {
	t.Helper()
	return s.Update(func(tx *bolt.Tx) error { _, _, err := p.GrantConsent(tx, now, g); return err })
}

func TestP12_MinorNeedsAGuardian(t *testing.T) {
	s, p := open(t)
	g := Grant{SubjectID: "kid-1", DisplayName: "Kid", Minor: true, GrantedBy: "self", Scopes: []string{"face_recognition"}}
	if err := grant(t, s, p, g); !errors.Is(err, ErrGuardianRequired) {
		t.Fatalf("minor by self: %v", err)
	}
	g.GrantedBy = "guardian"
	if err := grant(t, s, p, g); err != nil {
		t.Fatal(err)
	}
}

func TestGrantValidation(t *testing.T) {
	s, p := open(t)
	good := Grant{SubjectID: "p_1-A", DisplayName: "Ana", Birthday: "02-29", GrantedBy: "self", Scopes: []string{"face_recognition", "cloud_backup"}}
	if err := grant(t, s, p, good); err != nil {
		t.Fatalf("good grant: %v", err)
	}
	bad := map[string]func(*Grant){
		"id with slash":   func(g *Grant) { g.SubjectID = "a/b" },
		"id too long":     func(g *Grant) { g.SubjectID = string(bytes.Repeat([]byte("a"), 65)) },
		"empty name":      func(g *Grant) { g.DisplayName = "" },
		"blank name":      func(g *Grant) { g.DisplayName = "   " },
		"name too long":   func(g *Grant) { g.DisplayName = string(bytes.Repeat([]byte("n"), 81)) },
		"birthday 02-30":  func(g *Grant) { g.Birthday = "02-30" },
		"birthday 13-01":  func(g *Grant) { g.Birthday = "13-01" },
		"birthday format": func(g *Grant) { g.Birthday = "1990-01-01" },
		"granted_by":      func(g *Grant) { g.GrantedBy = "owner" },
		"no scopes":       func(g *Grant) { g.Scopes = nil },
		"unknown scope":   func(g *Grant) { g.Scopes = []string{"marketing"} },
	}
	for name, mutate := range bad {
		g := good
		g.SubjectID = "other"
		mutate(&g)
		if err := grant(t, s, p, g); !errors.Is(err, ErrBadValue) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// revoke withdraws scopes the way the daemon does (Withdrawal, then the
// record).
func revoke(tx *bolt.Tx, p *Policy, subject string, scopes []string) ([]Scope, error) {
	revoked, kept, err := p.Withdrawal(tx, subject, scopes)
	if err != nil {
		return nil, err
	}
	return revoked, p.RecordWithdrawalTx(tx, now, subject, revoked, kept)
}

func TestP5_NamesAreSealedAndRevocationForgetsThePerson(t *testing.T) {
	s, p := open(t)
	g := Grant{SubjectID: "p1", DisplayName: "Zebulon Quixote", Birthday: "07-14", GrantedBy: "self", Scopes: []string{"face_recognition", "cloud_backup"}}
	if err := grant(t, s, p, g); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, _ := os.ReadFile(s.Path())
	if bytes.Contains(raw, []byte("Zebulon")) || bytes.Contains(raw, []byte("07-14")) || bytes.Contains(raw, []byte(`"granted_at"`)) {
		t.Fatal("the consent record is stored in the clear")
	}
	s2 := reopen(t, s.Path())
	// Partial revocation keeps the person; full revocation forgets them.
	s2.Update(func(tx *bolt.Tx) error {
		got, err := revoke(tx, p, "p1", []string{"cloud_backup"})
		if err != nil || len(got) != 1 || got[0] != ScopeCloudBackup {
			t.Fatalf("revoke cloud_backup: %v %v", got, err)
		}
		c, ok, _ := p.Consent(tx, "p1")
		if !ok || c.Has(ScopeCloudBackup) || !c.Has(ScopeFaceRecognition) {
			t.Fatalf("after partial revoke: %+v", c)
		}
		if _, err := revoke(tx, p, "p1", nil); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := p.Consent(tx, "p1"); ok {
			t.Fatal("consent survives full revocation")
		}
		if _, _, err := p.FaceKey(tx, "p1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("face key survives revocation: %v", err)
		}
		if _, err := revoke(tx, p, "p1", nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		return nil
	})
	if n := p.ring.Used(); n != 0 {
		t.Fatalf("%d keyring slots still occupied after the person was forgotten", n)
	}
}

// A grant that names fewer scopes than the last one reports the scopes it
// drops, so the daemon withdraws them as revoke_consent does.
func TestP13_ANarrowerGrantReportsTheScopesItDrops(t *testing.T) {
	s, p := open(t)
	if err := grant(t, s, p, Grant{SubjectID: "p1", DisplayName: "P", GrantedBy: "self", Scopes: []string{"face_recognition", "cloud_backup"}}); err != nil {
		t.Fatal(err)
	}
	s.Update(func(tx *bolt.Tx) error {
		_, dropped, err := p.GrantConsent(tx, now, Grant{SubjectID: "p1", DisplayName: "P", GrantedBy: "self", Scopes: []string{"cloud_backup"}})
		if err != nil || len(dropped) != 1 || dropped[0] != ScopeFaceRecognition {
			t.Fatalf("narrower grant: dropped %v, %v", dropped, err)
		}
		return nil
	})
}

func TestP6_MayRecognizeChecksEveryCondition(t *testing.T) {
	s, p := open(t)
	check := func() error {
		var err error
		s.View(func(tx *bolt.Tx) error { err = p.MayRecognize(tx, Patrol, "p1"); return nil })
		return err
	}
	if err := check(); !errors.Is(err, ErrPolicyNotAccepted) {
		t.Fatalf("before accept: %v", err)
	}
	s.Update(func(tx *bolt.Tx) error { _, err := p.AcceptPolicy(tx, now, "v1"); return err })
	if err := check(); !errors.Is(err, ErrFeatureDisabled) {
		t.Fatalf("patrol off: %v", err)
	}
	s.Update(func(tx *bolt.Tx) error { _, err := p.SetFeatures(tx, now, map[Feature]bool{Patrol: true}); return err })
	if err := check(); !errors.Is(err, ErrConsentRequired) {
		t.Fatalf("no consent: %v", err)
	}
	grant(t, s, p, Grant{SubjectID: "p1", DisplayName: "P", GrantedBy: "self", Scopes: []string{"cloud_backup"}})
	if err := check(); !errors.Is(err, ErrConsentRequired) {
		t.Fatalf("consent without face_recognition: %v", err)
	}
	grant(t, s, p, Grant{SubjectID: "p1", DisplayName: "P", GrantedBy: "self", Scopes: []string{"face_recognition"}})
	if err := check(); err != nil {
		t.Fatalf("all conditions hold: %v", err)
	}
	s.Update(func(tx *bolt.Tx) error { _, err := p.SetRegion(tx, now, "US-IL", validRegion); return err })
	if err := check(); !errors.Is(err, ErrRegionProhibited) {
		t.Fatalf("in Illinois: %v", err)
	}
}

// Promise P5 (withdrawal erases every copy): bbolt keeps a deleted or
// replaced record's page until it is reused, so the store file may still
// hold an old copy of the person's sealed record. Every change seals it
// under a new identity key and overwrites the old key's slot in place, so
// no key left in the keyring file opens that copy.
func TestP5_OldCopiesOfAConsentCannotBeOpenedFromWhatTheStoreFileMayKeep(t *testing.T) {
	s, p := open(t)
	g := Grant{SubjectID: "p1", DisplayName: "Zebulon Quixote", Birthday: "07-14", GrantedBy: "self", Scopes: []string{"face_recognition", "cloud_backup"}}
	if err := grant(t, s, p, g); err != nil {
		t.Fatal(err)
	}
	sealedCopy := func() []byte {
		var ps person
		s.View(func(tx *bolt.Tx) error {
			return json.Unmarshal(tx.Bucket(store.BucketSubjects).Get(personName("p1")), &ps)
		})
		return ps.Sealed
	}
	ringOpens := func(sealed []byte) bool {
		ringFile, err := os.ReadFile(filepath.Join(filepath.Dir(s.Path()), "people.keys"))
		if err != nil {
			t.Fatal(err)
		}
		for o := 0; o+keys.Size <= len(ringFile); o += keys.Size {
			if _, err := keys.Open(ringFile[o:o+keys.Size], sealed, recordAAD("p1")); err == nil {
				return true
			}
		}
		return false
	}
	first := sealedCopy() // as a freed page would keep it
	if !ringOpens(first) {
		t.Fatal("the live record does not open: the test reads the wrong bytes")
	}
	s.Update(func(tx *bolt.Tx) error { _, err := revoke(tx, p, "p1", []string{"cloud_backup"}); return err })
	if ringOpens(first) {
		t.Fatal("after a partial revocation, the old copy of the record still opens")
	}
	second := sealedCopy()
	s.Update(func(tx *bolt.Tx) error { _, err := revoke(tx, p, "p1", nil); return err })
	if ringOpens(second) {
		t.Fatal("after the person was forgotten, their last record still opens")
	}
}

// The face key: made for a person who consents to recognition, replaced
// (the old slot overwritten once the rotation commits) and dropped.
func TestP5_FaceKeysAreMadeReplacedAndErased(t *testing.T) {
	s, p := open(t)
	grant(t, s, p, Grant{SubjectID: "cb", DisplayName: "C", GrantedBy: "self", Scopes: []string{"cloud_backup"}})
	grant(t, s, p, Grant{SubjectID: "fr", DisplayName: "F", GrantedBy: "self", Scopes: []string{"face_recognition"}})
	var first uint32
	s.Update(func(tx *bolt.Tx) error {
		if _, _, err := p.FaceKeyForWriteTx(tx, "cb"); !errors.Is(err, ErrConsentRequired) {
			t.Errorf("face key for a person without face_recognition: %v", err)
		}
		slot, _, err := p.FaceKeyForWriteTx(tx, "fr")
		if err != nil {
			t.Fatal(err)
		}
		first = slot
		return nil
	})
	var rot FaceRotation
	s.Update(func(tx *bolt.Tx) error {
		r, ok, err := p.RotateFaceKeyTx(tx, "fr")
		if err != nil || !ok || r.From != first || r.To == first || bytes.Equal(r.OldKey, r.NewKey) {
			t.Fatalf("rotation %+v %v %v", r, ok, err)
		}
		if _, err := p.ring.Get(first); err != nil {
			t.Fatal("the old slot went before the rotation committed")
		}
		rot = r
		return nil
	})
	if _, err := p.ring.Get(first); !errors.Is(err, keys.ErrNoSlot) {
		t.Fatalf("old face slot after the rotation committed: %v", err)
	}
	s.Update(func(tx *bolt.Tx) error { return p.DropFaceKeyTx(tx, "fr") })
	if _, err := p.ring.Get(rot.To); !errors.Is(err, keys.ErrNoSlot) {
		t.Fatalf("face slot after the key was dropped: %v", err)
	}
	s.View(func(tx *bolt.Tx) error {
		if _, _, err := p.FaceKey(tx, "fr"); !errors.Is(err, ErrNoFaceKey) {
			t.Fatalf("face key after drop: %v", err)
		}
		return nil
	})
}

// Grants that never committed leave an allocated slot; ScrubKeys frees it
// and leaves the slots of recorded people alone.
func TestScrubKeysFreesOnlyUnrecordedSlots(t *testing.T) {
	s, p := open(t)
	if err := grant(t, s, p, Grant{SubjectID: "kept", DisplayName: "K", GrantedBy: "self", Scopes: []string{"face_recognition"}}); err != nil {
		t.Fatal(err)
	}
	rollback := errors.New("command failed later")
	err := s.Update(func(tx *bolt.Tx) error {
		if _, _, err := p.GrantConsent(tx, now, Grant{SubjectID: "lost", DisplayName: "L", GrantedBy: "self", Scopes: []string{"face_recognition"}}); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) || p.ring.Used() != 2 {
		t.Fatalf("rolled-back grant: %v, %d slots used", err, p.ring.Used())
	}
	s.Update(func(tx *bolt.Tx) error { _, err := p.ScrubKeys(tx); return err })
	if p.ring.Used() != 1 {
		t.Fatalf("%d slots used after the scrub, want 1", p.ring.Used())
	}
	s.View(func(tx *bolt.Tx) error {
		if _, ok, err := p.Consent(tx, "kept"); err != nil || !ok {
			t.Fatalf("recorded person's consent after the scrub: %v", err)
		}
		return nil
	})
}

// A store written before per-purpose keys keeps one key per person
// (sealed by a keyring slot, or by the device key in the oldest stores)
// and the consent record in clear but for the sealed name. At start each
// person moves to a record sealed whole under an identity key; their old
// key is handed back so their face data can be sealed again, and its slot
// is overwritten.
func TestMigratePeopleMovesLegacyRecordsToPerPurposeKeys(t *testing.T) {
	s, p := open(t)
	legacyRing := keys.New()
	legacyDev := keys.New()
	var oldSlot uint32
	err := s.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketSubjects)
		slot, kek, err := p.ring.Alloc()
		if err != nil {
			return err
		}
		oldSlot = slot
		sealed, _ := keys.Seal(kek, legacyRing, []byte("subject-key/ring-1"))
		b.Put([]byte("ringkey/ring-1"), append(binary.BigEndian.AppendUint32(nil, slot), sealed...))
		name, _ := keys.Seal(legacyRing, []byte("Ringo"), []byte("name/ring-1"))
		rec, _ := json.Marshal(legacyConsent{Consent: Consent{SubjectID: "ring-1", GrantedBy: "self", Scopes: []Scope{ScopeFaceRecognition}}, SealedName: name})
		b.Put([]byte("consent/ring-1"), rec)
		sealedDev, _ := keys.Seal(deviceKey, legacyDev, []byte("subject-key/dev-1"))
		b.Put([]byte("key/dev-1"), sealedDev)
		rec, _ = json.Marshal(legacyConsent{Consent: Consent{SubjectID: "dev-1", GrantedBy: "guardian", Minor: true, Scopes: []Scope{ScopeCloudBackup}}})
		return b.Put([]byte("consent/dev-1"), rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	var moved []LegacyPerson
	err = s.Update(func(tx *bolt.Tx) (err error) { moved, err = p.MigratePeopleTx(tx, deviceKey); return })
	if err != nil || len(moved) != 2 {
		t.Fatalf("moved %d, %v", len(moved), err)
	}
	for _, m := range moved {
		want := map[string][]byte{"ring-1": legacyRing, "dev-1": legacyDev}[m.SubjectID]
		if !bytes.Equal(m.Key, want) {
			t.Errorf("%s: legacy key %x, want %x", m.SubjectID, m.Key, want)
		}
	}
	s.View(func(tx *bolt.Tx) error {
		c, ok, err := p.Consent(tx, "dev-1")
		if err != nil || !ok || !c.Minor || !c.Has(ScopeCloudBackup) {
			t.Fatalf("migrated consent %+v %v %v", c, ok, err)
		}
		ps, _ := p.readPerson(tx, "ring-1")
		r, err := p.openRecord("ring-1", ps)
		if err != nil || r.DisplayName != "Ringo" {
			t.Fatalf("migrated name %q, %v", r.DisplayName, err)
		}
		for _, k := range []string{"consent/ring-1", "ringkey/ring-1", "key/dev-1", "consent/dev-1"} {
			if tx.Bucket(store.BucketSubjects).Get([]byte(k)) != nil {
				t.Errorf("legacy entry %s survives", k)
			}
		}
		return nil
	})
	if _, err := p.ring.Get(oldSlot); !errors.Is(err, keys.ErrNoSlot) {
		t.Fatalf("legacy slot after migration: %v", err)
	}
	err = s.Update(func(tx *bolt.Tx) error {
		moved, err := p.MigratePeopleTx(tx, deviceKey)
		if len(moved) != 0 {
			t.Errorf("second migration moved %d", len(moved))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
