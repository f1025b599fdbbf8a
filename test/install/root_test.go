//go:build installtest

package install

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
)

// root is a Debian 12 tree entered with its own mount namespace and
// pivot_root, never chroot: the kernel refuses a user namespace to a
// chrooted process, and the vision worker's sandbox needs one.
type root struct {
	t        *testing.T
	dir      string
	aptCache string
}

// enter is the shell run by unshare: it makes dir the root of a private
// mount namespace with /proc, /dev and /sys, and runs the command there
// with a clean environment (PATH, HOME, LANG and what env adds).
const enter = `set -e
r=$1; cache=$2; shift 2
mount --bind "$r" "$r"
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
mount --rbind /sys "$r/sys"
if [ -n "$cache" ]; then mount --bind "$cache" "$r/var/cache/apt/archives"; fi
cd "$r"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
exec "$@"
`

// newRoot unpacks the cached base root (debootstrap's output, as a tar).
func newRoot(t *testing.T, base, aptCache string) *root {
	t.Helper()
	dir, err := os.MkdirTemp(filepath.Dir(base), "root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("INSTALL_TEST_KEEP") != "" {
			t.Logf("the test root is kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	if out, err := exec.Command("tar", "-xpf", base, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", base, err, out)
	}
	// The README's install runs apt, which deletes what it downloaded
	// (apt-get keeps it): keep it, so that OpenCV's packages stay in the
	// cache between runs and are not fetched again each time.
	keep := filepath.Join(dir, "etc/apt/apt.conf.d/99keep-downloads")
	if err := os.WriteFile(keep, []byte("Binary::apt::APT::Keep-Downloaded-Packages \"true\";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(aptCache, 0o755)
	return &root{t: t, dir: dir, aptCache: aptCache}
}

// path is p inside the root, seen from outside.
func (r *root) path(p string) string { return filepath.Join(r.dir, p) }

// command returns a command run inside the root with env added to a
// clean environment. apt's download cache is mounted only when withCache.
func (r *root) command(env []string, withCache bool, args ...string) *exec.Cmd {
	cache := ""
	if withCache {
		cache = r.aptCache
	}
	full := append([]string{"env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}, env...)
	full = append(full, args...)
	cmd := exec.Command("unshare", append([]string{"--mount", "--", "/bin/sh", "-c", enter, "enter", r.dir, cache}, full...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs a command inside the root and returns its output; it fails
// the test when the command fails.
func (r *root) run(args ...string) string {
	r.t.Helper()
	out, err := r.command(nil, false, args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// apt runs apt-get non-interactively with the download cache mounted.
func (r *root) apt(args ...string) string {
	r.t.Helper()
	cmd := r.command([]string{"DEBIAN_FRONTEND=noninteractive"}, true, append([]string{"apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, tail(out, 40))
	}
	return string(out)
}

// ids returns the uid and gid of a user of the root.
func (r *root) ids(user string) (uid, gid int) {
	r.t.Helper()
	f, err := os.Open(r.path("/etc/passwd"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) > 3 && p[0] == user {
			uid, _ = strconv.Atoi(p[2])
			gid, _ = strconv.Atoi(p[3])
			return uid, gid
		}
	}
	r.t.Fatalf("no user %s in the root's /etc/passwd", user)
	return 0, 0
}

// files lists every path in the root (relative, sorted), leaving out
// the kernel's file systems and what the test itself puts there.
func (r *root) files() []string {
	r.t.Helper()
	var out []string
	skip := map[string]bool{"proc": true, "sys": true, "dev": true, ".oldroot": true}
	err := filepath.WalkDir(r.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.dir, p)
		if d.IsDir() && skip[rel] {
			return filepath.SkipDir
		}
		if rel != "." {
			out = append(out, "/"+rel)
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// owned lists the paths in the root owned by uid.
func (r *root) owned(uid int) []string {
	r.t.Helper()
	var out []string
	for _, p := range r.files() {
		if st, err := os.Lstat(r.path(p)); err == nil && int(st.Sys().(*syscall.Stat_t).Uid) == uid {
			out = append(out, p)
		}
	}
	return out
}

// proc is a long-running process inside the root.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan struct{}
}

func (r *root) start(name string, env []string, args ...string) *proc {
	r.t.Helper()
	p := &proc{name: name, cmd: r.command(env, false, args...), out: &testlog.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		r.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	r.t.Cleanup(func() { p.stop(r.t, 5*time.Second) })
	return p
}

// running reports whether the process is still there.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM (unshare execs the shell, which execs the command:
// the signal reaches the program itself) and waits, then SIGKILL.
func (p *proc) stop(t *testing.T, grace time.Duration) {
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		t.Errorf("%s did not stop within %v of SIGTERM", p.name, grace)
		p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… %d lines …", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
