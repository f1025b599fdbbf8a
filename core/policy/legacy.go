package policy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// Before per-purpose keys (schema 3 and earlier), a person had one key
// that sealed their name, birthday and face data; the consent record was
// in clear but for the sealed name and birthday; the key was sealed by a
// keyring slot (ringkey/ID: 4 bytes of slot, then the sealed key) or, in
// the oldest stores, by the device key (key/ID).
type legacyConsent struct {
	Consent
	SealedName     []byte `json:"sealed_name"`
	SealedBirthday []byte `json:"sealed_birthday,omitempty"`
}

// LegacyPerson is a person moved to per-purpose keys: Key is the single
// key their face data is still sealed with, for the caller to seal it
// again under their face key (FaceKeyForWriteTx) in the same transaction.
type LegacyPerson struct {
	SubjectID string
	Key       []byte
}

// MigratePeopleTx moves every person recorded in the legacy layout to
// per-purpose keys, in tx: the record sealed whole under a new identity
// key, the legacy entries deleted, the legacy keyring slots overwritten
// once tx commits. Keys of nobody with a consent are dropped. It returns
// the people moved with their legacy keys.
func (p *Policy) MigratePeopleTx(tx *bolt.Tx, deviceKey []byte) ([]LegacyPerson, error) {
	if p.ring == nil {
		return nil, ErrNoKeyring
	}
	b := tx.Bucket(store.BucketSubjects)
	var names [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		for _, pre := range [][]byte{[]byte("consent/"), []byte("ringkey/"), []byte("key/")} {
			if bytes.HasPrefix(k, pre) {
				names = append(names, bytes.Clone(k))
			}
		}
	}
	var moved []LegacyPerson
	var oldSlots []uint32
	for _, name := range names {
		id, ok := bytes.CutPrefix(name, []byte("consent/"))
		if !ok {
			continue
		}
		subject := string(id)
		key, slot, hasSlot, err := p.legacyKey(b, subject, deviceKey)
		if err != nil {
			return nil, err
		}
		if hasSlot {
			oldSlots = append(oldSlots, slot)
		}
		var lc legacyConsent
		if err := json.Unmarshal(b.Get(name), &lc); err != nil {
			return nil, fmt.Errorf("legacy consent of %s unreadable: %w", subject, err)
		}
		r := record{Consent: lc.Consent}
		if key != nil {
			if n, err := keys.Open(key, lc.SealedName, []byte("name/"+subject)); err == nil {
				r.DisplayName = string(n)
			}
			if lc.SealedBirthday != nil {
				if bd, err := keys.Open(key, lc.SealedBirthday, []byte("birthday/"+subject)); err == nil {
					r.Birthday = string(bd)
				}
			}
		}
		ps := &person{}
		if err := p.sealRecord(tx, ps, r); err != nil {
			return nil, err
		}
		if err := p.writePerson(tx, subject, ps); err != nil {
			return nil, err
		}
		moved = append(moved, LegacyPerson{SubjectID: subject, Key: key})
	}
	// Slots of keys nobody's consent uses any more go too.
	for _, name := range names {
		if id, ok := bytes.CutPrefix(name, []byte("ringkey/")); ok {
			if s, ok := slotOf(b.Get(name)); ok && b.Get(append([]byte("consent/"), id...)) == nil {
				oldSlots = append(oldSlots, s)
			}
		}
	}
	for _, name := range names {
		if err := b.Delete(name); err != nil {
			return nil, err
		}
	}
	p.eraseOnCommit(tx, oldSlots...)
	return moved, nil
}

// legacyKey opens a person's single legacy key.
func (p *Policy) legacyKey(b *bolt.Bucket, id string, deviceKey []byte) (key []byte, slot uint32, hasSlot bool, err error) {
	aad := []byte("subject-key/" + id)
	if v := b.Get([]byte("ringkey/" + id)); v != nil {
		s, ok := slotOf(v)
		if !ok {
			return nil, 0, false, fmt.Errorf("legacy key of %s is corrupt", id)
		}
		kek, err := p.ring.Get(s)
		if err != nil {
			return nil, s, true, nil // already erased: the data it sealed is gone
		}
		k, err := keys.Open(kek, v[4:], aad)
		if err != nil {
			return nil, s, true, nil
		}
		return k, s, true, nil
	}
	if v := b.Get([]byte("key/" + id)); v != nil && deviceKey != nil {
		if k, err := keys.Open(deviceKey, v, aad); err == nil {
			return k, 0, false, nil
		}
	}
	return nil, 0, false, nil
}

func slotOf(v []byte) (uint32, bool) {
	if len(v) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}
