// Package capture owns the camera's photo spool and what the device keeps of
// it: every file is decided (refused, admitted, over_cap or invalid) within
// seconds, the daily cap is reserved in the same bbolt transaction that
// records an admission, and admitted photos are sealed in the vault under a
// key of their own. It is pure Go and never links OpenCV; it never sends
// anything anywhere: others ask it for photos.
package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/spool"
)

// Outcome is what became of one spool file (contract section 2).
type Outcome string

// The four outcomes.
const (
	Refused  Outcome = "refused"
	Admitted Outcome = "admitted"
	OverCap  Outcome = "over_cap"
	Invalid  Outcome = "invalid"
)

// The spool's pace.
const (
	// settle is how long a file name must be quiet before it is read.
	settle = 30 * time.Millisecond
	// rescan is how often the spool is listed in case an event was missed.
	rescan = 2 * time.Second
	// workers decide files in parallel; admissions still commit one by one.
	workers = 2
)

// Config is what the intake needs to know.
type Config struct {
	PhotosDir    string // spool_dir/photos
	DailyCap     int
	Location     *time.Location
	MaxFileBytes int64
	Now          func() time.Time
	Logger       *slog.Logger
	// Pixels validates an admitted file by decoding it completely (the
	// vision worker in the daemon); default InProcess within DefaultBudget.
	Pixels Pixels
	// OnDecided is told every outcome after it is durable (metrics, state).
	OnDecided func(Outcome)
	// OnCapReached is told once per day after the day's last admission
	// committed (the daemon starts the day's selection).
	OnCapReached func(day string)
}

// Intake watches the spool and decides every photo.
type Intake struct {
	cfg   Config
	st    *store.Store
	pol   *policy.Policy
	vault *Vault
	ctx   context.Context // Run's, for the decoder
}

// NewIntake builds an intake over the store, the policy and the vault.
func NewIntake(cfg Config, st *store.Store, pol *policy.Policy, vault *Vault) *Intake {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Pixels == nil {
		cfg.Pixels = &InProcess{}
	}
	return &Intake{cfg: cfg, st: st, pol: pol, vault: vault, ctx: context.Background()}
}

// Run reconciles the vault, decides the files already in the spool and then
// every file that appears, until ctx ends.
func (in *Intake) Run(ctx context.Context) error {
	orphans, lost, err := in.vault.Reconcile(in.st)
	if err != nil {
		return err
	}
	if orphans > 0 || lost > 0 {
		in.cfg.Logger.Warn("photo vault reconciled after an unclean stop", "orphan_files_removed", orphans, "records_without_file", lost)
	}
	if err := in.pruneMarkers(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in.ctx = ctx
	wg.Go(func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := in.pruneMarkers(); err != nil {
					in.cfg.Logger.Error("prune intake markers", "err", err)
				}
			}
		}
	})
	w := &spool.Watcher{Dir: in.cfg.PhotosDir, Owned: Owned, Handle: in.process,
		Workers: workers, Settle: settle, Rescan: rescan, Logger: in.cfg.Logger}
	return w.Run(ctx)
}

// Owned reports whether the spool file name is one the daemon takes.
func Owned(name string) bool { return spool.Image(name) }

// marker says a spool file (by name, size, mtime and inode) was decided, so
// a crash between the commit and the unlink never counts it twice.
type marker struct {
	Outcome Outcome   `json:"outcome"`
	At      time.Time `json:"at"`
}

func identity(name string, fi fs.FileInfo) []byte {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return []byte(name + "\x00" + strconv.FormatInt(fi.Size(), 10) + ":" + strconv.FormatInt(fi.ModTime().UnixNano(), 10) + ":" + strconv.FormatUint(ino, 10))
}

func (in *Intake) process(name string) {
	path := filepath.Join(in.cfg.PhotosDir, name)
	fi, err := os.Lstat(path)
	if err != nil {
		return // gone already
	}
	id := identity(name, fi)
	outcome, err := in.decide(path, fi, id)
	if err != nil {
		// The file stays in the spool and is tried again at the next scan;
		// nothing was counted. A full disk lands here.
		in.cfg.Logger.Error("photo intake failed; will retry", "file", name, "err", err)
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		in.cfg.Logger.Error("photo spool remove", "file", name, "err", err)
	}
	if outcome != "" {
		in.cfg.Logger.Debug("photo decided", "file", name, "outcome", outcome)
		if in.cfg.OnDecided != nil {
			in.cfg.OnDecided(outcome)
		}
	}
}

