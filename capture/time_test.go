package capture

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var tokyo, _ = time.LoadLocation("Asia/Tokyo")

// takenAts is a Scorer that records the time each photo was scored at.
type takenAts struct {
	mu  sync.Mutex
	got []time.Time
}

func (s *takenAts) Score(ctx context.Context, img []byte, takenAt time.Time) (Scored, error) {
	s.mu.Lock()
	s.got = append(s.got, takenAt)
	s.mu.Unlock()
	return seedScorer{good: map[int]bool{0: true, 1: true, 2: true}}.Score(ctx, img, takenAt)
}

// TestP3_APhotoAt10InTokyoIsScoredAt10: the time-of-day term reads the
// clock of the home's zone. The intake stored the admission in UTC and
// selection passed it on as it was, so a photo taken at 10:00 in Tokyo
// was scored as taken at 01:00, at night.
func TestP3_APhotoAt10InTokyoIsScoredAt10(t *testing.T) {
	f := newFixture(t, true)
	at10 := time.Date(2026, 11, 22, 10, 30, 0, 0, tokyo)
	f.setClock(at10)
	f.in.cfg.Location = tokyo
	f.run()
	f.drop(1, "p")
	f.waitEmpty()
	f.stop()
	sc := &takenAts{}
	q := &queue{}
	s := NewSelector(SelectorConfig{KeepPerDay: 1, MinScore: 0.25, Location: tokyo, Now: f.clock}, f.st, f.pol, f.vault, sc, nil, q)
	if _, err := s.SelectNow(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if len(sc.got) != 1 || len(q.committed) != 1 {
		t.Fatalf("scored %v, queued %d", sc.got, len(q.committed))
	}
	for what, got := range map[string]time.Time{"scored": sc.got[0], "uploaded": q.committed[0].TakenAt} {
		if _, off := got.Zone(); got.Hour() != 10 || off != 9*3600 || got.Sub(at10).Abs() > time.Minute {
			t.Errorf("%s as taken at %s, want 10:30 in Tokyo", what, got)
		}
	}
}

// holdPixels says "not judged" while down is set (the worker cannot
// start), then validates in process.
type holdPixels struct {
	down  atomic.Bool
	tries atomic.Int32
	InProcess
}

func (h *holdPixels) Validate(ctx context.Context, data []byte) (ImageInfo, error) {
	h.tries.Add(1)
	if h.down.Load() {
		return ImageInfo{}, fmt.Errorf("%w: the worker cannot start", ErrRetryLater)
	}
	return h.InProcess.Validate(ctx, data)
}

// TestPhotosWaitWhileImagesCannotBeJudgedAndKeepTheirArrivalTime
// (contract v3, section 2): while the worker cannot start, photos stay in
// the spool, uncounted, and nothing is lost; the intake says it waits and
// for how long the oldest has; once images can be judged again every
// photo is admitted, with the time of day of its arrival, not of its
// admission hours later.
func TestPhotosWaitWhileImagesCannotBeJudgedAndKeepTheirArrivalTime(t *testing.T) {
	f := newFixture(t, true)
	px := &holdPixels{}
	px.down.Store(true)
	f.in.cfg.Pixels = px
	arrived := time.Date(2026, 11, 22, 10, 30, 0, 0, la)
	f.setClock(arrived)
	f.run()
	f.drop(3, "p")
	deadline := time.Now().Add(5 * time.Second)
	seen := func() int { f.in.arrMu.Lock(); defer f.in.arrMu.Unlock(); return len(f.in.arrived) }
	for f.in.Waiting().Reason != WaitVision || seen() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the intake does not say it waits (%+v), or has not seen every photo (%d)", f.in.Waiting(), seen())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The test's clock jumps 3 h while the real one moves milliseconds: a
	// photo is stamped when the intake first saw it (on the real clock the
	// kernel's change time would correct a late first look).
	f.setClock(arrived.Add(3 * time.Hour)) // a long wait
	time.Sleep(2500 * time.Millisecond)    // a rescan or two
	if n := spoolFiles(t, f.spool); n != 3 {
		t.Fatalf("%d photos left in the spool, want all 3 to wait", n)
	}
	if c := f.today(); c.Admitted+c.Invalid+c.Refused+c.OverCap != 0 {
		t.Fatalf("photos were counted while they could not be judged: %+v", c)
	}
	if tries := px.tries.Load(); tries > 3 {
		t.Errorf("%d tries of the worker in 2.5 s of waiting, want a backing-off few", tries)
	}
	if w := f.in.OldestWaiting(); w < 3*time.Hour-time.Minute || w > 3*time.Hour+time.Minute {
		t.Errorf("oldest waiting %v, want about 3h", w)
	}
	px.down.Store(false)
	f.in.Resume()
	f.waitEmpty()
	if c := f.today(); c.Admitted != 3 {
		t.Fatalf("after the wait: %+v, want 3 admitted", c)
	}
	if w := f.in.Waiting(); !w.Since.IsZero() {
		t.Errorf("still waiting: %+v", w)
	}
	if w := f.in.OldestWaiting(); w != 0 {
		t.Errorf("oldest waiting %v with an empty spool", w)
	}
	var photos []Photo
	f.st.View(func(tx *bolt.Tx) (err error) { photos, err = Photos(tx); return })
	for _, p := range photos {
		if d := p.ArrivedAt.Sub(arrived); d < -time.Minute || d > time.Minute {
			t.Errorf("photo %s arrived at %s, want about %s", p.ID, p.ArrivedAt, arrived)
		}
		if got := p.TakenAt(la); got.Hour() != 10 {
			t.Errorf("photo %s taken at %s, want its arrival at 10:30, not its admission at 13:30", p.ID, got)
		}
		if !p.AdmittedAt.After(arrived.Add(2 * time.Hour)) {
			t.Errorf("photo %s admitted at %s: the clock should have moved 3 h", p.ID, p.AdmittedAt)
		}
	}
}

func spoolFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if Owned(e.Name()) {
			if _, err := os.Stat(filepath.Join(dir, e.Name())); err == nil {
				n++
			}
		}
	}
	return n
}

