package fsx

import (
	"fmt"
	"os"
	"syscall"
)

// Private checks that an existing path is a regular file (or, with dir, a
// directory), not a symlink, owned by this process's effective uid, and
// gives no permission to group or others. Looser permission bits are
// removed (tightened reports it, for a log line); a symlink, another type
// or another owner is an error, since what someone else owns cannot be
// made private by us. A missing path is not an error.
func Private(path string, dir bool) (tightened bool, err error) {
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return false, fmt.Errorf("%s is a symlink; refusing to follow it", path)
	case dir && !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory", path)
	case !dir && !fi.Mode().IsRegular():
		return false, fmt.Errorf("%s is not a regular file", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return false, fmt.Errorf("%s is owned by uid %d, not by this process (uid %d)", path, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(path, perm&^0o077); err != nil {
			return false, fmt.Errorf("%s has mode %v and cannot be made private: %w", path, perm, err)
		}
		return true, nil
	}
	return false, nil
}
