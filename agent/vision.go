package agent

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"

	"github.com/aibo-privacy/aibo-privacyd/agent/vision"
	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/internal/cgroup"
)

// workerPids bounds the worker's tasks: OpenCV's threads and the Go
// runtime's, with room to spare.
const workerPids = 256

// newVision returns the client of the vision worker, or nil when its
// binary is missing (photos are then scored in pure Go and frames dropped
// unanalysed, which keeps nothing).
func (d *Daemon) newVision() *vision.Client {
	path := d.cfg.Vision.Worker
	if path == "" {
		if exe, err := os.Executable(); err == nil {
			path = filepath.Join(filepath.Dir(exe), "aibo-vision")
		}
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		d.log.Warn("vision worker not found: faces are not analysed, photos are scored without faces", "path", path)
		return nil
	}
	log := d.log.With("component", "vision")
	cfg := vision.Config{
		Path:   path,
		Args:   []string{"-models", d.cfg.Vision.ModelsDir},
		Logger: log,
	}
	if d.cfg.Vision.MemoryMax > 0 {
		placer, err := cgroup.Setup("/sys/fs/cgroup", "/proc/self/cgroup", cgroup.Limits{MemoryMax: d.cfg.Vision.MemoryMax, PidsMax: workerPids})
		switch {
		case err == nil:
			cfg.OnStart = placer.Place
			log.Info("vision worker gets a memory cgroup of its own", "cgroup", placer.Dir(), "memory_max", d.cfg.Vision.MemoryMax)
		case errors.Is(err, cgroup.ErrNotDelegated):
			log.Debug("vision worker shares the daemon's memory bound", "why", err.Error())
		default:
			log.Warn("vision worker shares the daemon's memory bound", "err", err)
		}
	}
	return vision.NewClient(cfg)
}

func (d *Daemon) analyzer() facerec.Analyzer {
	if d.vision == nil {
		return noVision{}
	}
	return workerFaces{d.vision}
}

func (d *Daemon) photoScorer() capture.Scorer {
	if d.vision == nil {
		return basicScores{}
	}
	return workerScores{d.vision}
}

// workerFaces asks the worker for templates.
type workerFaces struct{ c *vision.Client }

func (w workerFaces) Faces(ctx context.Context, img []byte) ([]facerec.Face, error) {
	r, err := w.c.Faces(ctx, vision.Faces{Image: img})
	if err != nil {
		return nil, err
	}
	out := make([]facerec.Face, len(r.Faces))
	for i, f := range r.Faces {
		out[i] = facerec.Face{Template: f.Template, Box: image.Rect(f.X, f.Y, f.X+f.W, f.Y+f.H)}
	}
	return out, nil
}

// noVision stands in when the worker is missing: every frame is dropped
// unanalysed, which keeps nothing.
type noVision struct{}

func (noVision) Faces(ctx context.Context, img []byte) ([]facerec.Face, error) {
	return nil, errors.New("vision worker not available")
}
