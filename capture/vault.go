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
// the vault directory under its own key; the key is stored here, sealed by
// the device key. Deleting the record destroys the key.
type Photo struct {
	ID         string    `json:"id"`
	Day        string    `json:"day"`
	AdmittedAt time.Time `json:"admitted_at"`
	Format     string    `json:"format"`
	Width      int       `json:"width"`
	Height     int       `json:"height"`
	Size       int64     `json:"size"`
	SealedKey  []byte    `json:"sealed_key"`
}

const photoExt = ".photo"

// Vault holds sealed photo files in one directory.
type Vault struct {
	dir       string
	deviceKey []byte
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

// NewVault prepares dir (mode 0700).
func NewVault(dir string, deviceKey []byte) (*Vault, error) {
	// An existing directory keeps its mode through MkdirAll: photo ids
	// must not be listable by others.
	if _, err := fsx.Private(dir, true); err != nil {
		return nil, fmt.Errorf("photo vault: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("photo vault: %w", err)
	}
	return &Vault{dir: dir, deviceKey: deviceKey}, nil
}

func newPhotoID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "p" + hex.EncodeToString(b)
}

func (v *Vault) path(id string) string { return filepath.Join(v.dir, id+photoExt) }

// seal encrypts data under a fresh key, writes it durably and returns the
// photo key sealed by the device key.
func (v *Vault) seal(id string, data []byte) ([]byte, error) {
	pk := keys.New()
	sealed, err := keys.Seal(pk, data, []byte(id))
	if err != nil {
		return nil, err
	}
	if err := fsx.WriteFileAtomic(v.path(id), sealed, 0o600); err != nil {
		return nil, err
	}
	return keys.Seal(v.deviceKey, pk, []byte("photo-key/"+id))
}

// Open decrypts an admitted photo into memory.
func (v *Vault) Open(p Photo) ([]byte, error) {
	pk, err := keys.Open(v.deviceKey, p.SealedKey, []byte("photo-key/"+p.ID))
	if err != nil {
		return nil, fmt.Errorf("photo %s key: %w", p.ID, err)
	}
	sealed, err := os.ReadFile(v.path(p.ID))
	if err != nil {
		return nil, fmt.Errorf("photo %s: %w", p.ID, err)
	}
	return keys.Open(pk, sealed, []byte(p.ID))
}

// remove deletes a sealed file; a missing one is not an error.
func (v *Vault) remove(id string) error {
	if err := os.Remove(v.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
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
		var lost [][]byte
		err := b.ForEach(func(k, _ []byte) error {
			if onDisk[string(k)] {
				delete(onDisk, string(k))
			} else {
				lost = append(lost, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range lost {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
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

// forgetOnCommit removes, once tx has committed, the files of photos whose
// records tx deleted, and returns their ids.
func (v *Vault) forgetOnCommit(tx *bolt.Tx, gone []Photo) []string {
	ids := make([]string, 0, len(gone))
	for _, p := range gone {
		ids = append(ids, p.ID)
	}
	if len(ids) > 0 {
		tx.OnCommit(func() {
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
