package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/keys"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
)

// fixture is an intake over a real store, with a clock the test moves.
type fixture struct {
	t      testing.TB
	st     *store.Store
	pol    *policy.Policy
	ring   *keys.Keyring
	vault  *Vault
	in     *Intake
	spool  string
	mu     sync.Mutex
	now    time.Time     // the wall clock
	boot   time.Duration // CLOCK_BOOTTIME
	cancel context.CancelFunc
	done   chan struct{}
}

var la, _ = time.LoadLocation("America/Los_Angeles")

func newFixture(t testing.TB, autoPhoto bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, st: st, pol: policy.New("US-CA", nil, nil), spool: filepath.Join(dir, "spool"),
		now: time.Date(2026, 11, 22, 10, 0, 0, 0, la)}
	if autoPhoto {
		st.Update(func(tx *bolt.Tx) error {
			f.pol.AcceptPolicy(tx, f.now, "v1")
			_, err := f.pol.SetFeatures(tx, f.now, map[policy.Feature]bool{policy.AutoPhoto: true})
			return err
		})
	}
	f.ring, err = keys.OpenKeyring(filepath.Join(dir, "data.keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ring.Close() })
	f.vault, err = NewVault(filepath.Join(dir, "photos"), f.ring, keys.New())
	if err != nil {
		t.Fatal(err)
	}
	f.restart()
	return f
}

// restart builds the intake afresh over the same store, as a new process
// would: a new day clock, anchored at its first use.
func (f *fixture) restart() {
	f.in = NewIntake(Config{PhotosDir: f.spool, DailyCap: 30, Location: la, MaxFileBytes: 1 << 20,
		Now: f.clock, Days: NewDayClock(f.clock, f.bootClock, la), Logger: slog.New(slog.DiscardHandler)}, f.st, f.pol, f.vault)
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) bootClock() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boot
}

// setClock steps the wall clock alone (a technician, NTP, a spoofed time
// source): no time passes.
func (f *fixture) setClock(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.mu.Unlock()
}

// pass lets d go by: both clocks move.
func (f *fixture) pass(d time.Duration) {
	f.mu.Lock()
	f.now, f.boot = f.now.Add(d), f.boot+d
	f.mu.Unlock()
}

// reboot restarts the boot clock with the wall clock at wall.
func (f *fixture) reboot(wall time.Time) {
	f.mu.Lock()
	f.now, f.boot = wall, 7*time.Second
	f.mu.Unlock()
}

func (f *fixture) run() {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go func() { f.in.Run(ctx); close(f.done) }()
	f.t.Cleanup(f.stop)
}

func (f *fixture) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel = nil
	}
}

func (f *fixture) drop(n int, prefix string) {
	f.t.Helper()
	os.MkdirAll(f.spool, 0o755)
	for i := 0; i < n; i++ {
		name := filepath.Join(f.spool, prefix+string(rune('a'+i/26))+string(rune('a'+i%26))+".jpg")
		if err := os.WriteFile(name+".part", testJPEG(f.t, i), 0o644); err != nil {
			f.t.Fatal(err)
		}
		os.Rename(name+".part", name)
	}
}

func (f *fixture) waitEmpty() {
	f.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(f.spool)
		owned := 0
		for _, e := range entries {
			if Owned(e.Name()) {
				owned++
			}
		}
		if owned == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatal("spool not emptied")
}

func (f *fixture) today() DayCounts {
	var c DayCounts
	f.st.View(func(tx *bolt.Tx) (err error) { c, err = f.in.cfg.Days.Today(tx); return })
	return c
}

func testJPEG(t testing.TB, seed int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := 0; y < 48; y++ {
		for x := 0; x < 64; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y*5 + seed), uint8(seed * 7), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestP2_ClockSetBackDoesNotGrantASecondSetOf30(t *testing.T) {
	f := newFixture(t, true)
	f.run()
	f.drop(30, "day1-")
	f.waitEmpty()
	if c := f.today(); c.Admitted != 30 {
		t.Fatalf("day 1: %+v", c)
	}
	// The wall clock jumps back a whole day (a dead RTC battery, a bad NTP answer).
	f.setClock(f.clock().Add(-24 * time.Hour))
	f.drop(5, "back-")
	f.waitEmpty()
	c := f.today()
	if c.Day != "2026-11-22" || c.Admitted != 30 || c.OverCap != 5 {
		t.Fatalf("after clock set back: %+v, want 30 admitted and 5 over_cap on 2026-11-22", c)
	}
	// The next real day grants a new set: real time passes to 00:30 and the
	// clock is put right.
	f.pass(14*time.Hour + 30*time.Minute)
	f.setClock(time.Date(2026, 11, 23, 0, 30, 0, 0, la))
	f.drop(2, "next-")
	f.waitEmpty()
	if c := f.today(); c.Day != "2026-11-23" || c.Admitted != 2 {
		t.Fatalf("next day: %+v", c)
	}
}

func TestP2_CapCountsTheConfiguredTimezonesDay(t *testing.T) {
	f := newFixture(t, true)
	// 23:30 in Los Angeles is already the next day in UTC.
	f.setClock(time.Date(2026, 11, 22, 23, 30, 0, 0, la))
	f.run()
	f.drop(1, "late-")
	f.waitEmpty()
	if c := f.today(); c.Day != "2026-11-22" || c.Admitted != 1 {
		t.Fatalf("%+v, want the photo counted on the local day 2026-11-22", c)
	}
}

func TestP4_AdmittedPhotosAreSealedOnDisk(t *testing.T) {
	f := newFixture(t, true)
	f.run()
	f.drop(3, "seal-")
	f.waitEmpty()
	f.stop()
	var photos []Photo
	f.st.View(func(tx *bolt.Tx) (err error) { photos, err = Photos(tx); return })
	if len(photos) != 3 {
		t.Fatalf("%d photos", len(photos))
	}
	for _, p := range photos {
		raw, err := os.ReadFile(f.vault.path(p.ID))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("JFIF")) || bytes.HasPrefix(raw, []byte{0xFF, 0xD8}) {
			t.Fatal("photo stored in the clear")
		}
		st, _ := os.Stat(f.vault.path(p.ID))
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("sealed photo mode %v", st.Mode().Perm())
		}
		plain, err := f.vault.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Validate(plain); err != nil {
			t.Fatalf("sealed photo does not open to the image: %v", err)
		}
	}
	// Forgetting destroys the keys first: the files no longer open.
	var ids []string
	f.st.Update(func(tx *bolt.Tx) (err error) { ids, err = f.vault.ForgetUndecidedTx(tx, time.Time{}); return })
	if len(ids) != 3 {
		t.Fatalf("forgot %d", len(ids))
	}
	if c := f.today(); c.Deleted != 3 {
		t.Fatalf("deleted counter %+v", c)
	}
	entries, _ := os.ReadDir(f.vault.dir)
	if len(entries) != 0 {
		t.Fatalf("%d files left in the vault", len(entries))
	}
}

