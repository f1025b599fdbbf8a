package agent

import (
	"context"
	"errors"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/capture"

	"github.com/aibo-privacy/aibo-privacyd/facerec"
)

// noVision stands in until the vision worker is wired: every frame is
// dropped unanalysed, which keeps nothing.
type noVision struct{}

func (noVision) Faces(ctx context.Context, img []byte) ([]facerec.Face, error) {
	return nil, errors.New("vision worker not available")
}

func (d *Daemon) analyzer() facerec.Analyzer     { return noVision{} }
func (d *Daemon) recognizer() facerec.Recognizer { return facerec.Templates{} }

// basicScorer scores in pure Go when the vision worker cannot run.
type basicScorer struct{}

func (basicScorer) Score(ctx context.Context, img []byte, takenAt time.Time) (Scored, error) {
	b, h, err := capture.BasicFeatures(img)
	return Scored{Breakdown: b, PHash: h}, err
}
