package agent

import (
	"context"
	"errors"
	"fmt"
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
	// The worker runs in /: its folders must be absolute.
	faceModels, err := filepath.Abs(d.cfg.Vision.FaceModelsDir)
	if err != nil {
		faceModels = d.cfg.Vision.FaceModelsDir
	}
	cfg := vision.Config{
		Path:   path,
		Args:   []string{"-models", d.cfg.Vision.ModelsDir, "-face-models", faceModels},
		Logger: d.log.With("component", "vision"),
	}
	// The worker starts through this binary, confined: it reads only
	// itself, its libraries and its models (vision.Sandbox).
	if self, err := os.Executable(); err == nil {
		cfg.Launcher = self
		cfg.Sandbox = vision.Sandbox{Read: append([]string{path, d.cfg.Vision.ModelsDir, faceModels}, vision.SystemReadPaths...)}
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
	return workerFaces{c: d.vision, model: d.recognizer.Model()}
}

// photoFaces is the analyzer for a photo about to leave the device: it
// also looks for small faces, so a stranger far from the camera is blurred
// too.
func (d *Daemon) photoFaces() facerec.Analyzer {
	if d.vision == nil {
		return noVision{}
	}
	return workerFaces{c: d.vision, model: d.recognizer.Model(), thorough: true}
}

func (d *Daemon) photoScorer() capture.Scorer {
	if d.vision == nil {
		return &capture.InProcess{} // no faces, and no image over its budget
	}
	return workerScores{d.vision}
}

// workerFaces asks the worker for descriptors. Descriptors of a model
// other than the recognizer's are never handed on: the frame counts as not
// analysed (and a photo to blur is not sent).
type workerFaces struct {
	c        *vision.Client
	model    string
	thorough bool
}

func (w workerFaces) Faces(ctx context.Context, img []byte) ([]facerec.Face, error) {
	r, err := w.c.Faces(ctx, vision.Faces{Image: img, Thorough: w.thorough})
	if err != nil {
		return nil, err
	}
	if r.Model != w.model {
		return nil, fmt.Errorf("vision worker describes faces with %q, the recognizer decides on %q", r.Model, w.model)
	}
	out := make([]facerec.Face, len(r.Faces))
	for i, f := range r.Faces {
		out[i] = facerec.Face{Template: f.Template, Box: image.Rect(f.X, f.Y, f.X+f.W, f.Y+f.H), Model: r.Model}
	}
	return out, nil
}

// noVision stands in when the worker is missing: every frame is dropped
// unanalysed, which keeps nothing.
type noVision struct{}

func (noVision) Faces(ctx context.Context, img []byte) ([]facerec.Face, error) {
	return nil, errors.New("vision worker not available")
}
