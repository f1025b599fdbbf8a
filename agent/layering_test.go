package agent_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/aibo-privacy/aibo-privacyd/"

// arches are the platforms the daemon ships for: the development machine
// and the robot's board. Build constraints could differ between them.
var arches = []string{"amd64", "arm64"}

// listed are packages the rules below name. If one is renamed or removed,
// the rules would silently check nothing about it: the test fails instead.
var listed = []string{
	"agent", "agent/config", "agent/command", "agent/diag", "agent/vision",
	"core/store", "core/keys", "core/policy", "core/audit",
	"capture", "facerec", "sync/outbox", "sync/link", "sync/events", "firmware",
	"cmd/aibo-privacyd", "cmd/aibo-vision", "cmd/aiboctl", "cmd/bestshot",
}

// imports maps each package of the module to its direct imports, for
// linux/arch with cgo on (so cgo files are seen too).
func imports(t *testing.T, arch string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list (%s): %v", arch, err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[strings.TrimPrefix(f[0], mod)] = f[1:]
	}
	return m
}

// layer names where a package sits: "cmd", "agent" (the composition and
// what only it uses), "core" (the privacy kernel), "internal" (helpers
// every layer may use), "tool" (scripts and build tools), or the feature
// it belongs to. Any other top-level folder is a feature by default; sync/
// holds three features.
func layer(pkg string) string {
	top, rest, _ := strings.Cut(pkg, "/")
	switch top {
	case "cmd", "agent", "core", "internal":
		return top
	case "scripts", "tools":
		return "tool"
	case "sync":
		sub, _, _ := strings.Cut(rest, "/")
		return "sync/" + sub
	}
	return top
}

func isFeature(l string) bool {
	return !slices.Contains([]string{"cmd", "agent", "core", "internal", "tool"}, l)
}

// TestLayering keeps the arrows pointing down, cmd -> agent -> features ->
// core -> internal: nothing outside agent/ and the commands (cmd/, and
// the tools under scripts/ and tools/) imports agent/...,
// only the daemon's main imports the composition package itself, core/
// imports no feature, internal/ imports nothing of ours above it, and
// features never import each other (they meet in agent through small
// interfaces).
func TestLayering(t *testing.T) {
	for _, arch := range arches {
		m := imports(t, arch)
		for _, p := range listed {
			if _, ok := m[p]; !ok {
				t.Errorf("%s: package %s no longer exists: update the layering rules", arch, p)
			}
		}
		for pkg, imps := range m {
			from := layer(pkg)
			for _, imp := range imps {
				if !strings.HasPrefix(imp, mod) {
					continue
				}
				dep := strings.TrimPrefix(imp, mod)
				to := layer(dep)
				switch {
				case dep == "agent" && pkg != "cmd/aibo-privacyd":
					t.Errorf("%s: %s imports the composition package agent; only cmd/aibo-privacyd may", arch, pkg)
				case to == "agent" && from != "agent" && from != "cmd" && from != "tool":
					t.Errorf("%s: %s imports %s: agent/ is the composition's own", arch, pkg, dep)
				case from == "core" && (isFeature(to) || to == "agent" || to == "cmd"):
					t.Errorf("%s: kernel package %s imports %s", arch, pkg, dep)
				case from == "internal" && to != "internal":
					t.Errorf("%s: helper package %s imports %s from a layer above it", arch, pkg, dep)
				case isFeature(from) && (to == "agent" || to == "cmd"):
					t.Errorf("%s: feature package %s imports %s", arch, pkg, dep)
				case isFeature(from) && isFeature(to) && from != to:
					t.Errorf("%s: feature %s imports feature %s: they meet in package agent through interfaces", arch, pkg, dep)
				}
			}
		}
	}
}

// TestDaemonNeverLinksOpenCV: the daemon and the technician CLI stay pure
// Go on every platform. A C++ crash in OpenCV must never take the outbox
// and the keys down, and linking it costs 150 ms and 75 MB before main
// runs.
func TestDaemonNeverLinksOpenCV(t *testing.T) {
	for _, arch := range arches {
		for _, c := range []string{"cmd/aibo-privacyd", "cmd/aiboctl"} {
			cmd := exec.Command("go", "list", "-deps", mod+c)
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=1")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps %s (%s): %v", c, arch, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				if strings.HasPrefix(dep, "gocv.io/") {
					t.Errorf("%s: %s links %s", arch, c, dep)
				}
			}
		}
	}
}
