// Package netsums owns the face nets' checksum list: which model files
// the vision worker loads and SHA256SUMS beside them (tools/onnxgen writes
// it). It checks a folder against that list: Listed (quick: the list and
// every file in it, each non-empty), Verify (every file's SHA-256) and
// Fingerprint (what stat says of each file, so a caller can tell when a
// Verify is due again). It is pure Go and never parses a model: the
// worker checks the nets this way before OpenCV reads them, and the
// daemon's health checks the same files without linking OpenCV.
package netsums

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Model files, relative to the models folder, and their checksum list.
const (
	DetectorFile    = "tiny_face_detector.onnx"
	LandmarksFile   = "face_landmark_68.onnx"
	ExpressionsFile = "face_expression.onnx"
	DescriptorFile  = "face_recognition.onnx"
	// ProposalsFile is our own net (internal/headnet): where in a Patrol
	// frame a small face may be.
	ProposalsFile = "face_proposals.onnx"
	SumsFile      = "SHA256SUMS"
)

// Files are the models a folder must hold, each listed in SumsFile.
var Files = []string{DetectorFile, LandmarksFile, ExpressionsFile, DescriptorFile, ProposalsFile}

// ErrModels wraps every problem with the model files.
var ErrModels = errors.New("face models unusable")

// Listed checks that dir/SHA256SUMS lists every model and that each is a
// non-empty regular file, and returns the listed sums. It reads no model.
func Listed(dir string) (map[string]string, error) {
	sums, err := readSums(filepath.Join(dir, SumsFile))
	if err != nil {
		return nil, err
	}
	for _, f := range Files {
		if _, ok := sums[f]; !ok {
			return nil, fmt.Errorf("%w: %s lists no %s", ErrModels, SumsFile, f)
		}
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("%w: %v (reinstall aibo-privacyd-models; in a checkout, make setup)", ErrModels, err)
		}
		if !st.Mode().IsRegular() || st.Size() == 0 {
			return nil, fmt.Errorf("%w: %s is empty or not a file", ErrModels, filepath.Join(dir, f))
		}
	}
	return sums, nil
}

// Verify checks that dir holds every model listed, each matching its
// SHA-256 in dir/SHA256SUMS (27 MB read: tens of milliseconds).
func Verify(dir string) error {
	sums, err := Listed(dir)
	if err != nil {
		return err
	}
	for _, f := range Files {
		got, err := fileSum(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrModels, err)
		}
		if got != sums[f] {
			return fmt.Errorf("%w: %s does not match its SHA-256 in %s (truncated or replaced: reinstall aibo-privacyd-models; in a checkout, make setup)", ErrModels, filepath.Join(dir, f), SumsFile)
		}
	}
	return nil
}

// Fingerprint says what stat knows of the list and every model: device,
// inode, size, modification and change time. Any write, replacement or
// removal changes it, so a Verify that passed holds while it is the same
// (a flipped bit on the medium does not change it: the worker verifies
// every file again at each start).
func Fingerprint(dir string) (string, error) {
	var b strings.Builder
	for _, f := range append([]string{SumsFile}, Files...) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, f), &st); err != nil {
			return "", fmt.Errorf("%w: %s: %v (reinstall aibo-privacyd-models; in a checkout, make setup)", ErrModels, filepath.Join(dir, f), err)
		}
		for _, n := range []int64{int64(st.Dev), int64(st.Ino), st.Size, st.Mtim.Nano(), st.Ctim.Nano()} {
			b.WriteString(strconv.FormatInt(n, 36))
			b.WriteByte(' ')
		}
	}
	return b.String(), nil
}

func readSums(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (reinstall aibo-privacyd-models; in a checkout, make setup)", ErrModels, err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 64 || name == "" {
			return nil, fmt.Errorf("%w: %s: malformed line %q", ErrModels, path, line)
		}
		sums[name] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrModels, path, err)
	}
	return sums, nil
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