func TestReconcileRemovesOrphansAfterACrash(t *testing.T) {
	f := newFixture(t, true)
	// A sealed file written just before a crash, whose record never committed,
	// and a temporary file cut short.
	orphan := &Photo{ID: newPhotoID()}
	if err := f.vault.seal(orphan, []byte("x")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(f.vault.dir, ".tmp-p1.photo-123"), []byte("half"), 0o600)
	files, lost, err := f.vault.Reconcile(f.st)
	if err != nil || files != 1 || lost != 0 {
		t.Fatalf("reconcile: files %d lost %d err %v", files, lost, err)
	}
	entries, _ := os.ReadDir(f.vault.dir)
	if len(entries) != 0 {
		t.Fatalf("left %d files", len(entries))
	}
}

func TestNonImageNamesAreLeftAlone(t *testing.T) {
	f := newFixture(t, true)
	os.MkdirAll(f.spool, 0o755)
	os.WriteFile(filepath.Join(f.spool, "capture.tmp"), []byte("in progress"), 0o644)
	f.run()
	f.drop(1, "real-")
	f.waitEmpty()
	if _, err := os.Stat(filepath.Join(f.spool, "capture.tmp")); err != nil {
		t.Fatal("the camera's temporary file was touched")
	}
}

func TestSymlinkIsInvalidAndItsTargetUntouched(t *testing.T) {
	f := newFixture(t, true)
	os.MkdirAll(f.spool, 0o755)
	target := filepath.Join(t.TempDir(), "secret.jpg")
	os.WriteFile(target, testJPEG(t, 1), 0o600)
	os.Symlink(target, filepath.Join(f.spool, "link.jpg"))
	f.run()
	f.waitEmpty()
	if c := f.today(); c.Invalid != 1 || c.Admitted != 0 {
		t.Fatalf("symlink: %+v", c)
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatal("symlink target removed")
	}
}

func TestOversizedFileIsInvalid(t *testing.T) {
	f := newFixture(t, true)
	os.MkdirAll(f.spool, 0o755)
	big := append(testJPEG(t, 1), make([]byte, 2<<20)...)
	os.WriteFile(filepath.Join(f.spool, "big.jpg"), big, 0o644)
	f.run()
	f.waitEmpty()
	if c := f.today(); c.Invalid != 1 {
		t.Fatalf("oversized file: %+v", c)
	}
}

// TestInvalidPhotosAreLoggedWithAReason: every invalid spool file gets one
// line saying which file and why, never only the truncated JPEG.
func TestInvalidPhotosAreLoggedWithAReason(t *testing.T) {
	f := newFixture(t, true)
	var logs testlog.Buffer
	f.in.cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	os.MkdirAll(f.spool, 0o755)
	good := testJPEG(t, 1)
	target := filepath.Join(t.TempDir(), "elsewhere.jpg")
	os.WriteFile(target, good, 0o600)
	os.Symlink(target, filepath.Join(f.spool, "link.jpg"))
	for name, data := range map[string][]byte{
		"big.jpg":       append(testJPEG(t, 2), make([]byte, 2<<20)...),
		"notes.jpg":     []byte("hello, not a photo"),
		"huge.png":      pngHeaderDepth(8000, 5001, 8, 0),
		"truncated.jpg": good[:len(good)*9/10],
	} {
		os.WriteFile(filepath.Join(f.spool, name), data, 0o644)
	}
	f.run()
	f.waitEmpty()
	if c := f.today(); c.Invalid != 5 {
		t.Fatalf("%+v, want 5 invalid", c)
	}
	want := map[string]string{"link.jpg": InvalidNotAFile, "big.jpg": InvalidTooLarge, "notes.jpg": InvalidNotAnImage,
		"huge.png": InvalidTooManyPixels, "truncated.jpg": InvalidUndecodable}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l struct{ Msg, File, Reason string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "photo invalid" {
			if _, twice := got[l.File]; twice {
				t.Errorf("%s logged twice", l.File)
			}
			got[l.File] = l.Reason
		}
	}
	for file, reason := range want {
		if got[file] != reason {
			t.Errorf("%s: reason %q, want %q\n%s", file, got[file], reason, logs.String())
		}
	}
}
