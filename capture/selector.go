package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

// Scored is what a Scorer says of one photo: an explainable breakdown of
// features in [0, 1] and a perceptual hash.
type Scored struct {
	Breakdown map[string]float64
	PHash     uint64
}

// Scorer scores one photo (the vision worker, or pure Go without it).
type Scorer interface {
	Score(ctx context.Context, img []byte, takenAt time.Time) (Scored, error)
}

// Mask is what a Masker decided for one photo.
type Mask struct {
	// Hide are the faces to pixelate: everyone not recognised as an
	// enrolled, consenting person.
	Hide []image.Rectangle
	// ShowsKnown is set when a recognised person's face is left as it is.
	ShowsKnown bool
	// Generation is the recognition generation (policy.RecognitionGen) the
	// decision was made at: a photo showing someone is kept only if nobody
	// stopped being recognisable since.
	Generation uint64
}

// Masker finds the faces of a photo that must be pixelated before it
// leaves the device (blur_unknown_faces).
type Masker interface {
	Mask(ctx context.Context, img []byte) (Mask, error)
}

// Upload is a photo on its way to the owner's account (its content, a
// metadata-free JPEG, is streamed to Uploads.Stage).
type Upload struct {
	Day     string
	Score   float64
	TakenAt time.Time
	Masked  bool // strangers were pixelated (blur_unknown_faces was on)
	// ShowsKnown and Generation come from the Mask (see there).
	ShowsKnown bool
	Generation uint64
}

// Staged is an upload sealed and written but not yet queued.
type Staged interface {
	// Discard removes what was written for an upload whose transaction did
	// not commit; a no-op once it is queued.
	Discard()
}

// Uploads queues photos for the cloud: Stage outside any transaction,
// CommitTx inside the selection's.
type Uploads interface {
	// Stage seals u with the content write writes (streamed to a file,
	// never whole in memory); an error of write's is returned wrapped.
	Stage(u Upload, write func(io.Writer) error) (Staged, error)
	// CommitTx queues a staged upload in tx and returns its artifact id,
	// or an error wrapping ErrUploadsFull when the queue has no room.
	CommitTx(tx *bolt.Tx, s Staged) (artifactID string, err error)
}

// ErrUploadsFull: the upload queue has no room; the photo is not kept.
var ErrUploadsFull = errors.New("capture: upload queue full")

// errSelectionAborted stops a selection that lost a race with the owner.
var errSelectionAborted = errors.New("selection aborted: auto_photo is off or paused")

// Selection is what a selection did to one day.
type Selection struct {
	Day     string   `json:"day"`
	Kept    []string `json:"kept"` // artifact ids queued for upload
	Deleted int      `json:"deleted"`
	Reasons []Reason `json:"-"` // why each photo was kept or deleted
	// Took is how long the selection ran, scoring and commit included
	// (logged, and a metric).
	Took time.Duration `json:"-"`
}

// Reason says why one photo was kept or deleted: score and rank only,
// never content.
type Reason struct {
	PhotoID string
	Kept    bool
	Score   float64 // -1: unreadable or unscorable
	Rank    int     // 1 = best of the day's batch; 0 when unscored
	Why     string  // kept, below_min_score, near_duplicate_or_no_room, unscorable, not_masked, not_cleaned, queue_full, recognition_changed
}

// SelectorConfig tunes the Selector.
type SelectorConfig struct {
	KeepPerDay int
	MinScore   float64
	SelectAt   string // "hh:mm" local time
	Location   *time.Location
	Now        func() time.Time
	Logger     *slog.Logger
	// Pixels re-encodes the kept photos for upload (the vision worker in
	// the daemon); default InProcess within DefaultBudget.
	Pixels Pixels
	// Alone runs fn, which readies one photo to leave (its faces found,
	// strangers pixelated, re-encoded), with a worker of its own that has
	// seen nothing else and sees nothing after (vision.Client.Alone), and
	// runs it once more when that worker died. Default: fn as it is.
	Alone func(ctx context.Context, fn func(ctx context.Context) error) error
	// SelectedTx runs inside the transaction of a day's decision (its
	// Kept and Deleted are final); OnSelected after it committed.
	SelectedTx func(tx *bolt.Tx, s Selection) error
	OnSelected func(Selection)
	// OnFailed runs when a selection could not finish (a full disk, a
	// store error): the photos stay undecided and are tried again.
	OnFailed func(day, reason string)
	// Days says which day is today (share the Intake's); default a
	// DayClock over Now and the boot clock.
	Days *DayClock
}

