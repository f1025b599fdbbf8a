package agent_test

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/aibo-privacy/aibo-privacyd/"

// imports maps each package of the module to its direct imports.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[strings.TrimPrefix(f[0], mod)] = f[1:]
	}
	return m
}

// feature names the feature a package belongs to, or "" for the kernel,
// commands, scripts and internal helpers.
func feature(pkg string) string {
	for _, f := range []string{"capture", "facerec", "sync/outbox", "sync/link", "sync/events", "firmware"} {
		if pkg == f || strings.HasPrefix(pkg, f+"/") {
			return f
		}
	}
	return ""
}

// TestLayering keeps the arrows pointing down: the kernel (agent's
// subpackages) imports no feature, features never import each other, and
// only the daemon's main imports the composition package agent.
func TestLayering(t *testing.T) {
	for pkg, imps := range imports(t) {
		for _, imp := range imps {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			switch {
			case dep == "agent" && pkg != "cmd/aibo-privacyd":
				t.Errorf("%s imports the composition package agent; only cmd/aibo-privacyd may", pkg)
			case strings.HasPrefix(pkg, "agent/") && feature(dep) != "":
				t.Errorf("kernel package %s imports feature package %s", pkg, dep)
			case feature(pkg) != "" && feature(dep) != "" && feature(pkg) != feature(dep):
				t.Errorf("feature %s imports feature %s: they meet in package agent through interfaces", pkg, dep)
			}
		}
	}
}

// TestDaemonNeverLinksOpenCV: the daemon and the technician CLI stay pure
// Go. A C++ crash in OpenCV must never take the outbox and the keys down,
// and linking it costs 150 ms and 75 MB before main runs.
func TestDaemonNeverLinksOpenCV(t *testing.T) {
	for _, cmd := range []string{"cmd/aibo-privacyd", "cmd/aiboctl"} {
		out, err := exec.Command("go", "list", "-deps", mod+cmd).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", cmd, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "gocv.io/") {
				t.Errorf("%s links %s", cmd, dep)
			}
		}
	}
}
