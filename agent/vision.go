package agent

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/internal/cgroup"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/vision"
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
		path = paths.Worker
		if exe, err := os.Executable(); err == nil {
			path = paths.WorkerFor(exe)
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
	log := d.log.With("component", "vision")
	cfg := vision.Config{
		Path:   path,
		Args:   []string{"-models", d.cfg.Vision.ModelsDir, "-face-models", faceModels},
		Logger: log,
	}
	// The worker starts through this binary, confined: it reads only
	// itself, its libraries and its models (vision.Sandbox).
	if self, err := os.Executable(); err == nil {
		cfg.Launcher = self
		cfg.Sandbox = vision.Sandbox{Read: append([]string{path, d.cfg.Vision.ModelsDir, faceModels}, vision.SystemReadPaths...)}
	} else {
		log.Warn("vision worker runs unconfined: the daemon's own binary cannot be found", "err", err)
	}
	if vision.LandlockABI() == 0 {
		log.Warn("this kernel has no Landlock: the vision worker's files are not confined (seccomp and its network namespace still apply)")
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
	// boxesOnly asks for where the faces are, no descriptors: when nobody
	// may be recognised every face is a stranger anyway.
	boxesOnly bool
}

func (w workerFaces) Faces(ctx context.Context, img []byte) ([]facerec.Face, error) {
	r, err := w.c.Faces(ctx, vision.Faces{Image: img, Thorough: w.thorough, BoxesOnly: w.boxesOnly})
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

// photoPixels is where photos are decoded and re-encoded: the worker, or
// in process within a memory budget when there is none.
func (d *Daemon) photoPixels() capture.Pixels {
	if d.vision == nil {
		return &capture.InProcess{}
	}
	return workerPixels{d.vision}
}

// workerPixels decodes and re-encodes photos in the vision worker: the
// daemon keeps photos as bytes. A worker that crashes or times out on an
// image has judged it (invalid, or not kept); one that cannot start has
// not, and the image waits.
type workerPixels struct{ c *vision.Client }

func (w workerPixels) Validate(ctx context.Context, data []byte) (capture.ImageInfo, error) {
	r, err := w.c.Validate(ctx, vision.Validate{Image: data})
	if err != nil {
		return capture.ImageInfo{}, notJudged(err)
	}
	return capture.ImageInfo{Format: r.Format, Width: r.Width, Height: r.Height}, nil
}

func (w workerPixels) Clean(ctx context.Context, data []byte, hide []image.Rectangle) ([]byte, error) {
	boxes := make([]vision.Box, len(hide))
	for i, r := range hide {
		boxes[i] = vision.Box{X: r.Min.X, Y: r.Min.Y, W: r.Dx(), H: r.Dy()}
	}
	r, err := w.c.Clean(ctx, vision.Clean{Image: data, Hide: boxes})
	if err != nil {
		return nil, notJudged(err)
	}
	return r.JPEG, nil
}

// notJudged marks the worker's failures that say nothing of the image.
func notJudged(err error) error {
	if errors.Is(err, vision.ErrStart) || errors.Is(err, vision.ErrClosed) {
		return fmt.Errorf("%w: %w", capture.ErrRetryLater, err)
	}
	return err
}

// noVision stands in when the worker is missing: every frame is dropped
// unanalysed, which keeps nothing.
type noVision struct{}

func (noVision) Faces(ctx context.Context, img []byte) ([]facerec.Face, error) {
	return nil, errors.New("vision worker not available")
}
