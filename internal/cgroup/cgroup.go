// Package cgroup gives the vision worker a memory bound of its own inside
// the cgroup systemd delegates to the service (Delegate= in the unit): the
// daemon moves itself into a leaf "daemon", turns the memory and pids
// controllers on for the service's children and makes a leaf "vision"
// with memory.max, where each worker is placed as it starts. An image that
// makes the worker balloon is then killed by the kernel in the worker's
// cgroup, never the daemon with its outbox and keys.
//
// Stopping a worker kills everything left in that leaf (Kill:
// cgroup.kill), so no child of the worker outlives it.
//
// It only ever writes below the process's own cgroup, and only when that
// cgroup is a systemd service's and writable (delegated); anywhere else
// (make run, tests, a shell) it does nothing. It owns no other state.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotDelegated: this process is not in a delegated cgroup v2 of a
// systemd service, so the worker shares the service's bound.
var ErrNotDelegated = errors.New("cgroup: not a delegated systemd service cgroup (cgroup v2, Delegate= in the unit)")

// Limits of the worker's cgroup.
type Limits struct {
	MemoryMax int64 // bytes, > 0
	PidsMax   int   // 0: unlimited
}

// Placer puts worker processes into their cgroup.
type Placer struct{ dir string }

// Dir is the worker's cgroup directory.
func (p *Placer) Dir() string { return p.dir }

// Setup prepares the worker's cgroup under the process's own, found in
// selfCgroup (/proc/self/cgroup) and mounted at root (/sys/fs/cgroup).
func Setup(root, selfCgroup string, l Limits) (*Placer, error) {
	if l.MemoryMax <= 0 {
		return nil, errors.New("cgroup: no memory limit given")
	}
	rel, err := ownPath(selfCgroup)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(rel, ".service") {
		return nil, ErrNotDelegated
	}
	base := filepath.Join(root, rel)
	for _, f := range []string{"cgroup.procs", "cgroup.subtree_control"} {
		if unix.Access(filepath.Join(base, f), unix.W_OK) != nil {
			return nil, ErrNotDelegated
		}
	}
	avail, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	have := strings.Fields(string(avail))
	if !contains(have, "memory") {
		return nil, fmt.Errorf("cgroup: the memory controller is not delegated (have %q)", strings.TrimSpace(string(avail)))
	}
	// cgroup v2 keeps processes in leaves only: the daemon leaves the
	// service's cgroup for its own leaf before the controllers go on.
	if err := mkdir(filepath.Join(base, "daemon")); err != nil {
		return nil, err
	}
	if err := write(filepath.Join(base, "daemon", "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
		return nil, fmt.Errorf("cgroup: move the daemon into its leaf: %w", err)
	}
	enable := "+memory"
	if contains(have, "pids") {
		enable += " +pids"
	}
	if err := write(filepath.Join(base, "cgroup.subtree_control"), enable); err != nil {
		return nil, fmt.Errorf("cgroup: enable %s: %w", enable, err)
	}
	dir := filepath.Join(base, "vision")
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	if err := write(filepath.Join(dir, "memory.max"), strconv.FormatInt(l.MemoryMax, 10)); err != nil {
		return nil, fmt.Errorf("cgroup: worker memory.max: %w", err)
	}
	// Without swap the bound is the bound; a kill takes the whole worker.
	optional := map[string]string{"memory.swap.max": "0", "memory.oom.group": "1"}
	if l.PidsMax > 0 && contains(have, "pids") {
		optional["pids.max"] = strconv.Itoa(l.PidsMax)
	}
	for f, v := range optional {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			if err := write(filepath.Join(dir, f), v); err != nil {
				return nil, fmt.Errorf("cgroup: worker %s: %w", f, err)
			}
		}
	}
	return &Placer{dir: dir}, nil
}

// Place moves process pid (a worker just started) into the worker's
// cgroup; what it allocates from then on counts against its memory.max.
func (p *Placer) Place(pid int) error {
	if err := write(filepath.Join(p.dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("cgroup: place worker %d: %w", pid, err)
	}
	return nil
}

// killWait bounds how long Kill waits for the cgroup to empty.
const killWait = 2 * time.Second

// Kill ends every process in the worker's cgroup and returns once it is
// empty, so that nothing a worker started outlives it, not even a child
// in a session of its own (a process group kill misses it). It writes
// cgroup.kill (Linux 5.14 and later); an older kernel gets SIGKILL for
// each process cgroup.procs lists, until none is left.
func (p *Placer) Kill() error {
	deadline := time.Now().Add(killWait)
	killFile := filepath.Join(p.dir, "cgroup.kill")
	_, err := os.Stat(killFile)
	hasKill := err == nil
	for {
		pids, populated, err := p.members()
		if err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
		if !populated {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup: %s still holds processes %v after %v", p.dir, pids, killWait)
		}
		if hasKill {
			if err := write(killFile, "1"); err != nil {
				return fmt.Errorf("cgroup: kill: %w", err)
			}
		} else {
			for _, pid := range pids {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// members lists the processes in the worker's cgroup, and whether any
// process is left (cgroup.events, which also counts the dying).
func (p *Placer) members() (pids []int, populated bool, err error) {
	raw, err := os.ReadFile(filepath.Join(p.dir, "cgroup.procs"))
	if err != nil {
		return nil, false, err
	}
	for _, f := range strings.Fields(string(raw)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	populated = len(pids) > 0
	if ev, err := os.ReadFile(filepath.Join(p.dir, "cgroup.events")); err == nil {
		populated = strings.Contains(string(ev), "populated 1")
	}
	return pids, populated, nil
}

// ownPath reads the cgroup v2 path ("0::/system.slice/x.service").
func ownPath(selfCgroup string) (string, error) {
	f, err := os.Open(selfCgroup)
	if err != nil {
		return "", fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "0::"); ok && strings.HasPrefix(rest, "/") {
			return rest, nil
		}
	}
	return "", ErrNotDelegated
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cgroup: %w", err)
	}
	return nil
}

// write writes one value the way cgroupfs wants it: one write call.
func write(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(v))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
