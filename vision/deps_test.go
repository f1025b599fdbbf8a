package vision_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoOpenCVInDaemon keeps gocv (and with it 264 shared libraries and a
// C++ image stack) out of the daemon, the technician CLI, this package and
// the pure-Go nets and their generator (internal/headnet, tools/onnxgen):
// only cmd/aibo-vision and cmd/bestshot may link it.
func TestNoOpenCVInDaemon(t *testing.T) {
	const mod = "github.com/aibo-privacy/aibo-privacyd/"
	for _, pkg := range []string{"cmd/aibo-privacyd", "cmd/aiboctl", "vision", "capture/score/weights", "capture/score/smile", "internal/headnet", "tools/onnxgen"} {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "gocv.io/") {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}