// Selector owns the photos from admission to upload: it scores a day's
// admitted photos, keeps the best for upload and deletes the rest in one
// transaction, and learns the owner's preferences from feedback. It runs
// at select_at local time, at start for days that ended undecided, when a
// day's cap is reached and when asked (select_photos); one selection at a
// time, on its own goroutine.
type Selector struct {
	cfg     SelectorConfig
	st      *store.Store
	pol     *policy.Policy
	vault   *Vault
	scorer  Scorer
	masker  Masker
	uploads Uploads

	kick chan bool // true: include today
}

// NewSelector builds a Selector; masker may be nil when faces cannot be
// found (then no photo may leave while blur_unknown_faces is on).
func NewSelector(cfg SelectorConfig, st *store.Store, pol *policy.Policy, vault *Vault, scorer Scorer, masker Masker, uploads Uploads) *Selector {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.SelectAt == "" {
		cfg.SelectAt = "21:00"
	}
	if cfg.Pixels == nil {
		cfg.Pixels = &InProcess{}
	}
	if cfg.Alone == nil {
		cfg.Alone = func(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }
	}
	if cfg.Days == nil {
		cfg.Days = NewDayClock(cfg.Now, nil, cfg.Location)
	}
	return &Selector{cfg: cfg, st: st, pol: pol, vault: vault, scorer: scorer, masker: masker, uploads: uploads, kick: make(chan bool, 1)}
}

// Request asks for a selection of every undecided day, today included, as
// soon as the one running (if any) is done. It never blocks.
func (s *Selector) Request() {
	select {
	case s.kick <- true:
	default: // one is already asked for: it will see these photos too
	}
}

// Run selects undecided days before today once at start, then at
// select_at each day and whenever Request asks, until ctx ends. Scores
// whose photos were uploaded more than ScoreRetention ago are pruned
// hourly.
func (s *Selector) Run(ctx context.Context) error {
	s.runOnce(ctx, false)
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	for {
		next := NextLocal(s.cfg.Now(), s.cfg.SelectAt, s.cfg.Location)
		timer := time.NewTimer(next.Sub(s.cfg.Now())) // on the clock next was computed with
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
			s.runOnce(ctx, true)
		case today := <-s.kick:
			timer.Stop()
			s.runOnce(ctx, today)
		case <-prune.C:
			timer.Stop()
			if err := s.st.Update(func(tx *bolt.Tx) error { _, err := s.PruneScoresTx(tx, s.cfg.Now()); return err }); err != nil {
				s.cfg.Logger.Error("prune photo scores", "err", err)
			}
		}
	}
}

func (s *Selector) runOnce(ctx context.Context, includeToday bool) {
	_, err := s.SelectNow(ctx, includeToday)
	switch {
	case err == nil, errors.Is(err, errSelectionAborted), errors.Is(err, context.Canceled):
	default:
		s.cfg.Logger.Error("selection failed; the photos stay undecided", "err", err)
	}
}

