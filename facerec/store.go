package facerec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// The faces bucket (store.BucketFaces) is facerec's. Keys hold opaque
// subject ids and counters only; every value about a person is sealed by
// their face key (policy.FaceKey), so erasing that key's slot erases every
// copy, wherever bbolt's free pages keep one:
//
//	tpl/ID            the person's templates: {"model", "samples"}
//	sight/ID/SEQ      one sighting: {"at", "confidence"}
//	enrolling         the open enrollment window (who and until when)
//	reenroll/ID       the person's templates were of another model and
//	                  were erased: they must enroll again (no content)
var (
	tplPrefix      = []byte("tpl/")
	sightPrefix    = []byte("sight/")
	reenrollPrefix = []byte("reenroll/")
)

func reenrollKey(subject string) []byte { return []byte("reenroll/" + subject) }

// MarkEnrollmentNeededTx records that subject's templates were erased
// because the recognizer changed: the inventory shows it until they enroll
// again (or their face data is erased).
func (s *Service) MarkEnrollmentNeededTx(tx *bolt.Tx, subject string) error {
	return tx.Bucket(store.BucketFaces).Put(reenrollKey(subject), []byte(s.rec.Model()))
}

func tplKey(subject string) []byte { return []byte("tpl/" + subject) }

func sightPrefixOf(subject string) []byte { return []byte("sight/" + subject + "/") }

// legacyModel is the model of templates stored before templates recorded
// theirs: the LBP templates of facerec/template.
const legacyModel = "lbp-v1"

// templateSet is a person's templates as sealed.
type templateSet struct {
	Model   string   `json:"model"`
	Samples [][]byte `json:"samples"`
	// At is when the enrollment completed (zero for templates stored
	// before it was recorded): a delete_data issued before it spares them.
	At time.Time `json:"at,omitzero"`
}

func decodeTemplates(raw []byte) (templateSet, error) {
	var t templateSet
	if len(raw) > 0 && raw[0] == '[' { // before templates recorded their model
		t.Model = legacyModel
		return t, json.Unmarshal(raw, &t.Samples)
	}
	return t, json.Unmarshal(raw, &t)
}

// StoreTemplatesTx stores samples as subject's templates in tx, as a
// completed enrollment does (without its checks and hooks): for the
// composition's tests and tools. It returns the face key's slot.
func (s *Service) StoreTemplatesTx(tx *bolt.Tx, subject string, samples [][]byte) (uint32, error) {
	return s.saveTemplates(tx, subject, samples)
}

// RecordSightingTx records a sighting of subject at at in tx, as Patrol
// does (without its checks and hooks): for the composition's tests and
// tools. It returns the face key's slot.
func (s *Service) RecordSightingTx(tx *bolt.Tx, subject string, at time.Time, confidence float64) (uint32, error) {
	return s.recordSighting(tx, subject, at, confidence)
}

// saveTemplates seals samples under subject's face key (made now if they
// have none) and returns the key's slot.
func (s *Service) saveTemplates(tx *bolt.Tx, subject string, samples [][]byte) (uint32, error) {
	slot, key, err := s.pol.FaceKeyForWriteTx(tx, subject)
	if err != nil {
		return 0, err
	}
	defer clear(key)
	if err := tx.Bucket(store.BucketFaces).Delete(reenrollKey(subject)); err != nil {
		return 0, err
	}
	raw, err := json.Marshal(templateSet{Model: s.rec.Model(), Samples: samples, At: s.cfg.Now().UTC()})
	if err != nil {
		return 0, err
	}
	sealed, err := keys.Seal(key, raw, tplKey(subject))
	if err != nil {
		return 0, err
	}
	return slot, tx.Bucket(store.BucketFaces).Put(tplKey(subject), sealed)
}

// sighting is the local record of one sighting, sealed with the person's
// face key.
type sighting struct {
	At         time.Time `json:"at"`
	Confidence float64   `json:"confidence"`
}

func (s *Service) recordSighting(tx *bolt.Tx, subject string, at time.Time, confidence float64) (uint32, error) {
	slot, key, err := s.pol.FaceKeyForWriteTx(tx, subject)
	if err != nil {
		return 0, err
	}
	defer clear(key)
	b := tx.Bucket(store.BucketFaces)
	seq, err := b.NextSequence()
	if err != nil {
		return 0, err
	}
	// The key holds only the opaque id and a counter: when a person was
	// seen is sealed with their face key like everything else about them.
	k := append(sightPrefixOf(subject), store.Uint64Key(seq)...)
	raw, _ := json.Marshal(sighting{At: at.UTC(), Confidence: confidence})
	sealed, err := keys.Seal(key, raw, k)
	if err != nil {
		return 0, err
	}
	return slot, b.Put(k, sealed)
}

