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
	"github.com/aibo-privacy/aibo-privacyd/internal/fsx"
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
	// Days says which day the cap counts against (share one with the
	// Selector); default a DayClock over Now and the boot clock.
	Days   *DayClock
	Logger *slog.Logger
	// Pixels validates an admitted file by decoding it completely (the
	// vision worker in the daemon); default InProcess within DefaultBudget.
	Pixels Pixels
	// OnDecided is told every outcome after it is durable (metrics, state).
	OnDecided func(Outcome)
	// CapReachedTx runs inside the transaction of the day's last
	// admission; OnCapReached is told after it committed (the daemon
	// starts the day's selection).
	CapReachedTx func(tx *bolt.Tx, day string) error
	OnCapReached func(day string)
	// OnWaitChange is told when the intake starts or stops waiting for
	// room (see Waiting): the daemon republishes its state.
	OnWaitChange func()
}

// Intake watches the spool and decides every photo.
type Intake struct {
	cfg   Config
	st    *store.Store
	pol   *policy.Policy
	vault *Vault
	ctx   context.Context // Run's, for the decoder
	wait  *waiter         // for room to record decisions
	vwait *waiter         // for the vision worker, while images cannot be judged
	watch *spool.Watcher

	// arrived is when each spool file (by identity) arrived: a photo's
	// time of day, and how long the oldest has waited.
	arrMu   sync.Mutex
	arrived map[string]time.Time

	// troubled remembers spool entries that failed on their own (unreadable,
	// unremovable, such as a directory named x.jpg), by identity, so each
	// is logged once and retried slowly rather than every rescan.
	trMu     sync.Mutex
	troubled map[string]*trouble

	// unlinked are markers whose file is gone; they are deleted together
	// every markerFlush (after the spool directory is synced), so a flood
	// does not grow the store with markers.
	mkMu     sync.Mutex
	unlinked [][]byte
}

type trouble struct {
	next    time.Time
	backoff time.Duration
	gaveUp  bool // decided, but cannot be removed: left alone while unchanged
}

// Bounds of the intake's memory for spool troubles and marker deletions.
const (
	maxTroubled   = 1024
	maxUnlinked   = 8192
	maxArrivals   = 8192 // past this, arrivals are estimated from the files' change times
	markerFlush   = 5 * time.Second
	markerFlushAt = 256 // flush sooner once this many wait
)

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
	if cfg.Days == nil {
		cfg.Days = NewDayClock(cfg.Now, nil, cfg.Location)
	}
	in := &Intake{cfg: cfg, st: st, pol: pol, vault: vault, ctx: context.Background(), troubled: map[string]*trouble{},
		arrived: map[string]time.Time{}}
	in.watch = &spool.Watcher{Dir: cfg.PhotosDir, Owned: Owned, Handle: in.process,
		Workers: workers, Settle: settle, Rescan: rescan, Logger: cfg.Logger}
	in.wait = &waiter{log: cfg.Logger, onChange: cfg.OnWaitChange, onResume: in.watch.Poke,
		waitMsg:   "photo intake waiting: decisions cannot be recorded; spool files stay until they can",
		resumeMsg: "photo intake resumed: decisions are recorded again"}
	in.vwait = &waiter{log: cfg.Logger, onChange: cfg.OnWaitChange, onResume: in.watch.Poke,
		waitMsg:   "photo intake waiting: images cannot be judged; photos stay in the spool until they can",
		resumeMsg: "photo intake resumed: images are judged again"}
	return in
}

// Waiting says whether the intake is waiting, since when and why: for
// room to record decisions (a full disk), or for images to be judged (the
// vision worker cannot start). Health and the reported state show it.
func (in *Intake) Waiting() Waiting {
	if w := in.wait.current(); !w.Since.IsZero() {
		return w
	}
	return in.vwait.current()
}

// Resume tells the intake that images can be judged again: a photo that
// waits for it is tried at the next look at the spool, not after the
// back-off.
func (in *Intake) Resume() {
	in.vwait.hurry()
	in.watch.Poke()
}

