package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeService lays out what systemd gives a service with Delegate=: its
// cgroup directory, writable, with the controllers it may hand down. (A
// real cgroupfs cannot be mounted by a test; the files behave alike for
// what Setup writes.)
func fakeService(t *testing.T, controllers string) (root, self, base string) {
	t.Helper()
	root = t.TempDir()
	rel := "/system.slice/aibo-privacyd.service"
	base = filepath.Join(root, rel)
	for _, d := range []string{base, filepath.Join(base, "daemon"), filepath.Join(base, "vision")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"cgroup.procs": "", "cgroup.subtree_control": "", "cgroup.controllers": controllers,
		"daemon/cgroup.procs": "", "vision/cgroup.procs": "", "vision/memory.max": "max",
		"vision/memory.swap.max": "max", "vision/memory.oom.group": "0", "vision/pids.max": "max",
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(base, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	self = filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(self, []byte("0::"+rel+"\n"), 0o644)
	return root, self, base
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The worker gets a memory bound of its own, not the daemon's: the daemon
// moves to its own leaf, the worker's leaf gets memory.max without swap,
// and each worker started is placed in it.
func TestWorkerGetsItsOwnMemoryBound(t *testing.T) {
	root, self, base := fakeService(t, "cpu io memory pids")
	p, err := Setup(root, self, Limits{MemoryMax: 512 << 20, PidsMax: 64})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(base, "daemon/cgroup.procs")); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("daemon leaf holds %q, want this process", got)
	}
	if got := read(t, filepath.Join(base, "cgroup.subtree_control")); got != "+memory +pids" {
		t.Errorf("subtree_control %q", got)
	}
	for f, want := range map[string]string{"memory.max": "536870912", "memory.swap.max": "0", "memory.oom.group": "1", "pids.max": "64"} {
		if got := read(t, filepath.Join(base, "vision", f)); got != want {
			t.Errorf("vision/%s = %q, want %q", f, got, want)
		}
	}
	if err := p.Place(4242); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(base, "vision/cgroup.procs")); got != "4242" {
		t.Errorf("worker placed as %q", got)
	}
}

// Outside a systemd service (make run, a shell, the tests) nothing is
// written anywhere.
func TestNothingHappensOutsideADelegatedService(t *testing.T) {
	root, self, base := fakeService(t, "memory pids")
	for name, content := range map[string]string{
		"a session scope": "0::/user.slice/user-1000.slice/session-2.scope\n",
		"cgroup v1 only":  "4:memory:/system.slice/aibo-privacyd.service\n",
	} {
		os.WriteFile(self, []byte(content), 0o644)
		if _, err := Setup(root, self, Limits{MemoryMax: 1 << 30}); !errors.Is(err, ErrNotDelegated) {
			t.Errorf("%s: %v, want ErrNotDelegated", name, err)
		}
	}
	if got := read(t, filepath.Join(base, "daemon/cgroup.procs")); got != "" {
		t.Errorf("wrote %q", got)
	}
	// A service cgroup that is not delegated is read-only for its user.
	if os.Geteuid() != 0 {
		os.WriteFile(self, []byte("0::/system.slice/aibo-privacyd.service\n"), 0o644)
		os.Chmod(filepath.Join(base, "cgroup.subtree_control"), 0o444)
		if _, err := Setup(root, self, Limits{MemoryMax: 1 << 30}); !errors.Is(err, ErrNotDelegated) {
			t.Errorf("read-only: %v", err)
		}
	}
}

func TestMemoryControllerMustBeDelegated(t *testing.T) {
	root, self, _ := fakeService(t, "cpu pids")
	if _, err := Setup(root, self, Limits{MemoryMax: 1 << 30}); err == nil || !strings.Contains(err.Error(), "memory controller") {
		t.Fatalf("err %v", err)
	}
}

// Issue 21: stopping the worker ends everything in its cgroup, a child in
// a session of its own included. With cgroup.kill (Linux 5.14) the kernel
// does it; Kill returns once cgroup.events says the leaf is empty.
func TestKillEmptiesTheWorkersCgroupWithCgroupKill(t *testing.T) {
	root, self, base := fakeService(t, "memory pids")
	p, err := Setup(root, self, Limits{MemoryMax: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "vision")
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("4242\n4243\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), nil, 0o644)
	// The kernel's part, in this fake: the leaf empties once "1" is written.
	go func() {
		for read(t, filepath.Join(dir, "cgroup.kill")) != "1" {
			time.Sleep(time.Millisecond)
		}
		os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644)
		os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 0\nfrozen 0\n"), 0o644)
	}()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
}

// An older kernel has no cgroup.kill: every process the leaf lists gets
// SIGKILL until none is left. And a leaf that does not empty is an error,
// not a hang.
func TestKillSignalsEachProcessWithoutCgroupKill(t *testing.T) {
	root, self, base := fakeService(t, "memory pids")
	p, err := Setup(root, self, Limits{MemoryMax: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "vision")
	child := exec.Command("sleep", "60")
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(child.Process.Pid)+"\n"), 0o644)
	done := make(chan error, 1)
	go func() {
		done <- child.Wait()
		os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644) // the kernel's part
	}()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the child ended with %v, want killed", err)
	}
	os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\n"), 0o644)
	if err := p.Kill(); err == nil {
		t.Fatal("a leaf that never empties was reported empty")
	}
}
