package packaging

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Every Go module linked into the shipped programs is named in the
// package's copyright file with its license. In make test, not only in
// make test-deb: it needs no package, and a merge that links a new module
// is exactly when it must fail.
func TestCopyrightNamesEveryLinkedModule(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{.Module.Path}}{{end}}", "../cmd/aibo-privacyd", "../cmd/aiboctl", "../cmd/aibo-vision").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	copyright, err := os.ReadFile("debian/copyright")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range strings.Fields(string(out)) {
		if m == "github.com/aibo-privacy/aibo-privacyd" {
			continue
		}
		if !strings.Contains(string(copyright), "go-modules/"+m+"\n") {
			t.Errorf("debian/copyright does not name %s", m)
		}
	}
}
