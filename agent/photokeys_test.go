package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// copyOf is one sealed thing as the device held it before a deletion: its
// key, sealed (as a freed bbolt page may keep the record), and its
// content, sealed (as flash may keep the file's old blocks).
type copyOf struct {
	what                  string
	wrappedKey, keyAAD    []byte
	sealedContent, cntAAD []byte
}

// photoCopies reads every undecided photo's record and sealed file.
func (dv *device) photoCopies() []copyOf {
	dv.t.Helper()
	var out []copyOf
	dv.d.st.View(func(tx *bolt.Tx) error {
		ps, err := capture.Photos(tx)
		for _, p := range ps {
			file, ferr := os.ReadFile(filepath.Join(dv.dataDir, "photos", p.ID+".photo"))
			if ferr != nil {
				dv.t.Fatal(ferr)
			}
			out = append(out, copyOf{"photo " + p.ID, p.SealedKey, []byte("photo-key/" + p.ID), file, []byte(p.ID)})
		}
		return err
	})
	return out
}

// uploadCopies reads every queued photo artifact's record and content.
func (dv *device) uploadCopies() []copyOf {
	dv.t.Helper()
	var out []copyOf
	dv.d.st.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(store.BucketOutbox)
		content := root.Bucket([]byte("content"))
		return root.Bucket([]byte("artifacts")).ForEach(func(k, v []byte) error {
			var r struct {
				Kind   string `json:"kind"`
				Key    []byte `json:"key"`
				Inline bool   `json:"inline"`
				File   string `json:"file"`
			}
			json.Unmarshal(v, &r)
			if r.Kind != "photo" {
				return nil
			}
			sealed := bytes.Clone(content.Get(k))
			if !r.Inline {
				var err error
				if sealed, err = os.ReadFile(filepath.Join(dv.dataDir, "outbox", r.File)); err != nil {
					dv.t.Fatal(err)
				}
			}
			out = append(out, copyOf{"upload " + string(k), r.Key, []byte("outbox-key/" + string(k)), sealed, []byte("outbox-content/" + string(k))})
			return nil
		})
	})
	return out
}

// opens reports whether any key on the device opens c's content, directly
// or through its wrapped key.
func opens(devKeys [][]byte, c copyOf) bool {
	if openWith(devKeys, c.sealedContent, c.cntAAD) != nil {
		return true
	}
	for _, k := range devKeys {
		if inner := openWith([][]byte{k}, c.wrappedKey, c.keyAAD); inner != nil && openWith([][]byte{inner}, c.sealedContent, c.cntAAD) != nil {
			return true
		}
	}
	return false
}

// Promises P4 and P10 (issue 22 item 5): a deleted photo is gone for good.
// Each photo's key used to be sealed by the long-lived device key, so a
// freed page keeping its record and a flash block keeping its file could
// be put together after the deletion. For every way a photo or a queued
// upload is deleted, no key left on the device (the device key, every
// slot of both keyring files) opens any copy of it, live or freed; and
// the data keyring's slots are reused, so it does not grow.
func TestP4_P10_EveryPhotoDeletionErasesEveryCopy(t *testing.T) {
	triggers := []struct {
		name string
		run  func(dv *device)
	}{
		{"selection", func(dv *device) {
			if _, err := dv.d.selector.SelectNow(context.Background(), true); err != nil {
				dv.t.Fatal(err)
			}
		}},
		{"delete_data_photos", func(dv *device) { dv.cmd("delete_data", map[string]any{"categories": []string{"photos"}}) }},
		{"delete_data_all", func(dv *device) { dv.cmd("delete_data", map[string]any{"categories": []string{"all"}}) }},
		{"auto_photo_off", func(dv *device) { dv.cmd("set_features", map[string]any{"auto_photo": false}) }},
	}
	for _, tr := range triggers {
		t.Run(tr.name, func(t *testing.T) {
			dv := newDevice(t, "")
			dv.cmd("accept_policy", map[string]any{"version": "v1"})
			dv.cmd("set_features", map[string]any{"auto_photo": true})
			dv.admit(4, "p")
			dv.queuePhoto(false)
			photos, uploads := dv.photoCopies(), dv.uploadCopies()
			if len(photos) != 4 || len(uploads) != 1 {
				t.Fatalf("set-up: %d photos, %d uploads", len(photos), len(uploads))
			}
			devKeys := dv.deviceKeys()
			for _, c := range append(photos, uploads...) {
				if !opens(devKeys, c) {
					t.Fatalf("set-up: %s does not open before its deletion: the test checks nothing", c.what)
				}
			}
			tr.run(dv)
			if left := dv.photoCopies(); len(left) != 0 {
				t.Fatalf("%d photos left undecided", len(left))
			}
			devKeys = dv.deviceKeys()
			for _, c := range photos {
				if opens(devKeys, c) {
					t.Errorf("%s: a key on the device still opens a copy of it", c.what)
				}
			}
			if tr.name != "selection" { // a selection leaves the queue alone
				for _, c := range uploads {
					if opens(devKeys, c) {
						t.Errorf("%s: a key on the device still opens a copy of it", c.what)
					}
				}
			}
		})
	}
}

// The data keyring reuses the slots of what was deleted: day after day of
// photos and uploads, each deleted, leaves it the size of the first day's.
func TestP4_TheDataKeyringDoesNotGrow(t *testing.T) {
	dv := newDevice(t, "")
	dv.cmd("accept_policy", map[string]any{"version": "v1"})
	dv.cmd("set_features", map[string]any{"auto_photo": true})
	var sizes []int64
	for day := range 3 {
		dv.admit(10, "d"+string(rune('a'+day)))
		dv.queuePhoto(false)
		dv.cmd("delete_data", map[string]any{"categories": []string{"photos"}})
		fi, err := os.Stat(filepath.Join(dv.dataDir, "data.keys"))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	}
	if sizes[0] == 0 || sizes[2] != sizes[0] {
		t.Fatalf("data.keys sizes after each round: %v, want the first round's each time", sizes)
	}
}
