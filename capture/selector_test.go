package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
)

// seedScorer reads back the seed testJPEG painted into the blue channel:
// seeds in good score high, the others score zero on every feature. Each
// seed gets a perceptual hash far from the others'.
type seedScorer struct{ good map[int]bool }

func seedOf(img []byte) int {
	m, err := jpeg.Decode(bytes.NewReader(img))
	if err != nil {
		return -1
	}
	var sum, n float64
	r := m.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			_, _, b, _ := m.At(x, y).RGBA()
			sum += float64(b >> 8)
			n++
		}
	}
	return int(math.Round(sum / n / 7))
}

func (s seedScorer) Score(ctx context.Context, img []byte, takenAt time.Time) (Scored, error) {
	seed := seedOf(img)
	v := 0.0
	if s.good[seed] {
		v = 1
	}
	b := map[string]float64{}
	for _, f := range weights.Features {
		b[f] = v
	}
	h := uint64(seed+1) * 0x9E3779B97F4A7C15
	return Scored{Breakdown: b, PHash: h ^ h>>29}, nil
}

// queue is an Uploads that keeps what was committed.
type queue struct {
	mu        sync.Mutex
	committed []Upload
	contents  [][]byte // of the committed, in order
	discarded int
	onStage   func()
	full      bool
}

type staged struct {
	q       *queue
	u       Upload
	content []byte
}

func (s *staged) Discard() { s.q.mu.Lock(); s.q.discarded++; s.q.mu.Unlock() }

func (q *queue) Stage(u Upload, write func(io.Writer) error) (Staged, error) {
	if q.onStage != nil {
		q.onStage()
	}
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return nil, err
	}
	return &staged{q, u, buf.Bytes()}, nil
}

