package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// This file adapts the Selector's small interfaces (capture.Scorer,
// capture.Masker, capture.Uploads) to the vision worker, facerec and the
// outbox, and answers the photo commands.

// workerScores asks the vision worker for a photo's breakdown.
type workerScores struct {
	c *vision.Client
	h *visionHealth
}

func (w workerScores) Score(ctx context.Context, img []byte, takenAt time.Time) (capture.Scored, error) {
	var r vision.ScoreResult
	err := w.h.call(func() (err error) { r, err = w.c.Score(ctx, vision.Score{Image: img, TakenAt: takenAt}); return err })
	if err != nil {
		return capture.Scored{}, err
	}
	return capture.Scored{Breakdown: r.Breakdown, PHash: r.PHash}, nil
}

// faceMasker finds the faces of a photo with the worker and keeps those of
// people facerec recognises as enrolled and consenting.
type faceMasker struct {
	an    facerec.Analyzer
	faces *facerec.Service
}

func (m faceMasker) Mask(ctx context.Context, img []byte) (capture.Mask, error) {
	an := m.an
	if w, ok := an.(workerFaces); ok && !m.faces.MayRecognizeAnyone() {
		w.boxesOnly = true // nobody can be recognised: no descriptor is needed
		an = w
	}
	found, err := an.Faces(ctx, img)
	if err != nil {
		return capture.Mask{}, err
	}
	hide, known, gen, err := m.faces.Strangers(found)
	if err != nil {
		return capture.Mask{}, err
	}
	return capture.Mask{Hide: hide, ShowsKnown: known, Generation: gen}, nil
}

// photoUploads queues photos in the outbox.
type photoUploads struct{ o *outbox.Outbox }

type stagedPhoto struct{ p *outbox.Prepared }

func (s stagedPhoto) Discard() { s.p.Discard() }

// Stage streams the photo's content into the outbox, sealed a segment at
// a time as the worker's answer arrives (outbox.Stream): never whole in
// the daemon's memory.
func (u photoUploads) Stage(up capture.Upload, write func(io.Writer) error) (capture.Staged, error) {
	s, err := u.o.NewStream()
	if err != nil {
		return nil, err
	}
	p, err := func() (*outbox.Prepared, error) {
		if err := write(s); err != nil {
			return nil, err
		}
		return u.o.Prepare(outbox.Artifact{Kind: policy.KindPhoto, ContentType: "image/jpeg", Stream: s,
			CreatedAt: up.TakenAt, Attrs: map[string]any{"day": up.Day, "score": up.Score},
			Masked: up.Masked, ShowsKnown: up.ShowsKnown, Generation: up.Generation})
	}()
	if err != nil {
		s.Discard()
		if errors.Is(err, outbox.ErrQueueFull) {
			return nil, fmt.Errorf("%w: %w", capture.ErrUploadsFull, err)
		}
		return nil, err
	}
	return stagedPhoto{p}, nil
}

func (u photoUploads) CommitTx(tx *bolt.Tx, s capture.Staged) (string, error) {
	sp, ok := s.(stagedPhoto)
	if !ok {
		return "", errors.New("photo staged elsewhere")
	}
	m, err := u.o.EnqueueTx(tx, sp.p)
	if errors.Is(err, outbox.ErrQueueFull) {
		return "", fmt.Errorf("%w: %w", capture.ErrUploadsFull, err)
	}
	return m.ID, err
}

// selectPhotos runs a selection after this command's commit; its outcome
// follows as selection_done (or selection_failed).
func (d *Daemon) selectPhotos(ctx context.Context, e *command.Exec) (any, error) {
	if err := command.Decode(e.Cmd.Payload, &struct{}{}); err != nil {
		return nil, err
	}
	st, err := d.pol.Read(e.Tx)
	if err != nil {
		return nil, err
	}
	if !d.pol.Allows(st, policy.AutoPhoto) {
		return nil, command.Errorf(command.CodeFeatureDisabled, "auto_photo is off")
	}
	e.OnCommit(d.selector.Request)
	return map[string]any{"started": true}, nil
}

// photoFeedback teaches the weights from what the owner did with an
// uploaded photo.
func (d *Daemon) photoFeedback(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		ArtifactID string `json:"artifact_id"`
		Signal     string `json:"signal"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	f, err := d.selector.FeedbackTx(e.Tx, e.Now, p.ArtifactID, p.Signal)
	switch {
	case errors.Is(err, capture.ErrBadSignal):
		return nil, command.Errorf(command.CodeBadRequest, "%s", err.Error())
	case errors.Is(err, capture.ErrUnknownArtifact):
		return nil, command.Errorf(command.CodeNotFound, "%s", err.Error())
	case err != nil:
		return nil, err
	}
	return f, nil
}
