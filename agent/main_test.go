package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/vision"
)

// TestMain lets this test binary be the vision worker's launcher, as the
// daemon's own binary is: a daemon built by these tests starts its worker
// through os.Executable(), confined, exactly as in production.
func TestMain(m *testing.M) {
	vision.RunLauncher()
	code := m.Run()
	if workerDir != "" {
		os.RemoveAll(workerDir)
	}
	os.Exit(code)
}

var (
	workerOnce sync.Once
	workerDir  string
	workerErr  error
)

// visionConfig is the vision: block of a daemon whose photos are judged by
// the real worker (cmd/aibo-vision, built once per test binary) with the
// face nets make setup converted. Every pixel is the worker's: without it,
// photos wait in the spool.
func visionConfig(t *testing.T) string {
	t.Helper()
	workerOnce.Do(func() {
		if workerDir, workerErr = os.MkdirTemp("", "agent-worker"); workerErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(workerDir, "aibo-vision"), "../cmd/aibo-vision").CombinedOutput()
		if err != nil {
			workerErr = fmt.Errorf("go build ../cmd/aibo-vision: %v\n%s", err, out)
		}
	})
	if workerErr != nil {
		t.Fatal(workerErr)
	}
	nets, err := filepath.Abs("../build/models")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(nets, "SHA256SUMS")); err != nil {
		t.Fatalf("%v: run make setup (it converts the face nets into build/models)", err)
	}
	return fmt.Sprintf("vision:\n  worker: %s\n  face_models_dir: %s\n", filepath.Join(workerDir, "aibo-vision"), nets)
}
