package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
)

// legacyStore writes a data directory as the previous release left it
// (schema 3): a person's one key in a keyring slot sealing their name,
// LBP templates and sightings; the consent record in clear but for the
// name; a queued sighting in clear with its content key sealed by the
// device key. It returns the sealed values a freed page would still hold.
func legacyStore(t *testing.T, dataDir string) (old [][]byte) {
	t.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	deviceKey, err := keys.LoadOrCreateDeviceKey(filepath.Join(dataDir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keys.OpenKeyring(filepath.Join(dataDir, "people.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	st, err := store.OpenWith(filepath.Join(dataDir, "state.db"), store.Migrations[:3])
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	personKey := keys.New()
	slot, kek, err := ring.Alloc()
	if err != nil {
		t.Fatal(err)
	}
	seal := func(key, pt []byte, aad string) []byte {
		s, err := keys.Seal(key, pt, []byte(aad))
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, s)
		return s
	}
	err = st.Update(func(tx *bolt.Tx) error {
		subj := tx.Bucket(store.BucketSubjects)
		sealedKey := seal(kek, personKey, "subject-key/ana")
		subj.Put([]byte("ringkey/ana"), append(binary.BigEndian.AppendUint32(nil, slot), sealedKey...))
		rec, _ := json.Marshal(map[string]any{"subject_id": "ana", "minor": false, "granted_by": "self",
			"scopes": []string{"face_recognition", "cloud_backup"}, "granted_at": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			"policy_version": "v1", "sealed_name": seal(personKey, []byte("Anastasia Quux"), "name/ana")})
		subj.Put([]byte("consent/ana"), rec)
		faces := tx.Bucket(store.BucketFaces)
		samples, _ := json.Marshal([][]byte{[]byte("lbp-sample-1"), []byte("lbp-sample-2")})
		faces.Put([]byte("tpl/ana"), seal(personKey, samples, "tpl/ana"))
		k := append([]byte("sight/ana/"), store.Uint64Key(7)...)
		sg, _ := json.Marshal(map[string]any{"at": newSighting, "confidence": 0.9})
		faces.Put(k, seal(personKey, sg, string(k)))
		pol := tx.Bucket(store.BucketPolicy)
		state, _ := json.Marshal(map[string]any{"features": map[string]bool{"patrol": true}, "policy_version": "v1", "region": "US-CA"})
		pol.Put([]byte("state"), state)
		// A queued sighting as the outbox stored it: record in clear.
		root := tx.Bucket(store.BucketOutbox)
		arts, _ := root.CreateBucketIfNotExists([]byte("artifacts"))
		content, _ := root.CreateBucketIfNotExists([]byte("content"))
		stb, _ := root.CreateBucketIfNotExists([]byte("state"))
		ck := keys.New()
		body := []byte(`{"subject_id":"ana","time":"2026-11-22T11:06:07Z","confidence":0.9}`)
		content.Put([]byte("legacy-sighting"), seal(ck, body, "outbox-content/legacy-sighting"))
		r, _ := json.Marshal(map[string]any{"v": 1, "seq": 1, "id": "legacy-sighting", "kind": "sighting", "content_type": "application/json",
			"subject_id": "ana", "attrs": map[string]any{"time": "2026-11-22T11:06:07Z"}, "created_at": newSighting, "queued_at": newSighting,
			"size": len(body), "sha256": "00", "inline": true, "key": seal(deviceKey, ck, "outbox-key/legacy-sighting")})
		arts.Put([]byte("legacy-sighting"), r)
		return stb.Put([]byte("bytes"), store.Uint64Key(uint64(len(body))))
	})
	if err != nil {
		t.Fatal(err)
	}
	return old
}

// Issue 10 and 11 on a store the previous release made: at the first
// start, the person moves to per-purpose keys, their LBP templates are
// erased (the recognizer changed) with a durable enrollment_needed event,
// their consent and sightings are kept under the new keys, their queued
// sighting is sealed whole, and the rewritten store file no longer holds
// any of the old sealed values, nor does any key on the device open them.
func TestP5_AStoreOfThePreviousReleaseIsMigrated(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	old := legacyStore(t, dataDir)
	old2 := newRecognizer
	newRecognizer = func() facerec.Recognizer { return facerec.Descriptors{} } // the shipped one
	defer func() { newRecognizer = old2 }()
	dv := newDevice(t, dataDir)

	if v := dv.d.st.SchemaVersion(); v != len(store.Migrations) {
		t.Fatalf("schema %d after the start, want %d", v, len(store.Migrations))
	}
	dv.d.st.View(func(tx *bolt.Tx) error {
		c, ok, err := dv.d.pol.Consent(tx, "ana")
		if err != nil || !ok || len(c.Scopes) != 2 {
			t.Fatalf("consent after migration: %+v %v %v", c, ok, err)
		}
		return nil
	})
	var inv Inventory
	dv.d.st.View(func(tx *bolt.Tx) (err error) { inv, err = dv.d.inventory(tx); return })
	if len(inv.Subjects) != 1 || inv.Subjects[0].Templates != 0 || !inv.Subjects[0].EnrollmentNeeded ||
		inv.Subjects[0].Sightings != 1 || inv.Subjects[0].QueuedArtifacts != 1 {
		t.Fatalf("inventory after migration: %+v", inv.Subjects)
	}
	recs := dv.records()
	if !slices.ContainsFunc(recs, func(r record) bool { return r.what == "queued_sighting" && r.subject == "ana" }) {
		t.Fatal("the queued sighting is not sealed whole by ana's face key")
	}
	var needed bool
	dv.d.st.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketEvents).ForEach(func(k, v []byte) error {
			needed = needed || (bytes.Contains(v, []byte(`"enrollment_needed"`)) && bytes.Contains(v, []byte(`"model_changed"`)) && bytes.Contains(v, []byte(`"ana"`)))
			return nil
		})
	})
	if !needed {
		t.Fatal("no enrollment_needed event for ana")
	}
	devKeys := dv.deviceKeys()
	dv.close()
	raw, err := os.ReadFile(filepath.Join(dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever of the old layout is still in the file opens with no key
	// left on the device (the queued sighting's content stays, sealed by
	// its own key, which now lives only in the envelope sealed by ana's
	// face key); what would open is gone from the file.
	aads := []string{"subject-key/ana", "name/ana", "tpl/ana", "outbox-key/legacy-sighting", "sight/ana/\x00\x00\x00\x00\x00\x00\x00\x07"}
	for i, s := range old {
		if !bytes.Contains(raw, s) {
			continue
		}
		for _, k := range devKeys {
			for _, aad := range aads {
				if _, err := keys.Open(k, s, []byte(aad)); err == nil {
					t.Errorf("old sealed value %d (%s) is in the store file and opens with a key on the device", i, aad)
				}
			}
		}
	}
	if bytes.Contains(raw, old[5]) {
		t.Error("the queued sighting's content key, sealed by the device key, is still in the store file")
	}
	for _, clearText := range []string{"Anastasia", "2026-11-22T11:06:07"} {
		if bytes.Contains(raw, []byte(clearText)) {
			t.Errorf("%q in clear in the migrated store", clearText)
		}
	}
}

// Issue 22 item 5 on a store the previous release made (schema 4): a
// photo's key and a queued inventory's content key were sealed by the
// device key, so a copy a freed page kept would open with it after the
// deletion. At the first start both move to slots of the data keyring and
// the store is rewritten: the photo and the artifact still open, and no
// copy of the old keys is left in the file.
func TestP4_KeysThePreviousReleaseSealedWithTheDeviceKeyMoveToSlots(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dataDir, "photos"), 0o700); err != nil {
		t.Fatal(err)
	}
	deviceKey, err := keys.LoadOrCreateDeviceKey(filepath.Join(dataDir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenWith(filepath.Join(dataDir, "state.db"), store.Migrations[:4])
	if err != nil {
		t.Fatal(err)
	}
	seal := func(key, pt []byte, aad string) []byte {
		s, err := keys.Seal(key, pt, []byte(aad))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	photo, pk := []byte("\xff\xd8 a photo's bytes"), keys.New()
	if err := os.WriteFile(filepath.Join(dataDir, "photos", "p01.photo"), seal(pk, photo, "p01"), 0o600); err != nil {
		t.Fatal(err)
	}
	photoKey := seal(deviceKey, pk, "photo-key/p01")
	inv, ck := []byte(`{"categories":{}}`), keys.New()
	artKey := seal(deviceKey, ck, "outbox-key/inv01")
	err = st.Update(func(tx *bolt.Tx) error {
		rec, _ := json.Marshal(map[string]any{"id": "p01", "day": "2026-11-22", "admitted_at": time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC),
			"format": "jpeg", "width": 4, "height": 3, "size": len(photo), "sealed_key": photoKey})
		if err := tx.Bucket(store.BucketPhotos).Put([]byte("p01"), rec); err != nil {
			return err
		}
		root := tx.Bucket(store.BucketOutbox)
		arts, _ := root.CreateBucketIfNotExists([]byte("artifacts"))
		content, _ := root.CreateBucketIfNotExists([]byte("content"))
		stb, _ := root.CreateBucketIfNotExists([]byte("state"))
		content.Put([]byte("inv01"), seal(ck, inv, "outbox-content/inv01"))
		r, _ := json.Marshal(map[string]any{"v": 1, "seq": 1, "id": "inv01", "kind": "inventory", "content_type": "application/json",
			"created_at": time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), "queued_at": time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC),
			"size": len(inv), "sha256": "00", "inline": true, "key": artKey})
		arts.Put([]byte("inv01"), r)
		return stb.Put([]byte("bytes"), store.Uint64Key(uint64(len(inv))))
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	dv := newDevice(t, dataDir)
	var p capture.Photo
	dv.d.st.View(func(tx *bolt.Tx) error {
		ps, err := capture.Photos(tx)
		if len(ps) == 1 {
			p = ps[0]
		}
		return err
	})
	if p.Slot == nil {
		t.Fatalf("the photo's key did not move to a slot: %+v", p)
	}
	if got, err := dv.d.vault.Open(p); err != nil || !bytes.Equal(got, photo) {
		t.Fatalf("the photo after the move: %q %v", got, err)
	}
	if got := dv.d.outbox.List(); len(got) != 1 || got[0].ID != "inv01" {
		t.Fatalf("queue after the move: %+v", got)
	}
	devKeys := dv.deviceKeys()
	dv.close()
	raw, err := os.ReadFile(filepath.Join(dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string][]byte{"photo": photoKey, "artifact": artKey} {
		if bytes.Contains(raw, s) {
			t.Errorf("the %s's key sealed by the device key is still in the store file", what)
		}
	}
	// And the new copies open with the data keyring's slots only.
	if openWith(devKeys[:1], p.SealedKey, []byte("photo-key/p01")) != nil {
		t.Error("the device key still opens the photo's key")
	}
}