// OldestWaiting is how long the oldest photo still in the spool has been
// there, by the intake's clock; 0 when the spool is empty.
func (in *Intake) OldestWaiting() time.Duration {
	in.arrMu.Lock()
	defer in.arrMu.Unlock()
	var oldest time.Time
	for _, t := range in.arrived {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return max(0, in.cfg.Now().Sub(oldest))
}

// Busy says the spool holds photos not decided yet (including, at start,
// those the intake has not looked at).
func (in *Intake) Busy() bool {
	in.arrMu.Lock()
	n := len(in.arrived)
	in.arrMu.Unlock()
	if n > 0 {
		return true
	}
	d, err := os.Open(in.cfg.PhotosDir)
	if err != nil {
		return false
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(64)
		for _, name := range names {
			if Owned(name) {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
}

// arrival is when the file of id arrived: when this intake first saw it,
// less how long it had been there already by the kernel's change time (a
// file present at start; the camera's rename sets it, and no owner of the
// file can set it back).
func (in *Intake) arrival(id []byte, fi fs.FileInfo, now time.Time) time.Time {
	in.arrMu.Lock()
	defer in.arrMu.Unlock()
	if t, ok := in.arrived[string(id)]; ok {
		return t
	}
	t := now
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if age := time.Since(time.Unix(st.Ctim.Unix())); age > 0 {
			t = now.Add(-age)
		}
	}
	if len(in.arrived) < maxArrivals {
		in.arrived[string(id)] = t
	}
	return t
}

func (in *Intake) forgetArrival(id []byte) {
	in.arrMu.Lock()
	delete(in.arrived, string(id))
	in.arrMu.Unlock()
}

// pruneArrivals forgets files that left the spool without the intake
// (taken back by the camera).
func (in *Intake) pruneArrivals() {
	in.arrMu.Lock()
	ids := make([]string, 0, len(in.arrived))
	for id := range in.arrived {
		ids = append(ids, id)
	}
	in.arrMu.Unlock()
	for _, id := range ids {
		name, _, _ := strings.Cut(id, "\x00")
		if _, err := os.Lstat(filepath.Join(in.cfg.PhotosDir, name)); errors.Is(err, fs.ErrNotExist) {
			in.forgetArrival([]byte(id))
		}
	}
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
		f := time.NewTicker(markerFlush)
		defer f.Stop()
		for {
			select {
			case <-ctx.Done():
				in.flushMarkers()
				return
			case <-f.C:
				in.flushMarkers()
				in.pruneArrivals()
			case <-t.C:
				if err := in.pruneMarkers(); err != nil {
					in.cfg.Logger.Error("prune intake markers", "err", err)
				}
			}
		}
	})
	return in.watch.Run(ctx)
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
	now := in.cfg.Now()
	arrived := in.arrival(id, fi, now)
	if !in.mayTry(id, now) {
		return
	}
	if !in.wait.mayTry(now) {
		return // waiting for room: the file stays, quietly
	}
	outcome, err := in.decide(path, fi, id, arrived)
	var se storageError
	if errors.As(err, &se) {
		in.wait.done(now, err) // logs once per change of state
		return
	}
	if errors.Is(err, ErrRetryLater) {
		in.wait.skip() // not judged: the file waits, and the vision waiter said so
		return
	}
	if err == nil && outcome != "" {
		in.wait.done(now, nil) // a decision was recorded: storage works
	} else {
		in.wait.skip()
	}
	if err != nil {
		// A problem with this file alone: it stays and is tried again
		// later, logged once; nothing was counted.
		in.troubleOnce(id, now, false, "photo intake failed for this file; will retry", name, err)
		return
	}
	in.forgetArrival(id) // decided: it waits no more
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Decided and counted, but it cannot go (a directory named x.jpg
		// with something in it): left alone while it stays the same.
		in.troubleOnce(id, now, true, "photo spool entry decided but not removable; left alone", name, err)
		return
	}
	in.markUnlinked(id)
	if outcome != "" {
		in.cfg.Logger.Debug("photo decided", "file", name, "outcome", outcome)
		if in.cfg.OnDecided != nil {
			in.cfg.OnDecided(outcome)
		}
	}
}

// mayTry says whether a spool entry that failed on its own before may be
// tried again now.
func (in *Intake) mayTry(id []byte, now time.Time) bool {
	in.trMu.Lock()
	defer in.trMu.Unlock()
	tr, ok := in.troubled[string(id)]
	return !ok || (!tr.gaveUp && !now.Before(tr.next))
}

// troubleOnce logs a spool entry's own failure the first time and backs
// off its retries; gaveUp leaves it alone while its identity is unchanged.
func (in *Intake) troubleOnce(id []byte, now time.Time, gaveUp bool, msg, name string, err error) {
	in.trMu.Lock()
	tr, seen := in.troubled[string(id)]
	if !seen {
		if len(in.troubled) >= maxTroubled {
			for k := range in.troubled { // forget one: it is logged again at worst
				delete(in.troubled, k)
				break
			}
		}
		tr = &trouble{backoff: firstWait}
		in.troubled[string(id)] = tr
	} else {
		tr.backoff = min(2*tr.backoff, maxWait)
	}
	tr.next, tr.gaveUp = now.Add(tr.backoff), gaveUp
	in.trMu.Unlock()
	if !seen {
		in.cfg.Logger.Error(msg, "file", name, "err", err)
	}
}

// markUnlinked queues the marker of a file that is gone for deletion.
func (in *Intake) markUnlinked(id []byte) {
	in.mkMu.Lock()
	if len(in.unlinked) < maxUnlinked {
		in.unlinked = append(in.unlinked, id)
	}
	n := len(in.unlinked)
	in.mkMu.Unlock()
	if n == markerFlushAt {
		go in.flushMarkers()
	}
}

// flushMarkers deletes the markers of files that are gone. The spool
// directory is synced first, so no unlink can come back after a power cut
// while its marker is gone (the file would be counted twice). A failure
// keeps them for the next flush; those over maxUnlinked wait for the
// hourly pruneMarkers.
func (in *Intake) flushMarkers() {
	in.mkMu.Lock()
	ids := in.unlinked
	in.unlinked = nil
	in.mkMu.Unlock()
	if len(ids) == 0 {
		return
	}
	err := fsx.SyncDir(in.cfg.PhotosDir)
	if err == nil {
		err = in.st.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(store.BucketIntake)
			for _, id := range ids {
				if err := b.Delete(id); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		in.mkMu.Lock()
		in.unlinked = append(ids, in.unlinked...)
		if len(in.unlinked) > maxUnlinked {
			in.unlinked = in.unlinked[:maxUnlinked]
		}
		in.mkMu.Unlock()
		in.cfg.Logger.Debug("intake markers not deleted yet", "markers", len(ids), "err", err)
	}
}

// decide returns the durable outcome of one file, or "" when it had already
// been decided before a crash. A file the worker could not judge returns
// an error wrapping ErrRetryLater: it stays in the spool.
func (in *Intake) decide(path string, fi fs.FileInfo, id []byte, arrived time.Time) (Outcome, error) {
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
	// While images cannot be judged, files are not even read: one is
	// tried now and then (the back-off of vwait), the rest stay.
	if !in.vwait.mayTry(now) {
		return "", errNotJudged
	}
	judged := false
	defer func() {
		if !judged {
			in.vwait.skip() // decided without the worker: that says nothing of it
		}
	}()
	name := filepath.Base(path)
	if !fi.Mode().IsRegular() {
		return in.invalid(id, now, name, InvalidNotAFile, nil)
	}
	data, err := spool.ReadRegular(path, fi, in.cfg.MaxFileBytes)
	switch {
	case errors.Is(err, spool.ErrNotRegular):
		return in.invalid(id, now, name, InvalidNotAFile, err)
	case errors.Is(err, spool.ErrTooLarge):
		return in.invalid(id, now, name, InvalidTooLarge, err)
	case err != nil:
		return "", err
	}
	// The header first: a file claiming 50000x50000 costs nothing. Then
	// the whole decode, away from the daemon's memory; a decoder that
	// crashed or hung on it makes it invalid, once and for good.
	if _, err := DecodedBytes(data); errors.Is(err, errTooManyPixels) {
		return in.invalid(id, now, name, InvalidTooManyPixels, err)
	} else if err != nil {
		return in.invalid(id, now, name, InvalidNotAnImage, err)
	}
	info, verr := in.cfg.Pixels.Validate(in.ctx, data)
	if err := in.ctx.Err(); err != nil {
		// Cut short by the daemon stopping: no verdict on the image.
		return "", fmt.Errorf("%w: %w", ErrRetryLater, err)
	}
	judged = true
	if errors.Is(verr, ErrRetryLater) {
		in.vwait.done(now, verr) // logs once per change of state
		return "", verr          // not judged: the file waits in the spool
	}
	in.vwait.done(now, nil)
	if verr != nil {
		return in.invalid(id, now, name, InvalidUndecodable, verr)
	}
	p := &Photo{ID: newPhotoID(), AdmittedAt: now.UTC(), ArrivedAt: arrived.UTC(), Format: info.Format, Width: info.Width, Height: info.Height, Size: int64(len(data))}
	if err := in.vault.seal(p, data); err != nil {
		return "", storageFailure(err)
	}
	o, err := in.commit(id, now, Admitted, p)
	if o == Admitted && err == nil {
		in.cfg.Logger.Info("photo admitted", "file", name, "photo_id", p.ID, "bytes", p.Size)
	}
	if o != Admitted {
		in.vault.discard(*p) // withdrawn or capped meanwhile, or the commit failed
	}
	return o, err
}

// errNotJudged: the file was not tried, the intake waits for the worker.
var errNotJudged = fmt.Errorf("%w: waiting for the vision worker", ErrRetryLater)

// Why a spool file is invalid (the "reason" of its log line).
const (
	InvalidNotAFile      = "not_a_file"      // a symlink, directory, device or FIFO, or replaced while read
	InvalidTooLarge      = "too_large"       // over photos.max_file_bytes, not read
	InvalidNotAnImage    = "not_an_image"    // no JPEG or PNG header
	InvalidTooManyPixels = "too_many_pixels" // the header claims over 40 megapixels
	InvalidUndecodable   = "undecodable"     // the decoder refused it (truncated, corrupt) or died on it
)

// invalid records a file as invalid and says why in one log line (the
// spool name and the reason; never a byte of it).
func (in *Intake) invalid(id []byte, now time.Time, name, reason string, cause error) (Outcome, error) {
	o, err := in.commit(id, now, Invalid, nil)
	if err == nil && o == Invalid {
		args := []any{"file", name, "reason", reason}
		if cause != nil {
			args = append(args, "err", cause.Error())
		}
		in.cfg.Logger.Info("photo invalid", args...)
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
	day, err := in.cfg.Days.Today(tx)
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
		day, err := in.cfg.Days.Today(tx)
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
			if err := in.cfg.Days.RecordTx(tx); err != nil {
				return err
			}
			if day.Admitted >= in.cfg.DailyCap && !day.CapReached {
				day.CapReached = true
				capDay = day.Day
				if _, err := audit.Append(tx, now, "cap_reached", "", map[string]string{"day": day.Day, "cap": strconv.Itoa(in.cfg.DailyCap)}); err != nil {
					return err
				}
				if in.cfg.CapReachedTx != nil {
					if err := in.cfg.CapReachedTx(tx, day.Day); err != nil {
						return err
					}
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
		return "", storageFailure(fmt.Errorf("record %s: %w", want, err))
	}
	if capDay != "" && in.cfg.OnCapReached != nil {
		in.cfg.OnCapReached(capDay)
	}
	return got, nil
}

// pruneMarkers forgets markers whose spool file is gone: they only matter
// while the file could be seen again. The spool directory is synced first
// (see flushMarkers).
func (in *Intake) pruneMarkers() error {
	if err := fsx.SyncDir(in.cfg.PhotosDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
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
