// Command aibo-vision is the vision worker: the only process of the agent
// that links OpenCV (gocv). The daemon starts it on demand through
// vision.Client, sends requests on its stdin and reads the answers on
// its stdout (frames of vision's protocol); it logs JSON lines to
// stderr and exits when stdin ends.
//
// It decodes the untrusted image bytes itself, after checking the header
// (JPEG or PNG, at most 40 megapixels) with Go's decoders, so a malformed
// file that crashes libjpeg, libpng or OpenCV kills only this process: the
// daemon counts the photo invalid and starts a new worker.
//
// It never opens a network connection, the store or the keys, and takes no
// configuration but its flags:
//
//	aibo-vision [-models /usr/share/opencv4] [-face-models DIR] [-threads 1] [-max-pixels 40000000]
//	aibo-vision -version
//
// -face-models is the folder of the converted face nets (tools/onnxgen;
// make setup writes them to build/models). The worker refuses to start
// when one is missing, and exits before its first answer when one does not
// match its checksum.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aibo-privacy/aibo-privacyd/capture/clean"
	"github.com/aibo-privacy/aibo-privacyd/capture/score"
	"github.com/aibo-privacy/aibo-privacyd/internal/facenet"
	"github.com/aibo-privacy/aibo-privacyd/internal/logx"
	"github.com/aibo-privacy/aibo-privacyd/internal/version"
	"github.com/aibo-privacy/aibo-privacyd/vision"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	log := logx.New(os.Stderr, slog.LevelInfo).With("proc", "aibo-vision", "pid", os.Getpid())
	fs := flag.NewFlagSet("aibo-vision", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	models := fs.String("models", score.DefaultModelDir, "folder holding OpenCV's haarcascades/")
	faceModels := fs.String("face-models", facenet.DefaultDir, "folder holding the converted face nets (tools/onnxgen)")
	threads := fs.Int("threads", 1, "OpenCV threads per call")
	maxPixels := fs.Int("max-pixels", score.MaxPixels, "largest image decoded")
	showVersion := fs.Bool("version", false, "print the build's version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println(version.String("aibo-vision"))
		return 0
	}
	// The protocol owns stdout. Move it to a private descriptor and point
	// fd 1 at stderr, so a stray printf inside a C library can never
	// corrupt a frame.
	out, err := privateStdout()
	if err != nil {
		log.Error("stdout", "err", err)
		return 1
	}
	// Parsing the cascades takes tens of milliseconds: do it while the
	// daemon's handshake is answered. A missing file is caught before.
	if err := score.CheckModels(*models); err != nil {
		log.Error("models", "err", err)
		return 1
	}
	// The quick check here; the SHA-256 of every model (27 MB: tens of
	// milliseconds) is checked while loading, before OpenCV parses them.
	if err := facenet.CheckFiles(*faceModels); err != nil {
		log.Error("face models", "err", err)
		return 1
	}
	start := time.Now()
	score.SetThreads(*threads)
	var s *score.Scorer
	ff := &faceFinder{}
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		var err error
		ff.nets, err = facenet.Load(*faceModels)
		if err == nil {
			// One set of nets serves scoring and the face pipeline.
			s, err = score.New(score.Options{ModelDir: *models, Nets: ff.nets, MaxPixels: *maxPixels})
			ff.scorer = s
			ff.patrol = facenet.NewTracker(ff.nets)
		}
		if err != nil {
			// A face model that fails its checksum says "face models
			// unusable" here. Nothing can be scored: let the daemon see
			// a crash.
			log.Error("load models", "err", err)
			os.Exit(1)
		}
		log.Info("models loaded", "took", time.Since(start), "threads", score.Threads())
	}()
	defer func() {
		<-loaded
		s.Close()
		ff.nets.Close()
	}()

	// SIGTERM and SIGINT keep their default action: the worker holds no
	// state worth a clean shutdown.
	ctx := context.Background()
	h := vision.Handlers{Score: func(ctx context.Context, req vision.Score) (vision.ScoreResult, error) {
		<-loaded
		t0 := time.Now()
		r, err := s.Score(req.Image, req.TakenAt)
		if err != nil {
			log.Warn("score", "bytes", len(req.Image), "err", err)
			return vision.ScoreResult{}, coded(err)
		}
		log.Debug("scored", "bytes", len(req.Image), "took", time.Since(t0), "faces", len(r.Faces))
		return toWire(r), nil
	}, Validate: func(ctx context.Context, req vision.Validate) (vision.ValidateResult, error) {
		// Decoded here, never in the daemon: a hostile file costs this
		// process's memory, bounded by its own cgroup on the robot.
		img, err := score.Decode(req.Image, *maxPixels)
		if err != nil {
			log.Info("validate: not an image the daemon may keep", "bytes", len(req.Image), "err", err)
			return vision.ValidateResult{}, coded(err)
		}
		defer img.Close()
		format := "jpeg"
		if len(req.Image) > 4 && string(req.Image[1:4]) == "PNG" {
			format = "png"
		}
		return vision.ValidateResult{Format: format, Width: img.Cols(), Height: img.Rows()}, nil
	}, Clean: func(ctx context.Context, req vision.Clean) (vision.CleanResult, error) {
		hide := make([]image.Rectangle, len(req.Hide))
		for i, b := range req.Hide {
			hide[i] = image.Rect(b.X, b.Y, b.X+b.W, b.Y+b.H)
		}
		out, err := clean.ForUpload(req.Image, hide, req.Width, req.Height, req.MaxBytes)
		if err != nil {
			log.Warn("clean", "bytes", len(req.Image), "err", err)
			return vision.CleanResult{}, coded(err)
		}
		return vision.CleanResult{JPEG: out, Width: req.Width, Height: req.Height}, nil
	}, Faces: func(ctx context.Context, req vision.Faces) (vision.FacesResult, error) {
		<-loaded
		t0 := time.Now()
		r, err := ff.faces(req.Image, *maxPixels, reachOf(req), req.BoxesOnly)
		if err != nil {
			log.Warn("faces", "bytes", len(req.Image), "err", err)
			return vision.FacesResult{}, coded(err)
		}
		// Never the descriptors: only how many and how long.
		log.Debug("faces", "bytes", len(req.Image), "took", time.Since(t0), "faces", len(r.Faces))
		return r, nil
	}}
	if err := vision.Serve(ctx, os.Stdin, out, h); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	log.Info("exit")
	return 0
}

