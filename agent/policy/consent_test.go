package policy

import (
	"bytes"
	"errors"
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/keys"
)

var deviceKey = keys.New()

func grant(t *testing.T, s interface {
	Update(func(*bolt.Tx) error) error
}, p *Policy, g Grant) error {
	t.Helper()
	return s.Update(func(tx *bolt.Tx) error { _, err := p.GrantConsent(tx, now, deviceKey, g); return err })
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
	s2.View(func(tx *bolt.Tx) (err error) { key, err = p.SubjectKey(tx, deviceKey, "p1"); return })
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
		if _, err := p.SubjectKey(tx, deviceKey, "p1"); !errors.Is(err, ErrConsentRequired) {
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
