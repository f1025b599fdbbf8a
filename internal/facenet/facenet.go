// Package facenet runs the converted face-api nets (tools/onnxgen) with
// OpenCV's dnn module: the tiny face detector, the 68-point landmark net,
// the expression net and the 128-D face descriptor, plus the landmark-based
// alignment (dlib's get_face_chip_details) that turns a face into the
// 150x150 chip the descriptor expects.
//
// It links OpenCV (gocv), so only the vision worker (cmd/aibo-vision) and
// the offline tools (cmd/bestshot, scripts) may import it, never the
// daemon. It owns pixels in and numbers out: it reads no store, no keys and
// no network, its only files are the .onnx models, and it never returns a
// crop to its callers except the chip, which the worker turns into a
// descriptor and drops.
//
// The models are verified against the SHA256SUMS file onnxgen writes
// beside them before OpenCV parses them: OpenCV aborts the process on a
// malformed model, so a truncated or mixed-up file must be caught here as
// an error.
package facenet

import (
	"fmt"
	"path/filepath"
	"sync"

	"gocv.io/x/gocv"

	"github.com/aibo-privacy/aibo-privacyd/internal/netsums"
	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
)

// DefaultDir is where the packaged face nets are installed.
const DefaultDir = paths.FaceModelsDir

// Model files, relative to the models folder (internal/netsums owns the
// list and its checksums).
const (
	DetectorFile    = netsums.DetectorFile
	LandmarksFile   = netsums.LandmarksFile
	ExpressionsFile = netsums.ExpressionsFile
	DescriptorFile  = netsums.DescriptorFile
	ProposalsFile   = netsums.ProposalsFile
	SumsFile        = netsums.SumsFile
)

// DescriptorModel names what makes a descriptor: the net (face-api
// 1.7.15's port of dlib's ResNet) and the chip it is given (landmark
// similarity transform to dlib's mean face, 150x150, padding 0.25). A
// descriptor is comparable only with descriptors of the same DescriptorModel;
// change it whenever either part changes. facerec/descriptor.Model must be
// equal (a test in cmd/aibo-vision checks).
const DescriptorModel = "face-api-1.7.15/dlib-resnet/chip150-pad0.25"

// ErrModels wraps every problem with the model files.
var ErrModels = netsums.ErrModels

// Nets holds the nets the worker runs: detector, landmarks, descriptor and
// the proposal net. Calls are serialised: one Nets serves one request at a
// time, as the worker does.
type Nets struct {
	mu                   sync.Mutex
	det, lm, descr, prop gocv.Net
	work                 Work
}

// Work counts what the nets have run: a machine-independent measure of a
// search's cost (the detector's cost grows with its input pixels), steadier
// than a timer on a shared machine.
type Work struct {
	DetectorPixels int64 // input pixels through the detector
	ProposalPixels int64 // input pixels through the proposal net
	Landmarks      int64 // landmark passes
	Descriptors    int64 // descriptor passes
	// CloserLooks are the detector's runs on a crop around one place of a
	// frame: a proposal confirmed, a weak detection or a followed face
	// looked at again (their pixels are among DetectorPixels).
	CloserLooks int64
}

// Work returns the counts so far.
func (n *Nets) Work() Work {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.work
}

// ExpressionNet is face-api's expression net. The worker does not load it:
// on GENKI-4K's test split it tells smiles from neutral faces less well
// than capture/score/smile (scripts/quality reports both), so only the
// golden tests and that report use it.
type ExpressionNet struct {
	mu  sync.Mutex
	net gocv.Net
}

// CheckFiles is the quick part of Check, for a process that must answer
// fast: dir/SHA256SUMS lists every model and each is a non-empty file.
func CheckFiles(dir string) error {
	_, err := netsums.Listed(dir)
	return err
}

// Check verifies that dir holds every model listed, each matching its
// SHA-256 in dir/SHA256SUMS. It reads the files but does not parse them.
func Check(dir string) error { return netsums.Verify(dir) }

// Load checks the models (Check) and loads them.
func Load(dir string) (*Nets, error) {
	if err := Check(dir); err != nil {
		return nil, err
	}
	n := &Nets{}
	for _, m := range []struct {
		net  *gocv.Net
		file string
	}{{&n.det, DetectorFile}, {&n.lm, LandmarksFile}, {&n.descr, DescriptorFile}, {&n.prop, ProposalsFile}} {
		if err := load(m.net, dir, m.file); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// LoadExpressions checks the models (Check) and loads the expression net.
func LoadExpressions(dir string) (*ExpressionNet, error) {
	if err := Check(dir); err != nil {
		return nil, err
	}
	e := &ExpressionNet{}
	if err := load(&e.net, dir, ExpressionsFile); err != nil {
		return nil, err
	}
	return e, nil
}

func load(net *gocv.Net, dir, file string) error {
	*net = gocv.ReadNetFromONNX(filepath.Join(dir, file))
	if net.Empty() {
		net.Close()
		*net = gocv.Net{}
		return fmt.Errorf("%w: OpenCV could not load %s", ErrModels, file)
	}
	_ = net.SetPreferableBackend(gocv.NetBackendOpenCV)
	_ = net.SetPreferableTarget(gocv.NetTargetCPU)
	return nil
}

// Close frees the nets.
func (n *Nets) Close() error {
	for _, net := range []*gocv.Net{&n.det, &n.lm, &n.descr, &n.prop} {
		net.Close() // deleting a net never loaded is a no-op
	}
	return nil
}

// Close frees the net.
func (e *ExpressionNet) Close() error { return e.net.Close() }