// coded gives a handler's error the code the daemon keeps of it (the
// daemon never reads the text).
func coded(err error) error {
	code := vision.CodeInternal
	switch {
	case errors.Is(err, score.ErrFormat), errors.Is(err, image.ErrFormat):
		code = vision.CodeNotAnImage
	case errors.Is(err, score.ErrTooLarge):
		code = vision.CodeTooLarge
	case errors.Is(err, score.ErrDecode):
		code = vision.CodeDecodeFailed
	case errors.Is(err, facenet.ErrModels):
		code = vision.CodeModelsUnusable
	}
	return vision.WithCode(code, err)
}

// toWire converts a score.Result into the protocol's answer.
func toWire(r score.Result) vision.ScoreResult {
	w := vision.ScoreResult{Score: r.Score, Breakdown: r.Breakdown, PHash: r.PHash, Width: r.Width, Height: r.Height}
	for _, f := range r.Faces {
		w.Faces = append(w.Faces, vision.FaceBox{X: f.Box.Min.X, Y: f.Box.Min.Y, W: f.Box.Dx(), H: f.Box.Dy(), Smile: f.Smile, EyesOpen: f.EyesOpen})
	}
	return w
}

// privateStdout returns the original stdout on a new descriptor and makes
// fd 1 a copy of stderr.
func privateStdout() (io.Writer, error) {
	fd, err := unix.Dup(1)
	if err != nil {
		return nil, fmt.Errorf("dup stdout: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.Dup2(2, 1); err != nil {
		return nil, fmt.Errorf("redirect stdout: %w", err)
	}
	return os.NewFile(uintptr(fd), "protocol-out"), nil
}
