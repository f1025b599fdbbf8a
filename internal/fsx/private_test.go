package fsx

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPrivateTightensAndRefuses (issue 12 item 9): an existing file or
// directory readable by others is made private; a symlink or the wrong
// type is refused.
func TestPrivateTightensAndRefuses(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "state.db")
	os.WriteFile(f, []byte("x"), 0o644)
	d := filepath.Join(dir, "photos")
	os.Mkdir(d, 0o755)
	os.Chmod(d, 0o755)
	for _, c := range []struct {
		path string
		dir  bool
		want os.FileMode
	}{{f, false, 0o600}, {d, true, 0o700}} {
		tightened, err := Private(c.path, c.dir)
		if err != nil || !tightened {
			t.Fatalf("%s: %v %v", c.path, tightened, err)
		}
		if fi, _ := os.Stat(c.path); fi.Mode().Perm() != c.want {
			t.Fatalf("%s: mode %v, want %v", c.path, fi.Mode().Perm(), c.want)
		}
		if tightened, err := Private(c.path, c.dir); err != nil || tightened {
			t.Fatalf("second check of %s: %v %v", c.path, tightened, err)
		}
	}
	if ok, err := Private(filepath.Join(dir, "missing"), false); ok || err != nil {
		t.Fatalf("missing path: %v %v", ok, err)
	}
	link := filepath.Join(dir, "link.db")
	os.Symlink(f, link)
	if _, err := Private(link, false); err == nil {
		t.Fatal("a symlink was accepted")
	}
	if _, err := Private(d, false); err == nil {
		t.Fatal("a directory was accepted as a file")
	}
	if _, err := Private(f, true); err == nil {
		t.Fatal("a file was accepted as a directory")
	}
}
