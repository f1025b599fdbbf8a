package agent

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
	"github.com/aibo-privacy/aibo-privacyd/facerec"
	"github.com/aibo-privacy/aibo-privacyd/internal/cgroup"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// workerPids bounds the worker's tasks: OpenCV's threads and the Go
// runtime's, with room to spare.
const workerPids = 256

// newVision returns the client of the vision worker and what watches its
// health. A worker that cannot start (its binary or its face nets missing
// or damaged) is no reason not to start the daemon: health says why, and
// photos wait in the spool until images can be judged again.
func (d *Daemon) newVision() (*vision.Client, *visionHealth) {
	path := d.cfg.Vision.Worker
	if path == "" {
		path = paths.Worker
		if exe, err := os.Executable(); err == nil {
			path = paths.WorkerFor(exe)
		}
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
	// itself, its libraries and its models (vision.Sandbox). Where the
	// launcher cannot confine it (no Landlock) no worker runs at all:
	// frames go unanalysed, photos wait, and health says why
	// (vision.Client.Confinement). The daemon's own binary is always
	// there to launch with: /proc/self/exe is it, even after an upgrade
	// replaced the file.
	cfg.Launcher = "/proc/self/exe"
	if self, err := os.Executable(); err == nil {
		cfg.Launcher = self
	}
	cfg.Sandbox = vision.Sandbox{Read: append([]string{path, d.cfg.Vision.ModelsDir, faceModels}, vision.SystemReadPaths...)}
	if d.cfg.Vision.MemoryMax > 0 {
		placer, err := cgroup.Setup("/sys/fs/cgroup", "/proc/self/cgroup", cgroup.Limits{MemoryMax: d.cfg.Vision.MemoryMax, PidsMax: workerPids})
		switch {
		case err == nil:
			cfg.Cgroup = placer
			log.Info("vision worker gets a memory cgroup of its own", "cgroup", placer.Dir(), "memory_max", d.cfg.Vision.MemoryMax)
		case errors.Is(err, cgroup.ErrNotDelegated):
			log.Debug("vision worker shares the daemon's memory bound", "why", err.Error())
		default:
			log.Warn("vision worker shares the daemon's memory bound", "err", err)
		}
	}
	c := vision.NewClient(cfg)
	h := newVisionHealth(c, path, faceModels, d.recognizer.Model(), log, func() {
		if d.intake != nil {
			d.intake.Resume() // photos that waited are judged now
		}
	})
	h.busy = func() bool { return d.intake != nil && d.intake.Busy() }
	for _, c := range cascades {
		h.cascades = append(h.cascades, filepath.Join(d.cfg.Vision.ModelsDir, c))
	}
	return c, h
}

func (d *Daemon) analyzer() facerec.Analyzer {
	return workerFaces{c: d.vision, h: d.vh, model: d.recognizer.Model()}
}

// enrollFaces is the analyzer for the frames of an open enrollment
// window: it looks further than Patrol's, so a person enrols from where
// the robot stands.
func (d *Daemon) enrollFaces() facerec.Analyzer {
	return workerFaces{c: d.vision, h: d.vh, model: d.recognizer.Model(), enrollment: true}
}

// photoFaces is the analyzer for a photo about to leave the device: it
// also looks for small faces, so a stranger far from the camera is blurred
// too.
func (d *Daemon) photoFaces() facerec.Analyzer {
	return workerFaces{c: d.vision, h: d.vh, model: d.recognizer.Model(), thorough: true}
}

func (d *Daemon) photoScorer() capture.Scorer {
	return workerScores{d.vision, d.vh}
}

// workerFaces asks the worker for descriptors. Descriptors of a model
// other than the recognizer's are never handed on: the frame counts as not
// analysed (and a photo to blur is not sent).
type workerFaces struct {
	c          *vision.Client
	h          *visionHealth
	model      string
	thorough   bool
	enrollment bool
	// boxesOnly asks for where the faces are, no descriptors: when nobody
	// may be recognised every face is a stranger anyway.
	boxesOnly bool
}

func (w workerFaces) Faces(ctx context.Context, img []byte) ([]facerec.Face, error) {
	var r vision.FacesResult
	err := w.h.call(func() (err error) {
		r, err = w.c.Faces(ctx, vision.Faces{Image: img, Thorough: w.thorough, Enrollment: w.enrollment, BoxesOnly: w.boxesOnly})
		return err
	})
	if err != nil {
		return nil, err
	}
	if r.Model != w.model {
		// Not quoted: the model's name is the worker's text.
		return nil, fmt.Errorf("vision worker describes faces with another model than the recognizer's %q", w.model)
	}
	out := make([]facerec.Face, len(r.Faces))
	for i, f := range r.Faces {
		out[i] = facerec.Face{Template: f.Template, Box: image.Rect(f.X, f.Y, f.X+f.W, f.Y+f.H), Model: r.Model}
	}
	return out, nil
}

// photoPixels is where photos are decoded and re-encoded: the worker.
func (d *Daemon) photoPixels() capture.Pixels {
	return workerPixels{d.vision, d.vh}
}

// workerPixels decodes and re-encodes photos in the vision worker: the
// daemon keeps photos as bytes. A worker that crashes or times out on an
// image has judged it (invalid, or not kept); one that cannot start has
// not, and the image waits.
type workerPixels struct {
	c *vision.Client
	h *visionHealth
}

func (w workerPixels) Validate(ctx context.Context, data []byte) (capture.ImageInfo, error) {
	var r vision.ValidateResult
	err := w.h.call(func() (err error) { r, err = w.c.Validate(ctx, vision.Validate{Image: data}); return err })
	if err != nil {
		return capture.ImageInfo{}, err
	}
	return validatedInfo(r)
}

// validatedInfo keeps of a worker's validation only what the photo record
// may hold: a format from the known two and dimensions within the
// spool's bound, so a taken-over worker cannot write words of its own into
// the store through them.
func validatedInfo(r vision.ValidateResult) (capture.ImageInfo, error) {
	if r.Format != "jpeg" && r.Format != "png" {
		return capture.ImageInfo{}, errors.New("the worker named a format other than jpeg or png")
	}
	if r.Width <= 0 || r.Height <= 0 || int64(r.Width)*int64(r.Height) > capture.MaxPixels {
		return capture.ImageInfo{}, errors.New("the worker answered dimensions out of bounds")
	}
	return capture.ImageInfo{Format: r.Format, Width: r.Width, Height: r.Height}, nil
}

// Clean streams the worker's answer to out: the client checks its length
// before reading it and its format and size after (vision.Client.Clean).
func (w workerPixels) Clean(ctx context.Context, data []byte, hide []image.Rectangle, size image.Point, out io.Writer) error {
	boxes := make([]vision.Box, len(hide))
	for i, r := range hide {
		boxes[i] = vision.Box{X: r.Min.X, Y: r.Min.Y, W: r.Dx(), H: r.Dy()}
	}
	return w.h.call(func() error {
		_, err := w.c.Clean(ctx, vision.Clean{Image: data, Hide: boxes, Width: size.X, Height: size.Y, MaxBytes: clean.MaxBytes(size.X, size.Y)}, out)
		return err
	})
}

// photoAlone gives each photo about to leave a worker of its own
// (vision.Client.Alone).
func (d *Daemon) photoAlone() func(ctx context.Context, fn func(context.Context) error) error {
	return d.vision.Alone
}

// probeVision runs the worker's launcher alone once at start, so the
// confinement (or why there can be none) is known before the first frame
// (status, metrics and the health check read vision.Client.Confinement).
func (d *Daemon) probeVision(ctx context.Context) {
	conf, err := d.vision.Probe(ctx)
	switch {
	case err != nil:
		d.log.Error("vision worker's launcher did not run", "err", err)
	case conf.Refused != "":
		d.log.Error("vision worker cannot be confined: no worker runs, faces and photos are not analysed", "why", conf.Refused)
	default:
		d.log.Info("vision worker confinement", "landlock_abi", conf.Landlock, "seccomp", conf.Seccomp, "namespaces", conf.Namespaces, "uid", conf.UID, "cgroup", conf.Cgroup)
	}
}
