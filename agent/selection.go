package agent

import (
	"context"
	"encoding/json"
	"errors"
	"image"
	"sort"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/audit"
	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/agent/policy"
	"github.com/aibo-privacy/aibo-privacyd/agent/store"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

// Scored is what the vision worker says of one photo: an explainable
// breakdown of features in [0, 1] and a perceptual hash.
type Scored struct {
	Breakdown map[string]float64
	PHash     uint64
}

// photoScorer scores photos (the vision worker).
type photoScorer interface {
	Score(ctx context.Context, img []byte, takenAt time.Time) (Scored, error)
}

// errSelectionAborted stops a selection that lost a race with the owner.
var errSelectionAborted = errors.New("selection aborted: auto_photo is off or paused")

// selectionResult is what a selection did to one day.
type selectionResult struct {
	Day     string   `json:"day"`
	Kept    []string `json:"kept"` // artifact ids queued for upload
	Deleted int      `json:"deleted"`
}

// runSelection decides every undecided photo of the days up to and
// including through (all days before today, and today when final is set or
// the cap is reached). Scoring happens outside any transaction; the
// decision commits in one.
func (d *Daemon) runSelection(ctx context.Context, includeToday bool) ([]selectionResult, error) {
	d.selMu.Lock()
	defer d.selMu.Unlock()
	now := d.now()
	var byDay map[string][]capture.Photo
	var today string
	err := d.view(func(tx *bolt.Tx) error {
		st, err := d.pol.Read(tx)
		if err != nil {
			return err
		}
		if !d.pol.Allows(st, policy.AutoPhoto) {
			return errSelectionAborted
		}
		today = capture.CurrentDay(tx, now, d.cfg.Location())
		photos, err := capture.Photos(tx)
		if err != nil {
			return err
		}
		byDay = map[string][]capture.Photo{}
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
	var out []selectionResult
	for _, day := range days {
		r, err := d.selectDay(ctx, day, byDay[day], day < today)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

type candidate struct {
	photo  capture.Photo
	scored Scored
	score  float64
}

func (d *Daemon) selectDay(ctx context.Context, day string, photos []capture.Photo, dayOver bool) (selectionResult, error) {
	res := selectionResult{Day: day}
	weights := d.weights()
	cands := map[string]*candidate{}
	var list []capture.Candidate
	for _, p := range photos {
		img, err := d.vault.Open(p)
		if err != nil {
			d.log.Error("photo unreadable; it will be deleted", "photo_id", p.ID, "err", err)
			list = append(list, capture.Candidate{PhotoID: p.ID, TakenAt: p.AdmittedAt, Score: -1})
			continue
		}
		sc, err := d.scorer.Score(ctx, img, p.AdmittedAt)
		if err != nil {
			d.log.Warn("photo not scored; it will be deleted", "photo_id", p.ID, "err", err)
			list = append(list, capture.Candidate{PhotoID: p.ID, TakenAt: p.AdmittedAt, Score: -1})
			continue
		}
		c := &candidate{photo: p, scored: sc, score: weights.score(sc.Breakdown)}
		cands[p.ID] = c
		list = append(list, capture.Candidate{PhotoID: p.ID, TakenAt: p.AdmittedAt, Score: c.score, PHash: sc.PHash})
	}
	if err := ctx.Err(); err != nil {
		return res, err // shutting down: a photo that could not be scored is not deleted for it
	}
	var counts capture.DayCounts
	_ = d.view(func(tx *bolt.Tx) (err error) { counts, err = capture.ReadDay(tx, day); return })
	room := max(0, d.cfg.Photos.KeepPerDay-counts.Selected)
	keep, _ := capture.Select(list, room, d.cfg.Photos.MinScore)
	// Prepare uploads outside the transaction: metadata-free re-encoding
	// and sealing into the outbox.
	prepared := map[string]*outbox.Prepared{}
	defer func() {
		for _, p := range prepared {
			p.Discard() // no-op for the committed ones
		}
	}()
	blur := false
	_ = d.view(func(tx *bolt.Tx) error {
		st, err := d.pol.Read(tx)
		blur = err == nil && st.On(policy.BlurUnknownFaces)
		return nil
	})
	for _, id := range keep {
		c := cands[id]
		img, err := d.vault.Open(c.photo)
		if err != nil {
			return res, err
		}
		var hide []image.Rectangle
		if blur {
			faces, err := d.photoFaces().Faces(ctx, img)
			if err != nil {
				// Strangers cannot be found, so the photo cannot go out.
				d.log.Warn("faces not found for blurring; photo not kept", "photo_id", id, "err", err)
				continue
			}
			hide = d.faces.Strangers(faces)
		}
		clean, err := capture.CleanForUpload(img, hide)
		if err != nil {
			return res, err
		}
		p, err := d.outbox.Prepare(outbox.Artifact{Kind: outbox.KindPhoto, ContentType: "image/jpeg", Content: clean,
			CreatedAt: c.photo.AdmittedAt, Attrs: map[string]any{"day": day, "score": round3(c.score)}})
		if err != nil {
			if errors.Is(err, outbox.ErrQueueFull) {
				d.log.Warn("outbox full: photo not kept", "photo_id", id)
				continue
			}
			return res, err
		}
		prepared[id] = p
	}
	now := d.now()
	var removed []string
	err := d.st.Update(func(tx *bolt.Tx) error {
		res.Kept, res.Deleted, removed = nil, 0, nil
		st, err := d.pol.Read(tx)
		if err != nil {
			return err
		}
		if !d.pol.Allows(st, policy.AutoPhoto) {
			return errSelectionAborted // withdrawal wins: switching off erases everything itself
		}
		counts, err := capture.ReadDay(tx, day)
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
			removed = append(removed, p.ID)
			if pr, ok := prepared[p.ID]; ok {
				m, err := d.outbox.EnqueueTx(tx, pr)
				if err == nil {
					res.Kept = append(res.Kept, m.ID)
					counts.Selected++
					if err := d.rememberScore(tx, m.ID, cands[p.ID]); err != nil {
						return err
					}
					continue
				}
				if !errors.Is(err, outbox.ErrQueueFull) {
					return err
				}
			}
			res.Deleted++
		}
		counts.Deleted += res.Deleted
		if dayOver || counts.CapReached {
			counts.Decided = true
		}
		if err := capture.WriteDay(tx, counts); err != nil {
			return err
		}
		_, err = audit.Append(tx, now, "selection_done", "", map[string]string{"day": day, "kept": strconv.Itoa(len(res.Kept)), "deleted": strconv.Itoa(res.Deleted)})
		return err
	})
	if err != nil {
		return res, err
	}
	if err := d.vault.RemoveFiles(removed); err != nil {
		d.log.Error("remove decided photo files", "err", err)
	}
	d.event(map[string]any{"type": "selection_done", "day": day, "kept": len(res.Kept), "deleted": res.Deleted})
	d.stateChanged()
	d.log.Info("selection done", "day", day, "kept", len(res.Kept), "deleted", res.Deleted)
	return res, nil
}

// scoreRecord keeps, per uploaded artifact, the breakdown its score came
// from, so the owner's feedback can teach the weights. No pixels.
type scoreRecord struct {
	At        time.Time          `json:"at"`
	Breakdown map[string]float64 `json:"breakdown"`
}

func scoreKey(artifactID string) []byte { return []byte("score/" + artifactID) }

func (d *Daemon) rememberScore(tx *bolt.Tx, artifactID string, c *candidate) error {
	raw, _ := json.Marshal(scoreRecord{At: d.now().UTC(), Breakdown: c.scored.Breakdown})
	return tx.Bucket(store.BucketScoring).Put(scoreKey(artifactID), raw)
}

func (d *Daemon) selectPhotos(ctx context.Context, e *command.Exec) (any, error) {
	if err := command.Decode(e.Cmd.Payload, &struct{}{}); err != nil {
		return nil, err
	}
	var st policy.State
	st, err := d.pol.Read(e.Tx)
	if err != nil {
		return nil, err
	}
	if !d.pol.Allows(st, policy.AutoPhoto) {
		return nil, command.Errorf(command.CodeFeatureDisabled, "auto_photo is off")
	}
	// The selection scores photos for seconds and commits its own
	// transaction: run it after this command's commit.
	e.AfterCommit(func() { d.selectSoon(true) })
	return map[string]any{"started": true}, nil
}

// selectSoon runs a selection in the background, one at a time.
func (d *Daemon) selectSoon(includeToday bool) {
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		if _, err := d.runSelection(d.ctx, includeToday); err != nil && !errors.Is(err, errSelectionAborted) && !errors.Is(err, context.Canceled) {
			d.log.Error("selection failed", "err", err)
		}
	}()
}

// selector runs the selection at select_at local time each day, and once
// at start for days that ended undecided.
func (d *Daemon) selector(ctx context.Context) error {
	d.selectSoon(false)
	for {
		next := nextLocal(d.now(), d.cfg.Photos.SelectAt, d.cfg.Location())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(next)):
			d.selectSoon(true)
		}
	}
}

// nextLocal is the next time hh:mm happens in loc after now.
func nextLocal(now time.Time, hhmm string, loc *time.Location) time.Time {
	h, _ := strconv.Atoi(hhmm[:2])
	m, _ := strconv.Atoi(hhmm[3:])
	l := now.In(loc)
	t := time.Date(l.Year(), l.Month(), l.Day(), h, m, 0, 0, loc)
	if !t.After(now) {
		t = time.Date(l.Year(), l.Month(), l.Day()+1, h, m, 0, 0, loc)
	}
	return t
}
