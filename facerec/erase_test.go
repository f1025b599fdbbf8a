package facerec

import (
	"bytes"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// enrolled returns a rig where ana is enrolled and was seen once.
func enrolled(t *testing.T) *rig {
	r := newRig(t)
	r.consent("ana")
	r.start("ana")
	for range 3 {
		r.frame("A")
	}
	if len(r.list(&r.seen)) != 1 {
		t.Fatalf("sightings %v", r.list(&r.seen))
	}
	return r
}

// Retention erases the sightings seen before a cutoff and keeps the rest;
// EraseTx says whether anything of the person remains.
func TestP11_EraseBeforeACutoffKeepsTheNewerSightings(t *testing.T) {
	r := enrolled(t)
	r.advance(time.Hour)
	r.frame("A") // a second sighting, an hour later
	cutoff := r.clock().Add(-30 * time.Minute)
	r.st.Update(func(tx *bolt.Tx) error {
		f, remains, err := r.svc.EraseTx(tx, "ana", What{Sightings: true, Before: cutoff})
		if err != nil || f.Sightings != 1 || f.Templates != 0 || !remains {
			t.Fatalf("erase before cutoff: %+v remains=%v %v", f, remains, err)
		}
		return nil
	})
	r.st.View(func(tx *bolt.Tx) error {
		h, _ := r.svc.Holdings(tx)
		if h["ana"].Sightings != 1 || h["ana"].Templates != 1 || !h["ana"].NewestSighting.After(cutoff) {
			t.Fatalf("holdings after retention %+v", h["ana"])
		}
		return nil
	})
	r.st.Update(func(tx *bolt.Tx) error {
		_, remains, err := r.svc.EraseTx(tx, "ana", What{Templates: true, Sightings: true})
		if err != nil || remains {
			t.Fatalf("erase all: remains=%v %v", remains, err)
		}
		return nil
	})
}

// Promise P5: after part of a person's face data is erased, the rest is
// sealed again under a new face key, so the old key (and with it every
// copy of the erased part a freed page keeps) can be destroyed.
func TestP5_ResealMovesWhatIsKeptToTheNewKey(t *testing.T) {
	r := enrolled(t)
	var oldCopy []byte // what a freed page keeps of the erased sighting
	var rot policy.FaceRotation
	err := r.st.Update(func(tx *bolt.Tx) error {
		for k, v := range r.facesBucket() {
			if bytes.HasPrefix([]byte(k), sightPrefix) {
				oldCopy = []byte(v)
			}
		}
		if _, _, err := r.svc.EraseTx(tx, "ana", What{Sightings: true}); err != nil {
			return err
		}
		var ok bool
		var err error
		if rot, ok, err = r.pol.RotateFaceKeyTx(tx, "ana"); err != nil || !ok {
			t.Fatalf("rotate: %v %v", ok, err)
		}
		n, err := r.svc.ResealTx(tx, "ana", rot.OldKey, rot.NewKey)
		if n != 1 {
			t.Errorf("resealed %d records, want the templates", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if oldCopy == nil {
		t.Fatal("no sighting record found before the erasure")
	}
	// The templates open with the new key and not the old one.
	r.st.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(store.BucketFaces).Get(tplKey("ana"))
		if _, err := keys.Open(rot.NewKey, v, tplKey("ana")); err != nil {
			t.Fatalf("templates under the new key: %v", err)
		}
		if _, err := keys.Open(rot.OldKey, v, tplKey("ana")); err == nil {
			t.Fatal("templates still open with the old key")
		}
		return nil
	})
	// Recognition goes on with the new key.
	r.advance(time.Hour)
	r.frame("A")
	if len(r.list(&r.seen)) != 2 {
		t.Fatalf("not recognised after the rotation: %v", r.list(&r.seen))
	}
}

// Issue: a matcher built before a revocation committed could be stored
// after it and keep the revoked person "known" (so not blurred). A matcher
// is used only at the recognition generation it was built at.
func TestP5_AMatcherBuiltBeforeARevocationIsNeverUsedAfterIt(t *testing.T) {
	r := enrolled(t)
	faces := []Face{{Template: []byte("A-probe")}}
	if hide, known, _, err := r.svc.Strangers(faces); err != nil || len(hide) != 0 || !known {
		t.Fatalf("ana not recognised before the revocation: hide %v known %v %v", hide, known, err)
	}
	// The revocation commits, but the in-memory clean-up (Forgot) has not
	// run yet.
	r.st.Update(func(tx *bolt.Tx) error {
		if _, _, err := r.svc.EraseTx(tx, "ana", What{Templates: true, Sightings: true}); err != nil {
			return err
		}
		return r.revoke(tx, "ana")
	})
	if hide, known, _, err := r.svc.Strangers(faces); err != nil || len(hide) != 1 || known {
		t.Fatalf("after the revocation ana's face is still known: hide %v known %v %v", hide, known, err)
	}
}

// An enrollment window closes at the next frame once its subject may no
// longer be enrolled: nothing more is computed for it.
func TestEnrollmentWindowClosesWhenPatrolIsSwitchedOff(t *testing.T) {
	r := newRig(t)
	r.consent("ana")
	r.start("ana")
	r.frame("A")
	r.st.Update(func(tx *bolt.Tx) error {
		_, err := r.pol.SetFeatures(tx, r.now, map[policy.Feature]bool{policy.Patrol: false})
		return err
	})
	r.frame("A")
	if got := r.list(&r.failed); len(got) != 1 || got[0] != "ana:feature_disabled" {
		t.Fatalf("failures %v", got)
	}
	if r.svc.enrollingSubject() != "" {
		t.Fatal("the window is still open")
	}
}

// Templates record the model that made them; those of another model are
// stale and must be enrolled again.
func TestTemplatesOfAnotherModelAreStale(t *testing.T) {
	r := enrolled(t)
	r.st.View(func(tx *bolt.Tx) error {
		if stale, _ := r.svc.StaleTemplates(tx); len(stale) != 0 {
			t.Fatalf("stale %v with the same model", stale)
		}
		return nil
	})
	r.svc.rec = otherModel{}
	r.st.View(func(tx *bolt.Tx) error {
		if stale, _ := r.svc.StaleTemplates(tx); len(stale) != 1 || stale[0] != "ana" {
			t.Fatalf("stale %v after a model change", stale)
		}
		return nil
	})
	r.svc.invalidate()
	if r.svc.MayRecognizeAnyone() {
		t.Fatal("templates of another model are matched")
	}
}

type otherModel struct{ firstByte }

func (otherModel) Model() string { return "other-v2" }

// Issue: with patrol on but nobody enrolled who may be recognised, every
// stranger's face was still described. Such a frame is deleted unread.
func TestP7_NobodyToRecogniseMeansFramesAreNotEvenAnalysed(t *testing.T) {
	r := newRig(t)
	before := analysed.Load()
	r.frame("Z")
	r.frame("Y", "X")
	if n := analysed.Load() - before; n != 0 {
		t.Fatalf("%d frames analysed with nobody enrolled", n)
	}
	r.consent("ana")
	r.start("ana")
	r.frame("A")
	if analysed.Load() == before {
		t.Fatal("an enrollment frame was not analysed: the counter reads nothing")
	}
}