// decide returns the durable outcome of one file, or "" when it had already
// been decided before a crash.
func (in *Intake) decide(path string, fi fs.FileInfo, id []byte) (Outcome, error) {
	now := in.cfg.Now()
	var pre Outcome
	err := in.st.View(func(tx *bolt.Tx) error {
		if tx.Bucket(store.BucketIntake).Get(id) != nil {
			return nil
		}
		o, err := in.gate(tx, now)
		pre = o
		return err
	})
	if err != nil {
		return "", err
	}
	switch {
	case pre == "":
		return "", nil // decided before a crash; only the unlink was missing
	case pre != Admitted:
		return in.commit(id, now, pre, nil)
	}
	if !fi.Mode().IsRegular() {
		return in.commit(id, now, Invalid, nil)
	}
	data, err := spool.ReadRegular(path, fi, in.cfg.MaxFileBytes)
	if err != nil {
		if errors.Is(err, spool.ErrNotRegular) || errors.Is(err, spool.ErrTooLarge) {
			return in.commit(id, now, Invalid, nil)
		}
		return "", err
	}
	// The header first: a file claiming 50000x50000 costs nothing. Then
	// the whole decode, away from the daemon's memory; a decoder that
	// crashed or hung on it makes it invalid, once and for good.
	if _, err := DecodedBytes(data); err != nil {
		return in.commit(id, now, Invalid, nil)
	}
	info, verr := in.cfg.Pixels.Validate(in.ctx, data)
	switch {
	case errors.Is(verr, ErrRetryLater):
		return "", verr // not judged: the file waits in the spool
	case verr != nil:
		in.cfg.Logger.Info("photo invalid", "file", filepath.Base(path), "bytes", len(data), "err", verr)
		return in.commit(id, now, Invalid, nil)
	}
	p := &Photo{ID: newPhotoID(), AdmittedAt: now.UTC(), Format: info.Format, Width: info.Width, Height: info.Height, Size: int64(len(data))}
	p.SealedKey, err = in.vault.seal(p.ID, data)
	if err != nil {
		in.vault.remove(p.ID)
		return "", err
	}
	o, err := in.commit(id, now, Admitted, p)
	if o == Admitted && err == nil {
		in.cfg.Logger.Info("photo admitted", "file", filepath.Base(path), "photo_id", p.ID, "bytes", p.Size)
	}
	if o != Admitted {
		in.vault.remove(p.ID) // withdrawn or capped meanwhile, or the commit failed
	}
	return o, err
}

// gate answers, without reading the file, whether it may be admitted.
func (in *Intake) gate(tx *bolt.Tx, now time.Time) (Outcome, error) {
	st, err := in.pol.Read(tx)
	if err != nil {
		return "", err
	}
	if !in.pol.Allows(st, policy.AutoPhoto) {
		return Refused, nil
	}
	day, err := Today(tx, now, in.cfg.Location)
	if err != nil {
		return "", err
	}
	if day.Admitted >= in.cfg.DailyCap {
		return OverCap, nil
	}
	return Admitted, nil
}

// commit records the outcome, the day's counters and the marker in one
// transaction. An admission re-checks policy and cap inside it: withdrawal
// and the cap win every race.
func (in *Intake) commit(id []byte, now time.Time, want Outcome, p *Photo) (Outcome, error) {
	var got Outcome
	var capDay string
	err := in.st.Update(func(tx *bolt.Tx) error {
		got, capDay = "", ""
		intake := tx.Bucket(store.BucketIntake)
		if intake.Get(id) != nil {
			return nil
		}
		got = want
		if want == Admitted {
			o, err := in.gate(tx, now)
			if err != nil {
				return err
			}
			got = o
		}
		day, err := Today(tx, now, in.cfg.Location)
		if err != nil {
			return err
		}
		switch got {
		case Refused:
			day.Refused++
		case OverCap:
			day.OverCap++
		case Invalid:
			day.Invalid++
		case Admitted:
			day.Admitted++
			p.Day = day.Day
			raw, err := json.Marshal(p)
			if err != nil {
				return err
			}
			if err := tx.Bucket(store.BucketPhotos).Put([]byte(p.ID), raw); err != nil {
				return err
			}
			if day.Admitted >= in.cfg.DailyCap && !day.CapReached {
				day.CapReached = true
				capDay = day.Day
				if _, err := audit.Append(tx, now, "cap_reached", "", map[string]string{"day": day.Day, "cap": strconv.Itoa(in.cfg.DailyCap)}); err != nil {
					return err
				}
			}
		}
		if err := writeDay(tx, day); err != nil {
			return err
		}
		m, _ := json.Marshal(marker{Outcome: got, At: now.UTC()})
		return intake.Put(id, m)
	})
	if err != nil {
		return "", fmt.Errorf("record %s: %w", want, err)
	}
	if capDay != "" && in.cfg.OnCapReached != nil {
		in.cfg.OnCapReached(capDay)
	}
	return got, nil
}

// pruneMarkers forgets markers whose spool file is gone: they only matter
// while the file could be seen again.
func (in *Intake) pruneMarkers() error {
	return in.st.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketIntake)
		var gone [][]byte
		err := b.ForEach(func(k, _ []byte) error {
			name, _, _ := strings.Cut(string(k), "\x00")
			if _, err := os.Lstat(filepath.Join(in.cfg.PhotosDir, name)); errors.Is(err, fs.ErrNotExist) {
				gone = append(gone, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range gone {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
