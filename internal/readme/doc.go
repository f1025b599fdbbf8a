// Package readme keeps the README honest. Every test it names as the
// enforcer of a promise must exist (readme_test.go), and every shell block
// it shows is run, as written, by a test: the line before each ```sh fence
// is a marker naming that test,
//
//	<!-- run by TestREADMESignedFlowWorksAsWritten -->
//
// and the test reads its blocks with For(t). To add a README command, put
// it in a block with a marker and call For from the test named; the test
// substitutes only what ties a command to this machine (a free port for
// 18830, binaries already built, sudo when it runs as root) and says so.
//
// It reads the README only; it never runs anything itself.
package readme

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Block is one ```sh block of the README.
type Block struct {
	Test    string // the test the marker above the fence names
	Heading string // the nearest heading above it
	Line    int    // the opening fence's line, from 1
	Text    string // the block's lines, each ending in a newline
}

var marker = regexp.MustCompile(`^<!-- run by (Test\w+) -->$`)

// Parse returns every ```sh block of a Markdown text.
func Parse(md string) []Block {
	var out []Block
	lines := strings.Split(md, "\n")
	heading := ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "#") {
			heading = strings.TrimSpace(strings.TrimLeft(l, "#"))
		}
		if l != "```sh" {
			continue
		}
		b := Block{Heading: heading, Line: i + 1}
		if i > 0 {
			if m := marker.FindStringSubmatch(lines[i-1]); m != nil {
				b.Test = m[1]
			}
		}
		var text strings.Builder
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			text.WriteString(lines[i] + "\n")
		}
		b.Text = text.String()
		out = append(out, b)
	}
	return out
}

// Path is the README.md at the top of the checkout holding the working
// directory.
func Path(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "README.md")); err == nil {
				return filepath.Join(dir, "README.md")
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no README.md beside a go.mod above the working directory")
		}
		dir = parent
	}
}

// All returns every ```sh block of the checkout's README.
func All(t testing.TB) []Block {
	t.Helper()
	raw, err := os.ReadFile(Path(t))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(string(raw))
}

// For returns the blocks whose marker names the calling test (its top
// level name), in README order; it fails the test when there is none.
func For(t testing.TB) []Block {
	t.Helper()
	name, _, _ := strings.Cut(t.Name(), "/")
	var out []Block
	for _, b := range All(t) {
		if b.Test == name {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no README block is marked <!-- run by %s -->", name)
	}
	return out
}
