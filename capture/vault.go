package capture

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
)

// Photo is the record of an admitted photo. The image itself lives sealed in
// the vault directory under a key of its own; that key is stored here,
// sealed by the key in a slot of the data keyring. Deleting the photo
// deletes the record and overwrites the slot in place, so no key left on
// the device opens a copy of the photo that bbolt's free pages or the
// flash's old blocks may keep.
type Photo struct {
	ID         string    `json:"id"`
	Day        string    `json:"day"`
	AdmittedAt time.Time `json:"admitted_at"`
	// ArrivedAt is when its file arrived in the spool (contract v3: the
	// photo's time of day), which a wait for the worker or for room can
	// put hours before AdmittedAt. Zero in records older than it.
	ArrivedAt time.Time `json:"arrived_at,omitzero"`
	Format    string    `json:"format"`
	Width     int       `json:"width"`
	Height    int       `json:"height"`
	Size      int64     `json:"size"`
	// Slot is the data keyring slot whose key seals SealedKey; nil for a
	// photo an older version admitted, whose key the device key sealed
	// (moved to a slot at start: MigrateKeysTx).
	Slot      *uint32 `json:"slot,omitempty"`
	SealedKey []byte  `json:"sealed_key"`
}

// TakenAt is when the photo was taken, as far as the device knows: when
// its file arrived in the spool (its admission for older records), in loc.
func (p Photo) TakenAt(loc *time.Location) time.Time {
	t := p.ArrivedAt
	if t.IsZero() {
		t = p.AdmittedAt
	}
	return t.In(loc)
}

const photoExt = ".photo"

// Vault holds sealed photo files in one directory, their keys' keys in the
// data keyring.
type Vault struct {
	dir       string
	ring      *keys.Keyring
	deviceKey []byte // opens the keys of photos an older version admitted, until they move
	logger    *slog.Logger
}

// SetLogger sets where the vault reports files it could not remove
// (slog.Default otherwise).
func (v *Vault) SetLogger(l *slog.Logger) { v.logger = l }

func (v *Vault) log() *slog.Logger {
	if v.logger != nil {
		return v.logger
	}
	return slog.Default()
}

// NewVault prepares dir (mode 0700). ring is the data keyring (shared
// with the outbox's artifacts): one slot per photo.
func NewVault(dir string, ring *keys.Keyring, deviceKey []byte) (*Vault, error) {
	if ring == nil {
		return nil, errors.New("photo vault: no keyring")
	}
	// An existing directory keeps its mode through MkdirAll: photo ids
	// must not be listable by others.
	if _, err := fsx.Private(dir, true); err != nil {
		return nil, fmt.Errorf("photo vault: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("photo vault: %w", err)
	}
	return &Vault{dir: dir, ring: ring, deviceKey: deviceKey}, nil
}

func newPhotoID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "p" + hex.EncodeToString(b)
}

func (v *Vault) path(id string) string { return filepath.Join(v.dir, id+photoExt) }

func photoKeyAAD(id string) []byte { return []byte("photo-key/" + id) }

// seal encrypts data under a fresh key, writes it durably and sets p's
// slot and sealed key. On failure nothing is left behind.
func (v *Vault) seal(p *Photo, data []byte) error {
	slot, wrap, err := v.ring.Alloc()
	if err != nil {
		return err
	}
	defer clear(wrap)
	pk := keys.New()
	defer clear(pk)
	sealed, err := keys.Seal(pk, data, []byte(p.ID))
	if err == nil {
		p.SealedKey, err = keys.Seal(wrap, pk, photoKeyAAD(p.ID))
	}
	if err == nil {
		err = fsx.WriteFileAtomic(v.path(p.ID), sealed, 0o600)
	}
	if err != nil {
		v.erase([]uint32{slot})
		return err
	}
	p.Slot = &slot
	return nil
}

// wrapKey is the key that seals p's own key.
func (v *Vault) wrapKey(p Photo) ([]byte, error) {
	if p.Slot == nil {
		return v.deviceKey, nil
	}
	return v.ring.Get(*p.Slot)
}

// Open decrypts an admitted photo into memory.
func (v *Vault) Open(p Photo) ([]byte, error) {
	wrap, err := v.wrapKey(p)
	if err != nil {
		return nil, fmt.Errorf("photo %s key: %w", p.ID, err)
	}
	pk, err := keys.Open(wrap, p.SealedKey, photoKeyAAD(p.ID))
	if p.Slot != nil {
		clear(wrap)
	}
	if err != nil {
		return nil, fmt.Errorf("photo %s key: %w", p.ID, err)
	}
	defer clear(pk)
	sealed, err := os.ReadFile(v.path(p.ID))
	if err != nil {
		return nil, fmt.Errorf("photo %s: %w", p.ID, err)
	}
	return keys.Open(pk, sealed, []byte(p.ID))
}

// discard removes what seal left for a photo that was not admitted after
// all: its file and its slot.
func (v *Vault) discard(p Photo) {
	if err := v.remove(p.ID); err != nil {
		v.log().Warn("remove a photo not admitted (its key is gone)", "photo_id", p.ID, "err", err)
	}
	if p.Slot != nil {
		v.erase([]uint32{*p.Slot})
	}
}

// erase overwrites slots; a failure leaves them to the next start's scrub.
func (v *Vault) erase(slots []uint32) {
	if len(slots) == 0 {
		return
	}
	if err := v.ring.Erase(slots...); err != nil {
		v.log().Error("photo keys not erased yet; erased at the next start", "slots", len(slots), "err", err)
	}
}

