package policy

import (
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// Promise P14: nothing leaves the device unless a consent covers it at
// that moment. One row per case that matters, face_template above all
// (the most sensitive way data leaves).
func TestP14_MaySendAsksEveryConditionForEveryKind(t *testing.T) {
	type row struct {
		kind     Kind
		features []Feature
		scopes   []string // the subject's consent; nil: none recorded
		region   string
		paused   bool
		out      Outgoing // Kind and Subject are filled in
		want     Verdict
	}
	fr, cb := "face_recognition", "cloud_backup"
	rows := []row{
		// face_template: the feature, both scopes, a permitted region.
		{kind: KindFaceTemplate, features: []Feature{CloudBackup}, scopes: []string{fr, cb}, want: Send},
		{kind: KindFaceTemplate, features: []Feature{}, scopes: []string{fr, cb}, want: Refuse},
		{kind: KindFaceTemplate, features: []Feature{CloudBackup}, scopes: []string{fr}, want: Refuse},
		{kind: KindFaceTemplate, features: []Feature{CloudBackup}, scopes: []string{cb}, want: Refuse},
		{kind: KindFaceTemplate, features: []Feature{CloudBackup}, scopes: nil, want: Refuse},
		{kind: KindFaceTemplate, features: []Feature{CloudBackup}, scopes: []string{fr, cb}, region: "US-IL", want: Refuse},
		{kind: KindFaceTemplate, features: []Feature{CloudBackup}, scopes: []string{fr, cb}, paused: true, want: Hold},
		{kind: KindFaceTemplate, features: []Feature{CloudBackup}, scopes: []string{fr}, paused: true, want: Refuse},
		// sighting: patrol and face_recognition.
		{kind: KindSighting, features: []Feature{Patrol}, scopes: []string{fr}, want: Send},
		{kind: KindSighting, features: []Feature{}, scopes: []string{fr}, want: Refuse},
		{kind: KindSighting, features: []Feature{Patrol}, scopes: []string{cb}, want: Refuse},
		{kind: KindSighting, features: []Feature{Patrol}, scopes: []string{fr}, paused: true, want: Hold},
		{kind: KindSighting, features: []Feature{Patrol}, scopes: []string{fr}, region: "US-IL", want: Refuse},
		// photo: auto_photo; with blurring on, only masked photos, and one
		// showing a recognised person only at the current generation.
		{kind: KindPhoto, features: []Feature{AutoPhoto}, want: Send},
		{kind: KindPhoto, features: []Feature{}, want: Refuse},
		{kind: KindPhoto, features: []Feature{AutoPhoto}, paused: true, want: Hold},
		{kind: KindPhoto, features: []Feature{AutoPhoto, BlurUnknownFaces}, want: Refuse},
		{kind: KindPhoto, features: []Feature{AutoPhoto, BlurUnknownFaces}, out: Outgoing{Masked: true}, want: Send},
		{kind: KindPhoto, features: []Feature{AutoPhoto, BlurUnknownFaces, Patrol}, out: Outgoing{Masked: true, ShowsKnown: true, Generation: 7}, want: Send},
		{kind: KindPhoto, features: []Feature{AutoPhoto, BlurUnknownFaces, Patrol}, out: Outgoing{Masked: true, ShowsKnown: true, Generation: 6}, want: Refuse},
		{kind: KindPhoto, features: []Feature{AutoPhoto, BlurUnknownFaces}, out: Outgoing{Masked: true, ShowsKnown: true, Generation: 7}, want: Refuse},
		// usage and inventory.
		{kind: KindUsage, features: []Feature{UsageAnalytics}, want: Send},
		{kind: KindUsage, features: []Feature{}, want: Refuse},
		{kind: KindUsage, features: []Feature{UsageAnalytics}, paused: true, want: Hold},
		{kind: KindInventory, features: []Feature{}, want: Send},
		{kind: KindInventory, features: []Feature{}, paused: true, want: Send},
		{kind: "selfie", features: Features, want: Refuse},
	}
	for i, r := range rows {
		t.Run(fmt.Sprintf("%d_%s", i, r.kind), func(t *testing.T) {
			s, p := open(t)
			err := s.Update(func(tx *bolt.Tx) error {
				if _, err := p.AcceptPolicy(tx, now, "v1"); err != nil {
					return err
				}
				on := map[Feature]bool{}
				for _, f := range r.features {
					on[f] = true
				}
				if _, err := p.SetFeatures(tx, now, on); len(on) > 0 && err != nil {
					return err
				}
				if r.scopes != nil {
					if _, _, err := p.GrantConsent(tx, now, Grant{SubjectID: "s1", DisplayName: "S", GrantedBy: "self", Scopes: r.scopes}); err != nil {
						return err
					}
				}
				for RecognitionGen(tx) < 7 {
					if err := BumpRecognitionTx(tx); err != nil {
						return err
					}
				}
				if r.region != "" {
					// Moving there switches face features off; the row
					// then asks what would leave from there.
					if _, err := p.SetRegion(tx, now, r.region, validRegion); err != nil {
						return err
					}
					st, _ := p.Read(tx)
					for _, f := range r.features {
						st.Features[f] = true
					}
					if err := p.write(tx, st); err != nil {
						return err
					}
				}
				if r.paused {
					if _, err := p.PauseFor(tx, now, "v2"); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			o := r.out
			o.Kind, o.Subject = r.kind, "s1"
			if r.region != "" {
				s.Update(func(tx *bolt.Tx) error { // the region change moved the generation on
					return tx.Bucket(store.BucketPolicy).Put(keyRecognitionGen, store.Uint64Key(7))
				})
			}
			s.View(func(tx *bolt.Tx) error {
				if got := p.MaySend(tx, o); got != r.want {
					t.Errorf("features %v scopes %v region %q paused %v %+v: %v, want %v", r.features, r.scopes, r.region, r.paused, r.out, got, r.want)
				}
				return nil
			})
		})
	}
}

// The generation moves on whenever someone recognised may no longer be,
// and only then.
func TestRecognitionGenMovesOnWhenRecognitionShrinks(t *testing.T) {
	s, p := open(t)
	gen := func() (g uint64) { s.View(func(tx *bolt.Tx) error { g = RecognitionGen(tx); return nil }); return }
	step := func(name string, moves bool, fn func(tx *bolt.Tx) error) {
		t.Helper()
		before := gen()
		if err := s.Update(fn); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := gen() != before; got != moves {
			t.Errorf("%s: generation moved %v, want %v", name, got, moves)
		}
	}
	step("accept", false, func(tx *bolt.Tx) error { _, err := p.AcceptPolicy(tx, now, "v1"); return err })
	step("patrol on", false, func(tx *bolt.Tx) error { _, err := p.SetFeatures(tx, now, map[Feature]bool{Patrol: true}); return err })
	step("grant", false, func(tx *bolt.Tx) error {
		_, _, err := p.GrantConsent(tx, now, Grant{SubjectID: "a", DisplayName: "A", GrantedBy: "self", Scopes: []string{"face_recognition", "cloud_backup"}})
		return err
	})
	step("usage on", false, func(tx *bolt.Tx) error {
		_, err := p.SetFeatures(tx, now, map[Feature]bool{UsageAnalytics: true})
		return err
	})
	step("revoke cloud_backup", false, func(tx *bolt.Tx) error { _, err := revoke(tx, p, "a", []string{"cloud_backup"}); return err })
	step("revoke face_recognition", true, func(tx *bolt.Tx) error { _, err := revoke(tx, p, "a", nil); return err })
	step("patrol off", true, func(tx *bolt.Tx) error { _, err := p.SetFeatures(tx, now, map[Feature]bool{Patrol: false}); return err })
	step("prohibited region", true, func(tx *bolt.Tx) error { _, err := p.SetRegion(tx, now, "US-IL", validRegion); return err })
}
