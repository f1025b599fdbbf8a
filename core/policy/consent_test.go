package policy

import (
	"bytes"
	"encoding/binary"
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
	return s.Update(func(tx *bolt.Tx) error { _, err := p.GrantConsent(tx, now, g); return err })
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

func TestP5_NamesAreSealedAndRevocationDestroysTheKey(t *testing.T) {
	s, p := open(t)
	g := Grant{SubjectID: "p1", DisplayName: "Zebulon Quixote", Birthday: "07-14", GrantedBy: "self", Scopes: []string{"face_recognition", "cloud_backup"}}
	if err := grant(t, s, p, g); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, _ := os.ReadFile(s.Path())
	if bytes.Contains(raw, []byte("Zebulon")) || bytes.Contains(raw, []byte("07-14")) {
		t.Fatal("name or birthday stored in the clear")
	}
	s2 := reopen(t, s.Path())
	var key []byte
	s2.View(func(tx *bolt.Tx) (err error) { key, err = p.SubjectKey(tx, "p1"); return })
	if key == nil {
		t.Fatal("no subject key")
	}
	// Partial revocation keeps the person; full revocation erases them.
	s2.Update(func(tx *bolt.Tx) error {
		got, err := p.RevokeConsent(tx, now, "p1", []string{"cloud_backup"})
		if err != nil || len(got) != 1 || got[0] != ScopeCloudBackup {
			t.Fatalf("revoke cloud_backup: %v %v", got, err)
		}
		c, ok, _ := p.Consent(tx, "p1")
		if !ok || c.Has(ScopeCloudBackup) || !c.Has(ScopeFaceRecognition) {
			t.Fatalf("after partial revoke: %+v", c)
		}
		if _, err := p.RevokeConsent(tx, now, "p1", nil); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := p.Consent(tx, "p1"); ok {
			t.Fatal("consent survives full revocation")
		}
		if _, err := p.SubjectKey(tx, "p1"); !errors.Is(err, ErrConsentRequired) {
			t.Fatalf("subject key survives revocation: %v", err)
		}
		if _, err := p.RevokeConsent(tx, now, "p1", nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second revoke: %v", err)
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

// Promise P5 (withdrawal erases every copy): bbolt keeps a deleted
// record's page until it is reused, so the store file may still hold the
// person's sealed key after revocation. Its keyring slot is overwritten in
// place, so that copy, and the whole keyring file, no longer open it.
func TestP5_RevokedKeyCannotBeOpenedFromWhatTheStoreFileMayKeep(t *testing.T) {
	s, p := open(t)
	g := Grant{SubjectID: "p1", DisplayName: "Zebulon Quixote", GrantedBy: "self", Scopes: []string{"face_recognition"}}
	if err := grant(t, s, p, g); err != nil {
		t.Fatal(err)
	}
	var leftover, key []byte // what a freed page would still hold, and the key it seals
	s.View(func(tx *bolt.Tx) (err error) {
		leftover = bytes.Clone(tx.Bucket(store.BucketSubjects).Get(ringKeyName("p1")))
		key, err = p.SubjectKey(tx, "p1")
		return err
	})
	if len(leftover) < 4 || key == nil {
		t.Fatalf("no ring key recorded: %x", leftover)
	}
	slot := binary.BigEndian.Uint32(leftover)
	kek, err := p.ring.Get(slot)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *bolt.Tx) error {
		_, err := p.RevokeConsent(tx, now, "p1", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *bolt.Tx) error {
		n, err := p.ScrubKeys(tx)
		if n != 1 {
			t.Errorf("%d slots erased, want 1", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ring.Get(slot); !errors.Is(err, keys.ErrNoSlot) {
		t.Fatalf("slot after revocation: %v", err)
	}
	ringFile, err := os.ReadFile(filepath.Join(filepath.Dir(s.Path()), "people.keys"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ringFile, kek) {
		t.Fatal("the revoked person's slot key is still in the keyring file")
	}
	for o := 0; o+keys.Size <= len(ringFile); o += keys.Size {
		if got, err := keys.Open(ringFile[o:o+keys.Size], leftover[4:], []byte("subject-key/p1")); err == nil || bytes.Equal(got, key) {
			t.Fatal("the leftover sealed key opens with a key from the keyring file")
		}
	}
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
		if _, err := p.GrantConsent(tx, now, Grant{SubjectID: "lost", DisplayName: "L", GrantedBy: "self", Scopes: []string{"face_recognition"}}); err != nil {
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
		if _, err := p.SubjectKey(tx, "kept"); err != nil {
			t.Fatalf("recorded person's key after the scrub: %v", err)
		}
		return nil
	})
}

// A store written before the keyring keeps each person's key sealed by the
// device key; at start those keys move into the keyring unchanged.
func TestAdoptLegacyKeysKeepsEachPersonsKey(t *testing.T) {
	s, p := open(t)
	legacy := keys.New()
	err := s.Update(func(tx *bolt.Tx) error {
		sealed, err := keys.Seal(deviceKey, legacy, []byte("subject-key/old-1"))
		if err != nil {
			return err
		}
		return tx.Bucket(store.BucketSubjects).Put(legacyKeyName("old-1"), sealed)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *bolt.Tx) error {
		n, err := p.AdoptLegacyKeys(tx, deviceKey)
		if n != 1 {
			t.Errorf("adopted %d, want 1", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.View(func(tx *bolt.Tx) error {
		got, err := p.SubjectKey(tx, "old-1")
		if err != nil || !bytes.Equal(got, legacy) {
			t.Fatalf("adopted key %x, %v; want the legacy key", got, err)
		}
		if tx.Bucket(store.BucketSubjects).Get(legacyKeyName("old-1")) != nil {
			t.Fatal("the legacy entry is still there")
		}
		return nil
	})
	err = s.Update(func(tx *bolt.Tx) error { _, err := p.AdoptLegacyKeys(tx, keys.New()); return err })
	if err != nil {
		t.Fatalf("second adoption found something to do: %v", err)
	}
}
