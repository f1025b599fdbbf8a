// Command onnxgen converts the tfjs weights of @vladmandic/face-api@1.7.15
// (MIT; the descriptor net is a port of dlib's ResNet, whose weights dlib's
// author released into the public domain) into the ONNX files the vision
// worker loads with OpenCV's dnn module:
//
//	face_recognition.onnx    150x150 RGB chip -> 128-D descriptor
//	face_landmark_68.onnx    112x112 RGB face -> 68 points (x, y in 0..1)
//	face_expression.onnx     112x112 RGB face -> 7 expression probabilities
//	tiny_face_detector.onnx  RGB frame (sides multiples of 32) -> 5 anchors x 5 per 32 px cell
//	face_proposals.onnx      grey frame (sides multiples of 8) -> face logit and log size per 8 px cell
//
// The last is our own net (internal/headnet, trained by
// scripts/quality/trainheads), written from the weights committed in that
// package; the others are face-api's.
//
// It dequantizes (internal/tfjs), folds the recognition net's scale layers
// into its convolutions, transposes filters from HWIO to OIHW and writes the
// graphs with protowire (onnx.go). Inputs are (x - mean)/255 per channel,
// RGB, as face-api computes them; the worker's BlobFromImage does that.
//
// make setup runs it (scripts/setup.sh) after fetching and checking the
// pinned package; it never downloads anything itself. Usage:
//
//	go run ./tools/onnxgen -in build/face-api/model -out build/models
//
// Outputs are written to a temporary name and renamed, so an interrupted
// run leaves no half-written model behind.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
	"github.com/aibo-privacy/aibo-privacyd/internal/tfjs"
)

// nets maps each output file to the tfjs model it is made from and the
// builder that makes it.
var nets = []struct {
	out, model string
	build      func(tfjs.Weights) ([]byte, error)
}{
	{"face_recognition.onnx", "face_recognition_model", recognitionNet},
	{"face_landmark_68.onnx", "face_landmark_68_model", landmarkNet},
	{"face_expression.onnx", "face_expression_model", expressionNet},
	{"tiny_face_detector.onnx", "tiny_face_detector_model", detectorNet},
}

func main() {
	in := flag.String("in", "build/face-api/model", "folder holding face-api's model/ files")
	out := flag.String("out", paths.CheckoutFaceModels, "folder the .onnx files are written to")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "onnxgen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var sums strings.Builder
	for _, n := range nets {
		w, err := tfjs.Load(in, n.model)
		if err != nil {
			return fmt.Errorf("%s: %w", n.out, err)
		}
		b, err := n.build(w)
		if err != nil {
			return fmt.Errorf("%s: %w", n.out, err)
		}
		if err := writeAtomic(filepath.Join(out, n.out), b); err != nil {
			return err
		}
		fmt.Printf("onnxgen: wrote %s (%d bytes)\n", filepath.Join(out, n.out), len(b))
		fmt.Fprintf(&sums, "%x  %s\n", sha256.Sum256(b), n.out)
	}
	b, err := proposalNet()
	if err != nil {
		return fmt.Errorf("%s: %w", proposalsFile, err)
	}
	if err := writeAtomic(filepath.Join(out, proposalsFile), b); err != nil {
		return err
	}
	fmt.Printf("onnxgen: wrote %s (%d bytes)\n", filepath.Join(out, proposalsFile), len(b))
	fmt.Fprintf(&sums, "%x  %s\n", sha256.Sum256(b), proposalsFile)
	// Last: the worker checks every model against this list before OpenCV
	// parses it, so a run cut short leaves models it refuses.
	return writeAtomic(filepath.Join(out, "SHA256SUMS"), []byte(sums.String()))
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}