// SelectNow decides every undecided photo of the days before today (and
// of today when includeToday is set). Scoring happens outside any
// transaction; each day's decision commits in one. Run calls it; tests may
// call it directly instead of running the service.
func (s *Selector) SelectNow(ctx context.Context, includeToday bool) ([]Selection, error) {
	var byDay map[string][]Photo
	var today string
	err := s.st.View(func(tx *bolt.Tx) error {
		st, err := s.pol.Read(tx)
		if err != nil {
			return err
		}
		if !s.pol.Allows(st, policy.AutoPhoto) {
			return errSelectionAborted
		}
		today = s.cfg.Days.Day(tx)
		photos, err := Photos(tx)
		if err != nil {
			return err
		}
		byDay = map[string][]Photo{}
		for _, p := range photos {
			if p.Day < today || includeToday {
				byDay[p.Day] = append(byDay[p.Day], p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	days := make([]string, 0, len(byDay))
	for day := range byDay {
		days = append(days, day)
	}
	sort.Strings(days)
	var out []Selection
	for _, day := range days {
		r, err := s.selectDay(ctx, day, byDay[day], day < today)
		if err != nil {
			if !errors.Is(err, errSelectionAborted) && !errors.Is(err, context.Canceled) && s.cfg.OnFailed != nil {
				s.cfg.OnFailed(day, failureReason(err))
			}
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// failureReason names a failed selection's cause without its details.
func failureReason(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return "disk_full"
	case errors.Is(err, ErrRetryLater):
		return "vision_unavailable"
	}
	return "internal"
}

type candidate struct {
	photo  Photo
	scored Scored
	score  float64
}

func (s *Selector) selectDay(ctx context.Context, day string, photos []Photo, dayOver bool) (Selection, error) {
	res := Selection{Day: day}
	start := time.Now()
	w := s.weights()
	cands := map[string]*candidate{}
	var list []Candidate
	for _, p := range photos {
		// The photo's time of day is the home's: when it arrived, on the
		// clock of cfg.Location (the worker reads the clock as given).
		taken := p.TakenAt(s.cfg.Location)
		img, err := s.vault.Open(p)
		if err != nil {
			s.cfg.Logger.Error("photo unreadable; it will be deleted", "photo_id", p.ID, "err", err)
			list = append(list, Candidate{PhotoID: p.ID, TakenAt: taken, Score: -1})
			continue
		}
		sc, err := s.scorer.Score(ctx, img, taken)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err() // shutting down: nothing is deleted for it
			}
			if errors.Is(err, ErrRetryLater) {
				// Not judged (the worker cannot start or be confined): the
				// day waits, nothing is deleted for it.
				return res, err
			}
			s.cfg.Logger.Warn("photo not scored; it will be deleted", "photo_id", p.ID, "err", err)
			list = append(list, Candidate{PhotoID: p.ID, TakenAt: taken, Score: -1})
			continue
		}
		c := &candidate{photo: p, scored: sc, score: w.Score(sc.Breakdown)}
		cands[p.ID] = c
		list = append(list, Candidate{PhotoID: p.ID, TakenAt: taken, Score: c.score, PHash: sc.PHash})
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	var counts DayCounts
	var blur bool
	if err := s.st.View(func(tx *bolt.Tx) (err error) {
		if counts, err = ReadDay(tx, day); err != nil {
			return err
		}
		st, err := s.pol.Read(tx)
		blur = err == nil && st.On(policy.BlurUnknownFaces)
		return err
	}); err != nil {
		return res, err
	}
	room := max(0, s.cfg.KeepPerDay-counts.Selected)
	keep, _ := Select(list, room, s.cfg.MinScore)
	why := map[string]string{}
	// Prepare uploads outside the transaction: metadata-free re-encoding
	// (strangers pixelated first) and sealing into the upload queue.
	staged := map[string]Staged{}
	uploads := map[string]Upload{}
	defer func() {
		for _, st := range staged {
			st.Discard() // no-op for the committed ones
		}
	}()
	for _, id := range keep {
		c := cands[id]
		img, err := s.vault.Open(c.photo)
		if err != nil {
			return res, err
		}
		u := Upload{Day: day, Score: round3(c.score), TakenAt: c.photo.TakenAt(s.cfg.Location)}
		st, u, reason, err := s.prepare(ctx, u, c.photo, img, blur)
		switch {
		case err == nil:
			staged[id], uploads[id] = st, u
			continue
		case ctx.Err() != nil:
			return res, ctx.Err()
		case errors.Is(err, ErrRetryLater):
			return res, err // not judged: the day waits
		case reason == "":
			return res, err
		}
		s.cfg.Logger.Warn("photo not kept", "photo_id", id, "reason", reason, "err", err)
		why[id] = reason
	}
	now := s.cfg.Now()
	var removed []Photo
	err := s.st.Update(func(tx *bolt.Tx) error {
		res.Kept, res.Deleted, removed = nil, 0, nil
		st, err := s.pol.Read(tx)
		if err != nil {
			return err
		}
		if !s.pol.Allows(st, policy.AutoPhoto) {
			return errSelectionAborted // withdrawal wins: switching off erases everything itself
		}
		gen := policy.RecognitionGen(tx)
		counts, err := ReadDay(tx, day)
		if err != nil {
			return err
		}
		b := tx.Bucket(store.BucketPhotos)
		for _, p := range photos {
			if b.Get([]byte(p.ID)) == nil {
				continue // erased meanwhile
			}
			if err := b.Delete([]byte(p.ID)); err != nil {
				return err
			}
			removed = append(removed, p)
			if st, ok := staged[p.ID]; ok {
				u := uploads[p.ID]
				switch {
				case u.ShowsKnown && u.Generation != gen:
					// Someone it shows unblurred stopped being
					// recognisable while it was prepared.
					why[p.ID] = "recognition_changed"
				default:
					aid, err := s.uploads.CommitTx(tx, st)
					if err == nil {
						res.Kept = append(res.Kept, aid)
						counts.Selected++
						if err := s.rememberScore(tx, now, aid, cands[p.ID].scored.Breakdown); err != nil {
							return err
						}
						continue
					}
					if !errors.Is(err, ErrUploadsFull) {
						return err
					}
					why[p.ID] = "queue_full"
				}
			}
			res.Deleted++
		}
		counts.Deleted += res.Deleted
		if dayOver || counts.CapReached {
			counts.Decided = true
		}
		if err := writeDay(tx, counts); err != nil {
			return err
		}
		if _, err := audit.Append(tx, now, "selection_done", "", map[string]string{"day": day, "kept": strconv.Itoa(len(res.Kept)), "deleted": strconv.Itoa(res.Deleted)}); err != nil {
			return err
		}
		// Once this commits, the photos' keys are overwritten in place and
		// their files removed: kept ones left as cleaned uploads.
		s.vault.forgetOnCommit(tx, removed)
		if s.cfg.SelectedTx != nil {
			return s.cfg.SelectedTx(tx, res)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.Reasons = reasons(list, keep, staged, why, s.cfg.MinScore)
	for _, r := range res.Reasons {
		if r.Kept {
			s.cfg.Logger.Info("photo kept by selection", "day", day, "photo_id", r.PhotoID, "score", r.Score, "rank", r.Rank)
		} else {
			s.cfg.Logger.Info("photo deleted by selection", "day", day, "photo_id", r.PhotoID, "score", r.Score, "rank", r.Rank, "reason", r.Why)
		}
	}
	res.Took = time.Since(start)
	s.cfg.Logger.Info("selection done", "day", day, "kept", len(res.Kept), "deleted", res.Deleted, "took", res.Took)
	if s.cfg.OnSelected != nil {
		s.cfg.OnSelected(res)
	}
	return res, nil
}

// prepare readies one kept photo to leave, in a worker of its own (Alone):
// its faces found when blur is on and strangers pixelated, re-encoded at
// its upload size and sealed into the upload queue, streamed. reason names
// why it cannot leave: not_masked, not_cleaned or queue_full ("" for an
// error of the device's own).
func (s *Selector) prepare(ctx context.Context, u Upload, p Photo, img []byte, blur bool) (st Staged, out Upload, reason string, err error) {
	size := image.Pt(clean.UploadSize(p.Width, p.Height))
	err = s.cfg.Alone(ctx, func(ctx context.Context) error {
		if st != nil { // a second try starts from nothing
			st.Discard()
			st = nil
		}
		out, reason = u, ""
		var hide []image.Rectangle
		if blur {
			m, err := s.mask(ctx, img)
			if err != nil {
				// Strangers cannot be found, so the photo cannot go out.
				reason = "not_masked"
				return err
			}
			hide, out.Masked, out.ShowsKnown, out.Generation = m.Hide, true, m.ShowsKnown, m.Generation
		}
		var cleanErr error
		sink := &writeErr{}
		staged, err := s.uploads.Stage(out, func(w io.Writer) error {
			sink.w = w
			cleanErr = s.cfg.Pixels.Clean(ctx, img, hide, size, sink)
			return cleanErr
		})
		switch {
		case errors.Is(err, ErrUploadsFull):
			reason = "queue_full"
			return err
		case sink.err != nil:
			return err // the queue's own failure (a full disk): not the photo's
		case cleanErr != nil:
			reason = "not_cleaned"
			return cleanErr
		case err != nil:
			return err
		}
		st = staged
		return nil
	})
	if err != nil && st != nil {
		st.Discard()
		st = nil
	}
	return st, out, reason, err
}

// writeErr remembers whether writing failed, to tell the upload queue's
// failures from the re-encoding's.
type writeErr struct {
	w   io.Writer
	err error
}

func (e *writeErr) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// mask asks the Masker, or fails when there is none.
func (s *Selector) mask(ctx context.Context, img []byte) (Mask, error) {
	if s.masker == nil {
		return Mask{}, errors.New("no face finder available")
	}
	return s.masker.Mask(ctx, img)
}

// reasons explains each photo of a batch: its score, its rank and why it
// was kept or deleted.
func reasons(list []Candidate, keep []string, staged map[string]Staged, why map[string]string, minScore float64) []Reason {
	ranked := append([]Candidate(nil), list...)
	sort.SliceStable(ranked, func(i, j int) bool { return ranked[i].Score > ranked[j].Score })
	picked := map[string]bool{}
	for _, id := range keep {
		picked[id] = true
	}
	out := make([]Reason, 0, len(ranked))
	for i, c := range ranked {
		r := Reason{PhotoID: c.PhotoID, Score: round3(c.Score), Rank: i + 1}
		switch {
		case c.Score < 0:
			r.Rank, r.Why = 0, "unscorable"
		case why[c.PhotoID] != "":
			r.Why = why[c.PhotoID]
		case picked[c.PhotoID] && staged[c.PhotoID] != nil:
			r.Kept, r.Why = true, "kept"
		case c.Score < minScore:
			r.Why = "below_min_score"
		default:
			r.Why = "near_duplicate_or_no_room"
		}
		out = append(out, r)
	}
	return out
}

func round3(f float64) float64 { return float64(int(f*1000+0.5)) / 1000 }

// NextLocal is the next time hh:mm happens in loc after now.
func NextLocal(now time.Time, hhmm string, loc *time.Location) time.Time {
	h, _ := strconv.Atoi(hhmm[:2])
	m, _ := strconv.Atoi(hhmm[3:])
	l := now.In(loc)
	t := time.Date(l.Year(), l.Month(), l.Day(), h, m, 0, 0, loc)
	if !t.After(now) {
		t = time.Date(l.Year(), l.Month(), l.Day()+1, h, m, 0, 0, loc)
	}
	return t
}

// The scoring bucket (store.BucketScoring) is the Selector's: the owner's
// learned weights, the breakdown behind each uploaded photo's score (for
// feedback), and the days whose usage report was queued.
var keyWeights = []byte("weights")

func scoreKey(artifactID string) []byte { return []byte("score/" + artifactID) }
func usageKey(day string) []byte        { return []byte("usage/" + day) }

// ScoreRetention is how long the features of an uploaded photo are kept
// for the owner's feedback to teach from.
const ScoreRetention = 90 * 24 * time.Hour

// scoreRecord keeps, per uploaded artifact, the breakdown its score came
// from, so the owner's feedback can teach the weights. No pixels.
type scoreRecord struct {
	At        time.Time          `json:"at"`
	Breakdown map[string]float64 `json:"breakdown"`
}

func (s *Selector) rememberScore(tx *bolt.Tx, now time.Time, artifactID string, b map[string]float64) error {
	// The breakdown is the worker's answer, kept in clear: only the
	// features the weights know go in, each in [0, 1] to three decimals,
	// never keys or digits of its own.
	known := make(map[string]float64, len(weights.Features))
	for _, k := range weights.Features {
		known[k] = round3(min(max(b[k], 0), 1))
	}
	raw, err := json.Marshal(scoreRecord{At: now.UTC(), Breakdown: known})
	if err != nil {
		return err
	}
	return tx.Bucket(store.BucketScoring).Put(scoreKey(artifactID), raw)
}

// weights returns the owner's learned weights, or the defaults.
func (s *Selector) weights() weights.Weights {
	w := weights.Defaults()
	_ = s.st.View(func(tx *bolt.Tx) error { w = readWeights(tx); return nil })
	return w
}

func readWeights(tx *bolt.Tx) weights.Weights {
	if raw := tx.Bucket(store.BucketScoring).Get(keyWeights); raw != nil {
		if w, err := weights.Parse(raw); err == nil {
			return w
		}
	}
	return weights.Defaults()
}

// Feedback refusals.
var (
	ErrUnknownArtifact = errors.New("no selected photo with that artifact_id")
	ErrBadSignal       = errors.New("signal must be favorite, shared or deleted")
)

// Feedback is what one signal taught.
type Feedback struct {
	Updates     int     `json:"updates"`
	ScoreBefore float64 `json:"score_before"`
	ScoreAfter  float64 `json:"score_after"`
}

// FeedbackTx teaches the weights, in tx, from what the owner did with an
// uploaded photo (favorite, shared, deleted), using the breakdown kept
// when it was selected. Only features are kept for this, never pixels.
func (s *Selector) FeedbackTx(tx *bolt.Tx, now time.Time, artifactID, signal string) (Feedback, error) {
	switch signal {
	case weights.SignalFavorite, weights.SignalShared, weights.SignalDeleted:
	default:
		return Feedback{}, ErrBadSignal
	}
	b := tx.Bucket(store.BucketScoring)
	raw := b.Get(scoreKey(artifactID))
	if raw == nil {
		return Feedback{}, ErrUnknownArtifact
	}
	var rec scoreRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Feedback{}, fmt.Errorf("score of %s unreadable: %w", artifactID, err)
	}
	before := readWeights(tx)
	after := weights.Learn(before, rec.Breakdown, signal)
	enc, err := json.Marshal(after)
	if err != nil {
		return Feedback{}, err
	}
	if err := b.Put(keyWeights, enc); err != nil {
		return Feedback{}, err
	}
	if _, err := audit.Append(tx, now, "photo_feedback", "", map[string]string{"artifact_id": artifactID, "signal": signal}); err != nil {
		return Feedback{}, err
	}
	return Feedback{Updates: after.Updates, ScoreBefore: round3(before.Score(rec.Breakdown)), ScoreAfter: round3(after.Score(rec.Breakdown))}, nil
}

// PruneScoresTx forgets the breakdowns of photos uploaded more than
// ScoreRetention before now.
func (s *Selector) PruneScoresTx(tx *bolt.Tx, now time.Time) (int, error) {
	cutoff := now.Add(-ScoreRetention)
	b := tx.Bucket(store.BucketScoring)
	var old [][]byte
	c := b.Cursor()
	prefix := []byte("score/")
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		var r scoreRecord
		if json.Unmarshal(v, &r) == nil && r.At.Before(cutoff) {
			old = append(old, append([]byte(nil), k...))
		}
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

// ScoreHoldings counts the kept breakdowns of uploaded photos and the
// time the oldest was kept (zero when none), for the inventory.
func ScoreHoldings(tx *bolt.Tx) (n int, oldest time.Time) {
	c := tx.Bucket(store.BucketScoring).Cursor()
	prefix := []byte("score/")
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		n++
		var r scoreRecord
		if json.Unmarshal(v, &r) == nil && (oldest.IsZero() || r.At.Before(oldest)) {
			oldest = r.At
		}
	}
	return n, oldest
}

// UsageReportTx hands yesterday's counters to queue once per day (the
// caller queues a de-identified usage artifact) and remembers, in tx, that
// the day was reported. It does nothing while usage_analytics is not
// allowed.
func (s *Selector) UsageReportTx(tx *bolt.Tx, now time.Time, queue func(DayCounts) error) error {
	st, err := s.pol.Read(tx)
	if err != nil || !s.pol.Allows(st, policy.UsageAnalytics) {
		return err
	}
	day := LocalDay(now.Add(-24*time.Hour), s.cfg.Location)
	b := tx.Bucket(store.BucketScoring)
	if b.Get(usageKey(day)) != nil {
		return nil // already reported
	}
	c, err := ReadDay(tx, day)
	if err != nil {
		return err
	}
	if err := queue(c); err != nil {
		return err
	}
	return b.Put(usageKey(day), []byte(now.UTC().Format(time.RFC3339)))
}

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }
