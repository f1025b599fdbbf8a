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
)

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
	cfg := vision.Config{
		Path:   path,
		Args:   []string{"-models", d.cfg.Vision.ModelsDir},
		Logger: d.log.With("component", "vision"),
	}
	// The worker starts through this binary, confined: it reads only
	// itself, its libraries and its models (vision.Sandbox).
	if self, err := os.Executable(); err == nil {
		cfg.Launcher = self
		cfg.Sandbox = vision.Sandbox{Read: append([]string{path, d.cfg.Vision.ModelsDir}, vision.SystemReadPaths...)}
	} else {
		d.log.Warn("vision worker runs unconfined: the daemon's own binary cannot be found", "err", err)
	}
	if vision.LandlockABI() == 0 {
		d.log.Warn("this kernel has no Landlock: the vision worker's files are not confined (seccomp and its network namespace still apply)")
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
		return &capture.InProcess{} // no faces, and no image over its budget
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