// What selects face data to erase.
type What struct {
	Templates bool
	Sightings bool
	// Before limits what is erased to the sightings seen, and templates
	// enrolled, before it (zero: all of them); a record that cannot be
	// opened, or templates that do not say when they were enrolled, go in
	// any case.
	Before time.Time
}

// Forgotten counts what EraseTx erased.
type Forgotten struct {
	Templates int `json:"templates"`
	Sightings int `json:"sightings"`
}

// EraseTx erases, inside tx, the face data of subject that w selects. It
// reports whether any face data of theirs remains, for the caller to
// erase the face key (nothing left) or replace it (some left). Templates
// going also closes an open enrollment of theirs. After the commit, call
// Forgot.
func (s *Service) EraseTx(tx *bolt.Tx, subject string, w What) (f Forgotten, remains bool, err error) {
	b := tx.Bucket(store.BucketFaces)
	if w.Templates && w.Sightings && w.Before.IsZero() {
		// All of it: no need to enroll again either.
		if err := b.Delete(reenrollKey(subject)); err != nil {
			return f, false, err
		}
	}
	var key []byte
	if !w.Before.IsZero() {
		_, key, _ = s.pol.FaceKey(tx, subject)
		defer clear(key)
	}
	if w.Templates && !s.enrolledSince(key, b.Get(tplKey(subject)), subject, w.Before) {
		if err := clearOpenWindow(tx, subject); err != nil {
			return f, false, err
		}
		if b.Get(tplKey(subject)) != nil {
			if err := b.Delete(tplKey(subject)); err != nil {
				return f, false, err
			}
			f.Templates = 1
		}
	}
	var gone [][]byte
	p := sightPrefixOf(subject)
	c := b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if !w.Sightings {
			remains = true
			break
		}
		if !w.Before.IsZero() {
			if sg, ok := openSighting(key, k, v); ok && !sg.At.Before(w.Before) {
				remains = true
				continue
			}
		}
		gone = append(gone, bytes.Clone(k))
	}
	for _, k := range gone {
		if err := b.Delete(k); err != nil {
			return f, false, err
		}
	}
	f.Sightings = len(gone)
	if b.Get(tplKey(subject)) != nil {
		remains = true
	}
	return f, remains, nil
}

func openSighting(key, k, v []byte) (sighting, bool) {
	if key == nil {
		return sighting{}, false
	}
	raw, err := keys.Open(key, v, k)
	if err != nil {
		return sighting{}, false
	}
	var sg sighting
	return sg, json.Unmarshal(raw, &sg) == nil
}

// enrolledSince reports whether the sealed templates v of subject say they
// were enrolled at or after before (never when before is zero or they
// cannot be read).
func (s *Service) enrolledSince(key, v []byte, subject string, before time.Time) bool {
	if before.IsZero() || v == nil || key == nil {
		return false
	}
	raw, err := keys.Open(key, v, tplKey(subject))
	if err != nil {
		return false
	}
	defer clear(raw)
	t, err := decodeTemplates(raw)
	return err == nil && !t.At.IsZero() && !t.At.Before(before)
}

// ResealTx seals every face record of subject again, from the old face
// key to the new one, in tx (a rotation after part of their face data was
// erased: policy.RotateFaceKeyTx).
func (s *Service) ResealTx(tx *bolt.Tx, subject string, oldKey, newKey []byte) (int, error) {
	b := tx.Bucket(store.BucketFaces)
	type kv struct{ k, v []byte }
	var moved []kv
	var lost [][]byte
	visit := func(k, v []byte) {
		raw, err := keys.Open(oldKey, v, k)
		if err != nil {
			lost = append(lost, bytes.Clone(k)) // unreadable already: it goes
			return
		}
		sealed, err := keys.Seal(newKey, raw, k)
		clear(raw)
		if err != nil {
			lost = append(lost, bytes.Clone(k))
			return
		}
		moved = append(moved, kv{bytes.Clone(k), sealed})
	}
	if v := b.Get(tplKey(subject)); v != nil {
		visit(tplKey(subject), v)
	}
	p := sightPrefixOf(subject)
	c := b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		visit(k, v)
	}
	for _, m := range moved {
		if err := b.Put(m.k, m.v); err != nil {
			return 0, err
		}
	}
	for _, k := range lost {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(moved), nil
}

// Subjects lists every subject the faces bucket holds anything about,
// whether or not a consent still covers it (the inventory must show what
// the store holds).
func (s *Service) Subjects(tx *bolt.Tx) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	err := tx.Bucket(store.BucketFaces).ForEach(func(k, _ []byte) error {
		var subject string
		switch {
		case bytes.HasPrefix(k, tplPrefix):
			subject = string(k[len(tplPrefix):])
		case bytes.HasPrefix(k, sightPrefix):
			subject, _, _ = strings.Cut(string(k[len(sightPrefix):]), "/")
		case bytes.HasPrefix(k, reenrollPrefix):
			subject = string(k[len(reenrollPrefix):])
		default:
			return nil
		}
		if !seen[subject] {
			seen[subject] = true
			out = append(out, subject)
		}
		return nil
	})
	return out, err
}

