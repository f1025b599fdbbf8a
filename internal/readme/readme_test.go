package readme

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryTestTheREADMENamesExists: a README sentence about privacy names
// the test that fails without it; a renamed or deleted test would leave a
// promise without its enforcer.
func TestEveryTestTheREADMENamesExists(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func ((Test|Benchmark|Fuzz)\w+)\(`)
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "var" || d.Name() == "build" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, "_test.go") {
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range decl.FindAllSubmatch(src, -1) {
				defined[string(m[1])] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`((Test|Benchmark|Fuzz)[A-Z0-9]\\w*)`")
	n := 0
	for _, m := range named.FindAllSubmatch(readme, -1) {
		n++
		if !defined[string(m[1])] {
			t.Errorf("the README names %s, which no test file defines", m[1])
		}
	}
	if n < 20 {
		t.Fatalf("only %d tests named in the README: the pattern reads nothing", n)
	}
}
