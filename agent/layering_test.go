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
	"agent", "agent/command", "agent/diag", "config", "vision",
	"internal/envelope", "core/store", "core/keys", "core/policy", "core/audit",
	"capture", "facerec", "sync/outbox", "sync/link", "sync/events", "firmware",
	"cmd/aibo-privacyd", "cmd/aibo-vision", "cmd/aiboctl", "cmd/bestshot",
}

// imports maps each package of the module to its direct imports, for
// linux/arch with cgo on (so cgo files are seen too); with tests, the
// imports of its tests as well.
func imports(t *testing.T, arch string, tests bool) map[string][]string {
	t.Helper()
	format := `{{.ImportPath}} {{join .Imports " "}}`
	if tests {
		format += ` {{join .TestImports " "}} {{join .XTestImports " "}}`
	}
	cmd := exec.Command("go", "list", "-f", format, mod+"...")
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
// every layer may use), "tool" (scripts and build tools), "edge" (the
// configuration and the vision worker's boundary: the daemon's
// composition, the binaries and the tools use them, no feature does), or
// the feature it belongs to. Any other top-level folder is a feature by
// default; sync/ holds three features.
func layer(pkg string) string {
	top, rest, _ := strings.Cut(pkg, "/")
	switch top {
	case "cmd", "agent", "core", "internal":
		return top
	case "config", "vision":
		return "edge"
	case "scripts", "tools":
		return "tool"
	case "sync":
		sub, _, _ := strings.Cut(rest, "/")
		return "sync/" + sub
	}
	return top
}

func isFeature(l string) bool {
	return !slices.Contains([]string{"cmd", "agent", "core", "internal", "tool", "edge"}, l)
}

// TestLayering keeps the arrows pointing down, cmd -> agent -> features ->
// core -> internal: only the daemon's main imports agent/... (the worker,
// aiboctl, bestshot and the tools reach what they share through config/,
// vision/ and internal/), core/ imports no feature, internal/ imports
// nothing of ours above it, config/ and vision/ import only internal/ and
// no feature imports them, and features never import each other (they
// meet in agent through small interfaces).
func TestLayering(t *testing.T) {
	for _, arch := range arches {
		m := imports(t, arch, false)
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
				case to == "agent" && from != "agent" && pkg != "cmd/aibo-privacyd":
					t.Errorf("%s: %s imports %s: agent/ is the daemon's composition, only cmd/aibo-privacyd may import it", arch, pkg, dep)
				case from == "edge" && to != "internal" && to != "edge":
					t.Errorf("%s: %s imports %s: config/ and vision/ stand on internal/ only", arch, pkg, dep)
				case to == "edge" && isFeature(from):
					t.Errorf("%s: feature package %s imports %s: it gets what it needs from the composition", arch, pkg, dep)
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

// TestOnlyTheDaemonReachesIntoAgentEvenInTests: the tests of the worker,
// aiboctl, bestshot and the tools do not reach into the composition
// either; what they check against the daemon's own code (the diagnostic
// server, the command verifier) is checked from agent's side, or through
// the packages they share (config/, vision/, internal/envelope).
func TestOnlyTheDaemonReachesIntoAgentEvenInTests(t *testing.T) {
	for _, arch := range arches {
		for pkg, imps := range imports(t, arch, true) {
			if layer(pkg) == "agent" || pkg == "cmd/aibo-privacyd" {
				continue
			}
			for _, imp := range imps {
				if dep := strings.TrimPrefix(imp, mod); dep != imp && layer(dep) == "agent" {
					t.Errorf("%s: the tests of %s import %s", arch, pkg, dep)
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