// Holding is what the device holds of one person's face data, for the
// inventory: counts and times, never content. Unreadable counts records no
// key on the device opens any more (none should exist: erasure deletes
// them before it erases the key).
type Holding struct {
	Templates        int       `json:"templates"`
	EnrollmentNeeded bool      `json:"enrollment_needed,omitempty"`
	Model            string    `json:"model,omitempty"`
	Sightings        int       `json:"sightings"`
	Unreadable       int       `json:"unreadable,omitempty"`
	OldestSighting   time.Time `json:"oldest_sighting,omitempty"`
	NewestSighting   time.Time `json:"newest_sighting,omitempty"`
}

// Holdings reports, per subject, what the faces bucket holds, opening
// sightings with the person's face key for their times. Every record is
// counted, including those of nobody with a consent.
func (s *Service) Holdings(tx *bolt.Tx) (map[string]Holding, error) {
	out := map[string]Holding{}
	keyOf := map[string][]byte{}
	defer func() {
		for _, k := range keyOf {
			clear(k)
		}
	}()
	faceKey := func(subject string) []byte {
		k, ok := keyOf[subject]
		if !ok {
			_, k, _ = s.pol.FaceKey(tx, subject)
			keyOf[subject] = k
		}
		return k
	}
	err := tx.Bucket(store.BucketFaces).ForEach(func(k, v []byte) error {
		switch {
		case bytes.HasPrefix(k, reenrollPrefix):
			subject := string(k[len(reenrollPrefix):])
			h := out[subject]
			h.EnrollmentNeeded = true
			out[subject] = h
		case bytes.HasPrefix(k, tplPrefix):
			subject := string(k[len(tplPrefix):])
			h := out[subject]
			h.Templates++
			if key := faceKey(subject); key != nil {
				if raw, err := keys.Open(key, v, k); err == nil {
					if t, err := decodeTemplates(raw); err == nil {
						h.Model = t.Model
					}
					clear(raw)
				} else {
					h.Unreadable++
				}
			} else {
				h.Unreadable++
			}
			out[subject] = h
		case bytes.HasPrefix(k, sightPrefix):
			subject, _, _ := strings.Cut(string(k[len(sightPrefix):]), "/")
			h := out[subject]
			h.Sightings++
			if sg, ok := openSighting(faceKey(subject), k, v); ok {
				if h.OldestSighting.IsZero() || sg.At.Before(h.OldestSighting) {
					h.OldestSighting = sg.At
				}
				if sg.At.After(h.NewestSighting) {
					h.NewestSighting = sg.At
				}
			} else {
				h.Unreadable++
			}
			out[subject] = h
		}
		return nil
	})
	return out, err
}

// StaleTemplates lists the subjects whose stored templates were made by
// another model than the recognizer's: they cannot be matched and must be
// erased (and the person enrolled again).
func (s *Service) StaleTemplates(tx *bolt.Tx) ([]string, error) {
	var out []string
	c := tx.Bucket(store.BucketFaces).Cursor()
	for k, v := c.Seek(tplPrefix); k != nil && bytes.HasPrefix(k, tplPrefix); k, v = c.Next() {
		subject := string(k[len(tplPrefix):])
		_, key, err := s.pol.FaceKey(tx, subject)
		if err != nil {
			out = append(out, subject) // nobody can open them: they go too
			continue
		}
		raw, err := keys.Open(key, v, k)
		clear(key)
		if err != nil {
			out = append(out, subject)
			continue
		}
		t, err := decodeTemplates(raw)
		clear(raw)
		if err != nil || t.Model != s.rec.Model() {
			out = append(out, subject)
		}
	}
	return out, nil
}

// gallery decrypts the templates of everyone who may be recognised now,
// made by the recognizer's model.
func (s *Service) gallery(tx *bolt.Tx) (map[string][][]byte, error) {
	g := map[string][][]byte{}
	c := tx.Bucket(store.BucketFaces).Cursor()
	for k, v := c.Seek(tplPrefix); k != nil && bytes.HasPrefix(k, tplPrefix); k, v = c.Next() {
		subject := string(k[len(tplPrefix):])
		if s.pol.MayRecognize(tx, policy.Patrol, subject) != nil {
			continue
		}
		_, key, err := s.pol.FaceKey(tx, subject)
		if err != nil {
			continue
		}
		raw, err := keys.Open(key, v, k)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("templates of %s: %w", subject, err)
		}
		t, err := decodeTemplates(raw)
		if err != nil {
			return nil, fmt.Errorf("templates of %s: %w", subject, err)
		}
		if t.Model != s.rec.Model() {
			continue // stale: erased by the migration at start
		}
		g[subject] = t.Samples
	}
	return g, nil
}
