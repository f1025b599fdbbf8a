package policy

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

var now = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func validRegion(r string) bool { return len(r) >= 2 }

func reopen(t *testing.T, path string) *store.Store {
	t.Helper()
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func open(t *testing.T) (*store.Store, *Policy) {
	t.Helper()
	dir := t.TempDir()
	s, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ring, err := keys.OpenKeyring(filepath.Join(dir, "people.keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ring.Close() })
	return s, New("US-CA", []string{"US-IL"}, ring)
}

func TestP1_EveryFeatureIsOffByDefault(t *testing.T) {
	s, p := open(t)
	_ = s.View(func(tx *bolt.Tx) error {
		st, err := p.Read(tx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range Features {
			if st.On(f) || p.Allows(st, f) {
				t.Errorf("%s is on in a new store", f)
			}
		}
		if st.Region != "US-CA" || st.PolicyVersion != "" {
			t.Errorf("new state: %+v", st)
		}
		return nil
	})
}

func TestP14_GatedFeaturesRefuseToTurnOnBeforeAcceptPolicy(t *testing.T) {
	s, p := open(t)
	for _, f := range Features {
		err := s.Update(func(tx *bolt.Tx) error {
			_, err := p.SetFeatures(tx, now, map[Feature]bool{f: true})
			return err
		})
		if Gated(f) && !errors.Is(err, ErrPolicyNotAccepted) {
			t.Errorf("%s turned on before accept_policy: %v", f, err)
		}
		if !Gated(f) && err != nil {
			t.Errorf("%s (not gated) refused: %v", f, err)
		}
	}
	// A refused batch changes nothing, not even the ungated part.
	_ = s.Update(func(tx *bolt.Tx) error {
		_, err := p.SetFeatures(tx, now, map[Feature]bool{BlurUnknownFaces: false, AutoPhoto: true})
		if err == nil {
			t.Fatal("batch with a gated feature accepted")
		}
		return err
	})
	_ = s.Update(func(tx *bolt.Tx) error {
		if _, err := p.AcceptPolicy(tx, now, "2026-11"); err != nil {
			t.Fatal(err)
		}
		ch, err := p.SetFeatures(tx, now, map[Feature]bool{AutoPhoto: true})
		if err != nil {
			t.Fatal(err)
		}
		if !p.Allows(ch.After, AutoPhoto) {
			t.Error("auto_photo not allowed after accept + on")
		}
		return nil
	})
}

func TestP8_FaceFeaturesRefusedAndSwitchedOffInProhibitedRegion(t *testing.T) {
	s, p := open(t)
	err := s.Update(func(tx *bolt.Tx) error {
		if _, err := p.AcceptPolicy(tx, now, "v1"); err != nil {
			return err
		}
		if _, err := p.SetFeatures(tx, now, map[Feature]bool{Patrol: true, AutoPhoto: true}); err != nil {
			return err
		}
		ch, err := p.SetRegion(tx, now, "US-IL", validRegion)
		if err != nil {
			return err
		}
		if !ch.TurnedOff(Patrol) || ch.After.On(Patrol) {
			t.Error("patrol still on in a prohibited region")
		}
		if !ch.After.On(AutoPhoto) {
			t.Error("auto_photo (no biometrics) switched off by the region change")
		}
		if _, err := p.SetFeatures(tx, now, map[Feature]bool{FamiliarFaces: true}); !errors.Is(err, ErrRegionProhibited) {
			t.Errorf("familiar_faces turned on in US-IL: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestP15_PauseHoldsGatedFeaturesUntilThatVersionIsAccepted(t *testing.T) {
	s, p := open(t)
	_ = s.Update(func(tx *bolt.Tx) error {
		p.AcceptPolicy(tx, now, "v1")
		p.SetFeatures(tx, now, map[Feature]bool{AutoPhoto: true})
		ch, _ := p.PauseFor(tx, now, "v2")
		if p.Allows(ch.After, AutoPhoto) {
			t.Error("auto_photo allowed while paused")
		}
		ch, _ = p.AcceptPolicy(tx, now, "v1")
		if p.Allows(ch.After, AutoPhoto) {
			t.Error("accepting another version lifted the pause")
		}
		ch, _ = p.AcceptPolicy(tx, now, "v2")
		if !p.Allows(ch.After, AutoPhoto) || ch.After.PausedForPolicy != "" {
			t.Error("accepting the awaited version did not lift the pause")
		}
		return nil
	})
}

func TestEveryDecisionIsAudited(t *testing.T) {
	s, p := open(t)
	_ = s.Update(func(tx *bolt.Tx) error {
		p.AcceptPolicy(tx, now, "v1")
		p.SetFeatures(tx, now, map[Feature]bool{AutoPhoto: true, Patrol: true})
		p.SetFeatures(tx, now, map[Feature]bool{AutoPhoto: true}) // no change, no record
		p.SetRegion(tx, now, "US-WA", validRegion)
		return nil
	})
	var recs []audit.Record
	_ = s.View(func(tx *bolt.Tx) (err error) { recs, err = audit.Newest(tx, 100); return })
	var types []string
	for i := len(recs) - 1; i >= 0; i-- {
		types = append(types, recs[i].Type+":"+recs[i].Fields["feature"])
	}
	want := []string{"policy_accepted:", "feature_changed:auto_photo", "feature_changed:patrol", "region_changed:"}
	if len(types) != len(want) {
		t.Fatalf("audit types %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("audit types %v, want %v", types, want)
		}
	}
}
