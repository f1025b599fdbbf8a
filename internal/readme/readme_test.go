package readme

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// definitions maps every Test, Benchmark and Fuzz function of the
// checkout's test files to the source of the file defining it.
func definitions(t *testing.T) map[string]string {
	t.Helper()
	root := filepath.Dir(Path(t))
	defined := map[string]string{}
	decl := regexp.MustCompile(`(?m)^func ((Test|Benchmark|Fuzz)\w+)\(`)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
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
				defined[string(m[1])] = string(src)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return defined
}

// TestEveryTestTheREADMENamesExists: a README sentence about privacy names
// the test that fails without it; a renamed or deleted test would leave a
// promise without its enforcer.
func TestEveryTestTheREADMENamesExists(t *testing.T) {
	readme, err := os.ReadFile(Path(t))
	if err != nil {
		t.Fatal(err)
	}
	defined := definitions(t)
	named := regexp.MustCompile("`((Test|Benchmark|Fuzz)[A-Z0-9]\\w*)`")
	n := 0
	for _, m := range named.FindAllSubmatch(readme, -1) {
		n++
		if _, ok := defined[string(m[1])]; !ok {
			t.Errorf("the README names %s, which no test file defines", m[1])
		}
	}
	if n < 20 {
		t.Fatalf("only %d tests named in the README: the pattern reads nothing", n)
	}
}

// TestEveryShellBlockIsRunByATest: every command block the README shows
// names the test that runs it, and that test reads its blocks from the
// README (readme.For), so a command edited in the README is the command
// tested.
func TestEveryShellBlockIsRunByATest(t *testing.T) {
	defined := definitions(t)
	blocks := All(t)
	if len(blocks) < 5 {
		t.Fatalf("only %d shell blocks in the README: the parser reads nothing", len(blocks))
	}
	for _, b := range blocks {
		switch src, ok := defined[b.Test]; {
		case b.Test == "":
			t.Errorf("README.md:%d (%s): a shell block with no <!-- run by TestX --> marker on the line above", b.Line, b.Heading)
		case !ok:
			t.Errorf("README.md:%d (%s): the marker names %s, which no test file defines", b.Line, b.Heading, b.Test)
		case !strings.Contains(src, "readme.For(t)") && !(strings.Contains(src, "\npackage readme\n") && strings.Contains(src, " For(t)")):
			t.Errorf("README.md:%d (%s): %s's file never reads its blocks with readme.For(t)", b.Line, b.Heading, b.Test)
		}
	}
}

func TestParseReadsBlocksTheirMarkersAndHeadings(t *testing.T) {
	md := "# Top\n\n<!-- run by TestA -->\n```sh\nmake run\nmake test\n```\n\n## Next\n```sh\nls\n```\n```\nnot shell\n```\n"
	got := Parse(md)
	if len(got) != 2 {
		t.Fatalf("%d blocks: %+v", len(got), got)
	}
	if got[0].Test != "TestA" || got[0].Heading != "Top" || got[0].Text != "make run\nmake test\n" || got[0].Line != 4 {
		t.Errorf("first block %+v", got[0])
	}
	if got[1].Test != "" || got[1].Heading != "Next" || got[1].Text != "ls\n" {
		t.Errorf("second block %+v", got[1])
	}
}