func (q *queue) CommitTx(tx *bolt.Tx, s Staged) (string, error) {
	if q.full {
		return "", ErrUploadsFull
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.committed = append(q.committed, s.(*staged).u)
	q.contents = append(q.contents, s.(*staged).content)
	return "a" + string(rune('0'+len(q.committed))), nil
}

type fixedMask struct {
	m   Mask
	err error
}

func (f fixedMask) Mask(ctx context.Context, img []byte) (Mask, error) { return f.m, f.err }

// admitted returns a fixture whose intake admitted n photos (seeds 0..n-1).
func admitted(t *testing.T, n int) *fixture {
	f := newFixture(t, true)
	f.run()
	f.drop(n, "p")
	f.waitEmpty()
	f.stop()
	if c := f.today(); c.Admitted != n {
		t.Fatalf("admitted %+v", c)
	}
	return f
}

func (f *fixture) selector(sc Scorer, m Masker, up Uploads, keep int) *Selector {
	return NewSelector(SelectorConfig{KeepPerDay: keep, MinScore: 0.25, Location: la, Now: f.clock,
		Logger: slog.New(slog.DiscardHandler)}, f.st, f.pol, f.vault, sc, m, up)
}

func (f *fixture) set(features map[policy.Feature]bool) {
	f.t.Helper()
	if err := f.st.Update(func(tx *bolt.Tx) error { _, err := f.pol.SetFeatures(tx, f.clock(), features); return err }); err != nil {
		f.t.Fatal(err)
	}
}

// Promise P4: the chosen photos go up, the device deletes the rest at
// once (records, keys and files).
func TestP4_SelectionQueuesTheBestAndDeletesTheRestAtOnce(t *testing.T) {
	f := admitted(t, 6)
	q := &queue{}
	s := f.selector(seedScorer{good: map[int]bool{0: true, 1: true, 2: true}}, nil, q, 2)
	res, err := s.SelectNow(context.Background(), true)
	if err != nil || len(res) != 1 {
		t.Fatalf("select: %v %v", res, err)
	}
	if len(res[0].Kept) != 2 || res[0].Deleted != 4 || len(q.committed) != 2 {
		t.Fatalf("kept %v deleted %d committed %d", res[0].Kept, res[0].Deleted, len(q.committed))
	}
	for i, u := range q.committed {
		if seed := seedOf(q.contents[i]); seed > 2 {
			t.Errorf("a photo scoring zero (seed %d) was kept", seed)
		}
		if u.Masked || u.ShowsKnown {
			t.Errorf("blurring is off, yet %+v", u)
		}
	}
	why := map[string]int{}
	for _, r := range res[0].Reasons {
		why[r.Why]++
	}
	if why["kept"] != 2 || why["below_min_score"] != 3 || why["near_duplicate_or_no_room"] != 1 {
		t.Errorf("reasons %v", why)
	}
	f.st.View(func(tx *bolt.Tx) error {
		photos, _ := Photos(tx)
		c, _ := ReadDay(tx, res[0].Day)
		if len(photos) != 0 || c.Deleted != 4 || c.Selected != 2 {
			t.Fatalf("after selection: %d photos, counts %+v", len(photos), c)
		}
		return nil
	})
	if n := len(vaultFiles(t, f)); n != 0 {
		t.Fatalf("%d sealed files left", n)
	}
}

// Promise P14: switching auto_photo off while a selection prepares its
// uploads wins: nothing is queued.
func TestP14_SwitchingAutoPhotoOffDuringASelectionQueuesNothing(t *testing.T) {
	f := admitted(t, 3)
	q := &queue{}
	q.onStage = func() { f.set(map[policy.Feature]bool{policy.AutoPhoto: false}) }
	s := f.selector(seedScorer{good: map[int]bool{0: true, 1: true, 2: true}}, nil, q, 10)
	if _, err := s.SelectNow(context.Background(), true); !errors.Is(err, errSelectionAborted) {
		t.Fatalf("select: %v", err)
	}
	if len(q.committed) != 0 || q.discarded == 0 {
		t.Fatalf("committed %d, discarded %d", len(q.committed), q.discarded)
	}
}

// Promise P7 with blurring on: a photo whose mask left a recognised
// person's face is not kept if someone stopped being recognisable while it
// was prepared; one whose faces could not be found is not kept at all.
func TestP7_BlurredPhotosAreKeptOnlyAtTheCurrentRecognitionGeneration(t *testing.T) {
	f := admitted(t, 2)
	f.set(map[policy.Feature]bool{policy.BlurUnknownFaces: true})
	q := &queue{}
	q.onStage = func() { f.st.Update(policy.BumpRecognitionTx) } // a revocation commits meanwhile
	s := f.selector(seedScorer{good: map[int]bool{0: true, 1: true}}, fixedMask{m: Mask{ShowsKnown: true, Generation: 0}}, q, 10)
	res, err := s.SelectNow(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.committed) != 0 || res[0].Deleted != 2 {
		t.Fatalf("committed %d deleted %d: a photo showing someone no longer recognisable was kept", len(q.committed), res[0].Deleted)
	}

	f = admitted(t, 1)
	f.set(map[policy.Feature]bool{policy.BlurUnknownFaces: true})
	q = &queue{}
	s = f.selector(seedScorer{good: map[int]bool{0: true}}, fixedMask{err: errors.New("worker crashed")}, q, 10)
	if _, err := s.SelectNow(context.Background(), true); err != nil || len(q.committed) != 0 {
		t.Fatalf("unmaskable photo: committed %d, %v", len(q.committed), err)
	}

	f = admitted(t, 1)
	f.set(map[policy.Feature]bool{policy.BlurUnknownFaces: true})
	q = &queue{}
	s = f.selector(seedScorer{good: map[int]bool{0: true}}, fixedMask{m: Mask{}}, q, 10)
	if _, err := s.SelectNow(context.Background(), true); err != nil || len(q.committed) != 1 || !q.committed[0].Masked {
		t.Fatalf("masked photo: committed %+v, %v", q.committed, err)
	}
}

// keep_per_day holds across selections of one day, and a full queue
// deletes the photo rather than keeping it undecided forever.
func TestP4_KeepPerDayHoldsAcrossSelections(t *testing.T) {
	f := admitted(t, 2)
	q := &queue{}
	s := f.selector(seedScorer{good: map[int]bool{0: true, 1: true}}, nil, q, 1)
	s.SelectNow(context.Background(), true)
	f.run()
	f.drop(1, "late")
	f.waitEmpty()
	f.stop()
	res, err := s.SelectNow(context.Background(), true)
	if err != nil || len(q.committed) != 1 || len(res) != 1 || res[0].Deleted != 1 {
		t.Fatalf("second selection: %+v committed %d %v", res, len(q.committed), err)
	}
}

// The service: a Request (the cap reached, select_photos) runs a selection
// on the service's goroutine and reports it.
func TestRequestRunsASelection(t *testing.T) {
	f := admitted(t, 2)
	done := make(chan Selection, 1)
	s := NewSelector(SelectorConfig{KeepPerDay: 5, MinScore: 0.25, Location: la, Now: f.clock, SelectAt: "23:59",
		Logger: slog.New(slog.DiscardHandler), OnSelected: func(sel Selection) { done <- sel }},
		f.st, f.pol, f.vault, seedScorer{good: map[int]bool{0: true}}, nil, &queue{})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- s.Run(ctx) }()
	s.Request()
	select {
	case sel := <-done:
		if len(sel.Kept) != 1 || sel.Deleted != 1 {
			t.Fatalf("selection %+v", sel)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no selection within 5 s of a request")
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// Promise P3: the owner's feedback on an uploaded photo moves the weights;
// feedback on anything else is refused.
func TestP3_FeedbackTeachesFromTheKeptPhotosFeatures(t *testing.T) {
	f := admitted(t, 1)
	q := &queue{}
	s := f.selector(seedScorer{good: map[int]bool{0: true}}, nil, q, 5)
	res, _ := s.SelectNow(context.Background(), true)
	if len(res) != 1 || len(res[0].Kept) != 1 {
		t.Fatalf("selection %+v", res)
	}
	err := f.st.Update(func(tx *bolt.Tx) error {
		if _, err := s.FeedbackTx(tx, f.clock(), "nope", weights.SignalFavorite); !errors.Is(err, ErrUnknownArtifact) {
			t.Errorf("unknown artifact: %v", err)
		}
		if _, err := s.FeedbackTx(tx, f.clock(), res[0].Kept[0], "love"); !errors.Is(err, ErrBadSignal) {
			t.Errorf("bad signal: %v", err)
		}
		fb, err := s.FeedbackTx(tx, f.clock(), res[0].Kept[0], weights.SignalDeleted)
		if err != nil || fb.Updates != 1 || fb.ScoreAfter >= fb.ScoreBefore {
			t.Errorf("feedback %+v %v", fb, err)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Scores are kept 90 days for feedback, then pruned.
	f.st.Update(func(tx *bolt.Tx) error {
		n, err := s.PruneScoresTx(tx, f.clock().Add(ScoreRetention+time.Hour))
		if n != 1 || err != nil {
			t.Errorf("pruned %d, %v", n, err)
		}
		return err
	})
}

// Promise P17: usage is reported once a day, only while analytics is on.
func TestP17_UsageIsReportedOnceADayOnlyWithConsent(t *testing.T) {
	f := admitted(t, 1)
	s := f.selector(seedScorer{}, nil, &queue{}, 5)
	reports := 0
	queue := func(DayCounts) error { reports++; return nil }
	tomorrow := f.clock().Add(24 * time.Hour)
	f.st.Update(func(tx *bolt.Tx) error { return s.UsageReportTx(tx, tomorrow, queue) })
	if reports != 0 {
		t.Fatal("usage reported without usage_analytics")
	}
	f.set(map[policy.Feature]bool{policy.UsageAnalytics: true})
	for range 2 {
		f.st.Update(func(tx *bolt.Tx) error { return s.UsageReportTx(tx, tomorrow, queue) })
	}
	if reports != 1 {
		t.Fatalf("%d reports for one day", reports)
	}
}

func vaultFiles(t *testing.T, f *fixture) []string {
	t.Helper()
	entries, err := os.ReadDir(f.vault.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

type sessionKey struct{}

// sessions is an Alone that marks its context, counts the sessions, and
// runs fn a second time when the first run fails (as vision.Client.Alone
// does when the worker died).
type sessions struct {
	mu    sync.Mutex
	n     int
	reran int
}

func (s *sessions) alone(ctx context.Context, fn func(context.Context) error) error {
	s.mu.Lock()
	s.n++
	id := s.n
	s.mu.Unlock()
	ctx = context.WithValue(ctx, sessionKey{}, id)
	err := fn(ctx)
	if err != nil {
		s.mu.Lock()
		s.reran++
		s.mu.Unlock()
		err = fn(ctx)
	}
	return err
}

// sessionPixels and sessionMask record the session each call ran in (0:
// none); cleanFails makes the first clean of each session fail.
type sessionPixels struct {
	InProcess
	mu         sync.Mutex
	cleans     []any
	cleanFails map[any]bool
}

func (p *sessionPixels) Clean(ctx context.Context, data []byte, hide []image.Rectangle, size image.Point, w io.Writer) error {
	p.mu.Lock()
	id := ctx.Value(sessionKey{})
	p.cleans = append(p.cleans, id)
	fail := p.cleanFails != nil && !p.cleanFails[id]
	if fail {
		p.cleanFails[id] = true
	}
	p.mu.Unlock()
	if fail {
		return errors.New("vision: worker crashed during clean")
	}
	return p.InProcess.Clean(ctx, data, hide, size, w)
}

type sessionMask struct {
	mu    sync.Mutex
	masks []any
}

func (m *sessionMask) Mask(ctx context.Context, img []byte) (Mask, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.masks = append(m.masks, ctx.Value(sessionKey{}))
	return Mask{}, nil
}

// Issue 21: each photo about to leave has its faces found and is
// re-encoded within a session of its own (a worker that has seen nothing
// else), never outside one; and a session whose worker died is run again
// from nothing (issue 22: a crash is not a verdict).
func TestIssue21_EachOutgoingPhotoIsReadiedByAWorkerOfItsOwn(t *testing.T) {
	f := admitted(t, 3)
	f.set(map[policy.Feature]bool{policy.BlurUnknownFaces: true})
	q := &queue{}
	ss := &sessions{}
	px := &sessionPixels{cleanFails: map[any]bool{}}
	mk := &sessionMask{}
	s := NewSelector(SelectorConfig{KeepPerDay: 2, MinScore: 0.25, Location: la, Now: f.clock, Logger: slog.New(slog.DiscardHandler),
		Pixels: px, Alone: ss.alone}, f.st, f.pol, f.vault, seedScorer{good: map[int]bool{0: true, 1: true, 2: true}}, mk, q)
	res, err := s.SelectNow(context.Background(), true)
	if err != nil || len(res) != 1 || len(res[0].Kept) != 2 {
		t.Fatalf("select: %+v %v", res, err)
	}
	if ss.n != 2 || ss.reran != 2 {
		t.Fatalf("%d sessions, %d run again: want one session per kept photo, each run again once", ss.n, ss.reran)
	}
	seen := map[any]int{}
	for _, id := range append(append([]any{}, px.cleans...), mk.masks...) {
		if id == nil {
			t.Fatal("a photo's faces or its re-encoding ran outside a session")
		}
		seen[id]++
	}
	if len(seen) != 2 || seen[1] != 4 || seen[2] != 4 { // two runs of mask and clean each
		t.Fatalf("calls by session %v", seen)
	}
	if len(q.committed) != 2 {
		t.Fatalf("committed %d", len(q.committed))
	}
}

// notJudged is what the daemon's adapters return when the worker could not
// start or be confined.
type notJudgedScorer struct{}

func (notJudgedScorer) Score(context.Context, []byte, time.Time) (Scored, error) {
	return Scored{}, fmt.Errorf("%w: vision: the worker cannot be confined", ErrRetryLater)
}

// Issue 21/22: a photo the worker could not judge (it cannot start or be
// confined) is not deleted: the day waits undecided, as it does for a full
// disk.
func TestIssue22_APhotoNoWorkerCouldJudgeWaits(t *testing.T) {
	for name, build := range map[string]func(f *fixture) *Selector{
		"score": func(f *fixture) *Selector { return f.selector(notJudgedScorer{}, nil, &queue{}, 10) },
		"mask": func(f *fixture) *Selector {
			f.set(map[policy.Feature]bool{policy.BlurUnknownFaces: true})
			return f.selector(seedScorer{good: map[int]bool{0: true, 1: true}},
				fixedMask{err: fmt.Errorf("%w: no worker", ErrRetryLater)}, &queue{}, 10)
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := admitted(t, 2)
			s := build(f)
			if _, err := s.SelectNow(context.Background(), true); !errors.Is(err, ErrRetryLater) {
				t.Fatalf("select: %v, want ErrRetryLater", err)
			}
			f.st.View(func(tx *bolt.Tx) error {
				photos, _ := Photos(tx)
				c, _ := ReadDay(tx, f.today().Day)
				if len(photos) != 2 || c.Deleted != 0 || c.Decided {
					t.Fatalf("%d photos left, counts %+v: a photo nobody judged was deleted", len(photos), c)
				}
				return nil
			})
		})
	}
}

// smugglingScorer is a worker taken over by an image: beside the real
// features, its breakdown names what it saw in other frames.
type smugglingScorer struct {
	seedScorer
	secret string
}

func (s smugglingScorer) Score(ctx context.Context, img []byte, takenAt time.Time) (Scored, error) {
	sc, err := s.seedScorer.Score(ctx, img, takenAt)
	sc.Breakdown[s.secret] = 1
	sc.Breakdown[weights.Noise] = 0.9876543210123 // data in a feature's low digits
	return sc, err
}

// Promise P16: a vision worker taken over by an image cannot write what
// it saw into the store. The breakdown of a kept photo is kept in clear
// for 90 days (photo_feedback learns from it), so only the features the
// weights know are kept, to three decimals: a worker's own keys (up to its
// 64 KiB answer) or digits would outlive every erasure, a revoked
// person's face among them.
func TestP16_AWorkersScoreCannotWriteWhatItSawIntoTheStore(t *testing.T) {
	f := admitted(t, 1)
	secret := "descriptor-of-a-family-member-seen-on-patrol-0123456789abcdef"
	q := &queue{}
	s := f.selector(smugglingScorer{seedScorer{good: map[int]bool{0: true}}, secret}, nil, q, 1)
	res, err := s.SelectNow(context.Background(), true)
	if err != nil || len(res) != 1 || len(res[0].Kept) != 1 {
		t.Fatalf("select: %+v %v", res, err)
	}
	raw, err := os.ReadFile(f.st.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the worker's own breakdown key is in the store file, in clear")
	}
	if bytes.Contains(raw, []byte("987654321")) {
		t.Fatal("a feature's value is kept to every digit the worker gave: 52 bits of its choice per feature")
	}
	// What feedback learns from is still there.
	err = f.st.Update(func(tx *bolt.Tx) error {
		fb, err := s.FeedbackTx(tx, f.clock(), res[0].Kept[0], weights.SignalDeleted)
		if err == nil && (fb.Updates != 1 || fb.ScoreAfter >= fb.ScoreBefore) {
			t.Errorf("feedback %+v", fb)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