// notJudged is a Scorer whose worker cannot start.
type notJudged struct{}

func (notJudged) Score(ctx context.Context, img []byte, takenAt time.Time) (Scored, error) {
	return Scored{}, fmt.Errorf("%w: the worker cannot start", ErrRetryLater)
}

// TestSelectionWaitsWhileImagesCannotBeJudged: a photo the worker could
// not score was deleted as unscorable; with the worker unable to start,
// that was the whole day. Now the selection fails, says why, and every
// photo stays undecided for the next one.
func TestSelectionWaitsWhileImagesCannotBeJudged(t *testing.T) {
	f := admitted(t, 3)
	var failed string
	s := NewSelector(SelectorConfig{KeepPerDay: 2, MinScore: 0.25, Location: la, Now: f.clock,
		OnFailed: func(day, reason string) { failed = reason }}, f.st, f.pol, f.vault, notJudged{}, nil, &queue{})
	if _, err := s.SelectNow(context.Background(), true); err == nil {
		t.Fatal("a selection that could score nothing succeeded")
	}
	if failed != "vision_unavailable" {
		t.Errorf("selection_failed reason %q, want vision_unavailable", failed)
	}
	var photos []Photo
	f.st.View(func(tx *bolt.Tx) (err error) { photos, err = Photos(tx); return })
	if c := f.today(); len(photos) != 3 || c.Deleted != 0 {
		t.Fatalf("%d photos left, %d deleted: nothing may be lost while images cannot be judged", len(photos), c.Deleted)
	}
}

// blockPixels validates nothing: it waits until the intake stops.
type blockPixels struct {
	entered chan struct{}
	InProcess
}

func (b *blockPixels) Validate(ctx context.Context, data []byte) (ImageInfo, error) {
	close(b.entered)
	<-ctx.Done()
	return ImageInfo{}, ctx.Err()
}

// TestAValidationCutShortByStoppingIsNoVerdict: a photo being validated
// when the daemon stopped was counted invalid and deleted (seen as
// "vision: validate: context canceled" in a kill -9 test); it stays in
// the spool, uncounted, for the next start.
func TestAValidationCutShortByStoppingIsNoVerdict(t *testing.T) {
	f := newFixture(t, true)
	px := &blockPixels{entered: make(chan struct{})}
	f.in.cfg.Pixels = px
	f.run()
	f.drop(1, "p")
	select {
	case <-px.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the photo was never validated")
	}
	f.stop()
	if n := spoolFiles(t, f.spool); n != 1 {
		t.Fatalf("%d photos left in the spool, want the one cut short", n)
	}
	if c := f.today(); c.Invalid+c.Admitted != 0 {
		t.Fatalf("counted %+v: stopping is no verdict on the image", c)
	}
}
