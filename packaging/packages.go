// Package packaging holds what ships to the robot and its checks: the
// systemd unit (unit_test.go, in make test), the installed paths
// (paths_test.go), the Debian packages (deb_test.go, build tag debtest, in
// make test-deb) and Newest, which finds a package make deb built (also
// for make install-test, test/install).
package packaging

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Newest returns the most recently built package name_*_arch.deb in dir.
func Newest(dir, name, arch string) (string, error) {
	files, _ := filepath.Glob(filepath.Join(dir, name+"_*_"+arch+".deb"))
	if len(files) == 0 {
		return "", fmt.Errorf("no %s package for %s in %s: run make deb", name, arch, dir)
	}
	mtime := func(f string) int64 {
		st, err := os.Stat(f)
		if err != nil {
			return 0
		}
		return st.ModTime().UnixNano()
	}
	sort.Slice(files, func(i, j int) bool { return mtime(files[i]) > mtime(files[j]) })
	return files[0], nil
}