// remove deletes a sealed file; a missing one is not an error.
func (v *Vault) remove(id string) error {
	if err := os.Remove(v.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// SlotsTx lists the data keyring slots the photos recorded in tx use (for
// the scrub at start).
func SlotsTx(tx *bolt.Tx) (map[uint32]bool, error) {
	photos, err := Photos(tx)
	if err != nil {
		return nil, err
	}
	used := map[uint32]bool{}
	for _, p := range photos {
		if p.Slot != nil {
			used[*p.Slot] = true
		}
	}
	return used, nil
}

// MigrateKeysTx moves, in tx, the keys of photos an older version admitted
// (sealed by the device key) into slots of their own. The caller rewrites
// the store afterwards, so that no freed page keeps a copy the device key
// opens. It returns how many moved.
func (v *Vault) MigrateKeysTx(tx *bolt.Tx) (int, error) {
	photos, err := Photos(tx)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, p := range photos {
		if p.Slot != nil {
			continue
		}
		pk, err := keys.Open(v.deviceKey, p.SealedKey, photoKeyAAD(p.ID))
		if err != nil {
			continue // unreadable already: selection deletes it as such
		}
		slot, wrap, err := v.ring.Alloc() // a rollback leaves it to the scrub at start
		if err != nil {
			clear(pk)
			return moved, err
		}
		p.SealedKey, err = keys.Seal(wrap, pk, photoKeyAAD(p.ID))
		clear(pk)
		clear(wrap)
		if err != nil {
			return moved, err
		}
		p.Slot = &slot
		raw, err := json.Marshal(p)
		if err != nil {
			return moved, err
		}
		if err := tx.Bucket(store.BucketPhotos).Put([]byte(p.ID), raw); err != nil {
			return moved, err
		}
		moved++
	}
	return moved, nil
}

// Photos lists every admitted photo record.
func Photos(tx *bolt.Tx) ([]Photo, error) {
	var out []Photo
	err := tx.Bucket(store.BucketPhotos).ForEach(func(k, raw []byte) error {
		var p Photo
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("photo %s record unreadable: %w", k, err)
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// Reconcile makes files and records agree after a crash: temporary files and
// sealed files without a record are removed (their key was never committed,
// so they are unreadable anyway), and records whose file is gone are dropped
// and reported.
func (v *Vault) Reconcile(st *store.Store) (orphanFiles, lostRecords int, err error) {
	entries, err := os.ReadDir(v.dir)
	if err != nil {
		return 0, 0, fmt.Errorf("reconcile vault: %w", err)
	}
	onDisk := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, fsx.TempPrefix) {
			os.Remove(filepath.Join(v.dir, name))
			continue
		}
		if id, ok := strings.CutSuffix(name, photoExt); ok {
			onDisk[id] = true
		}
	}
	err = st.Update(func(tx *bolt.Tx) error {
		orphanFiles, lostRecords = 0, 0
		b := tx.Bucket(store.BucketPhotos)
		photos, err := Photos(tx)
		if err != nil {
			return err
		}
		var lost []Photo
		for _, p := range photos {
			if onDisk[p.ID] {
				delete(onDisk, p.ID)
			} else {
				lost = append(lost, p)
			}
		}
		for _, p := range lost {
			if err := b.Delete([]byte(p.ID)); err != nil {
				return err
			}
		}
		v.forgetOnCommit(tx, lost)
		lostRecords = len(lost)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("reconcile vault: %w", err)
	}
	for id := range onDisk {
		if err := v.remove(id); err != nil {
			return orphanFiles, lostRecords, fmt.Errorf("reconcile vault: %w", err)
		}
		orphanFiles++
	}
	return orphanFiles, lostRecords, fsx.SyncDir(v.dir)
}

// ForgetUndecidedTx erases, inside tx, every admitted photo not yet
// handed on that was admitted before before (zero: all of them): records
// and keys go, the day counters count them deleted. Once tx commits, their
// files are removed; until then they are unreadable, since their keys are
// gone. It returns their ids.
func (v *Vault) ForgetUndecidedTx(tx *bolt.Tx, before time.Time) ([]string, error) {
	photos, err := Photos(tx)
	if err != nil {
		return nil, err
	}
	perDay := map[string]int{}
	var gone []Photo
	b := tx.Bucket(store.BucketPhotos)
	for _, p := range photos {
		if !before.IsZero() && !p.AdmittedAt.Before(before) {
			continue // admitted after the cutoff: it stays
		}
		if err := b.Delete([]byte(p.ID)); err != nil {
			return nil, err
		}
		perDay[p.Day]++
		gone = append(gone, p)
	}
	for day, n := range perDay {
		if err := AddDeleted(tx, day, n); err != nil {
			return nil, err
		}
	}
	return v.forgetOnCommit(tx, gone), nil
}

// forgetOnCommit finishes, once tx has committed, the deletion of photos
// whose records tx deleted: their slots are overwritten in place (so no
// key left opens any copy of them) and their files removed. It returns
// their ids.
func (v *Vault) forgetOnCommit(tx *bolt.Tx, gone []Photo) []string {
	ids := make([]string, 0, len(gone))
	var slots []uint32
	for _, p := range gone {
		ids = append(ids, p.ID)
		if p.Slot != nil {
			slots = append(slots, *p.Slot)
		}
	}
	if len(ids) > 0 {
		tx.OnCommit(func() {
			v.erase(slots)
			if err := v.RemoveFiles(ids); err != nil {
				v.log().Error("remove erased photo files (their keys are gone)", "err", err)
			}
		})
	}
	return ids
}

// RemoveFiles deletes sealed files whose records are gone.
func (v *Vault) RemoveFiles(ids []string) error {
	var first error
	for _, id := range ids {
		if err := v.remove(id); err != nil && first == nil {
			first = err
		}
	}
	if len(ids) > 0 {
		if err := fsx.SyncDir(v.dir); err != nil && first == nil {
			first = err
		}
	}
	return first
}
