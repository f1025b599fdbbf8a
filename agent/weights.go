package agent

import (
	"context"
	"encoding/json"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
	"github.com/aibo-privacy/aibo-privacyd/capture/score/weights"
	"github.com/aibo-privacy/aibo-privacyd/core/audit"
	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

var keyWeights = []byte("weights")

// scorer scores breakdowns with the weights learned so far.
type scorer struct{ w weights.Weights }

func (s scorer) score(b map[string]float64) float64 { return s.w.Score(b) }

// weights returns the owner's learned weights, or the defaults.
func (d *Daemon) weights() scorer {
	w := weights.Defaults()
	_ = d.view(func(tx *bolt.Tx) error {
		w = readWeights(tx)
		return nil
	})
	return scorer{w}
}

func readWeights(tx *bolt.Tx) weights.Weights {
	if raw := tx.Bucket(store.BucketScoring).Get(keyWeights); raw != nil {
		if w, err := weights.Parse(raw); err == nil {
			return w
		}
	}
	return weights.Defaults()
}

// photoFeedback teaches the weights from what the owner did with an
// uploaded photo (favorite, shared, deleted), using the breakdown kept when
// it was selected. Only features are kept for this, never pixels.
func (d *Daemon) photoFeedback(ctx context.Context, e *command.Exec) (any, error) {
	var p struct {
		ArtifactID string `json:"artifact_id"`
		Signal     string `json:"signal"`
	}
	if err := command.Decode(e.Cmd.Payload, &p); err != nil {
		return nil, err
	}
	switch p.Signal {
	case weights.SignalFavorite, weights.SignalShared, weights.SignalDeleted:
	default:
		return nil, command.Errorf(command.CodeBadRequest, "signal must be favorite, shared or deleted")
	}
	b := e.Tx.Bucket(store.BucketScoring)
	raw := b.Get(scoreKey(p.ArtifactID))
	if raw == nil {
		return nil, command.Errorf(command.CodeNotFound, "no selected photo with that artifact_id")
	}
	var rec scoreRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	before := readWeights(e.Tx)
	after := weights.Learn(before, rec.Breakdown, p.Signal)
	enc, err := json.Marshal(after)
	if err != nil {
		return nil, err
	}
	if err := b.Put(keyWeights, enc); err != nil {
		return nil, err
	}
	if _, err := audit.Append(e.Tx, e.Now, "photo_feedback", "", map[string]string{"artifact_id": p.ArtifactID, "signal": p.Signal}); err != nil {
		return nil, err
	}
	return map[string]any{"updates": after.Updates, "score_before": round3(before.Score(rec.Breakdown)), "score_after": round3(after.Score(rec.Breakdown))}, nil
}
