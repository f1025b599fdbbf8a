// Package escape is what a vision worker taken over by a hostile image
// would try, for the tests of the worker's confinement (vision's
// sandbox_test.go, the daemon's e2e tests): read or rewrite the daemon's keys and store, change
// their modes, times or attributes, reach the diagnostic socket or the
// network (through the 64-bit and the 32-bit syscall interfaces), copy the
// daemon's descriptors, signal other processes or set their resource
// limits, make namespaces, set up
// io_uring, and leave a child behind in a session of its own.
//
// Each attempt returns nil when the escape worked. Nothing imports this
// package but tests; it must never be linked into a binary that ships.
package escape

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Targets are what the attempts aim at: the daemon's (the test's) files,
// socket, process and descriptor.
type Targets struct {
	Files     []string `json:"files"`  // device.key, people.keys, state.db
	Diag      string   `json:"diag"`   // the diagnostic socket's path
	Secret    string   `json:"secret"` // what it answers to whoever connects
	UDP       string   `json:"udp"`    // host:port of a datagram listener
	DaemonPID int      `json:"daemon_pid"`
	DaemonFD  int      `json:"daemon_fd"`  // an open descriptor of the daemon's
	VictimPID int      `json:"victim_pid"` // another process
	Self      string   `json:"self"`       // this binary, to start a child
	ChildEnv  []string `json:"child_env"`  // the child's environment: it sleeps
}

// Attempt is one escape. Try returns nil when it worked, and the pid of
// a child it left behind (0 if none).
type Attempt struct {
	Name string
	Try  func(Targets) (child int, err error)
}

// All are the attempts, the 32-bit ones last (a filter that kills on a
// foreign architecture ends the process there).
func All() []Attempt {
	return append(native(), compat()...)
}

func native() []Attempt {
	return []Attempt{
		{"read device.key", func(t Targets) (int, error) { _, err := os.ReadFile(t.Files[0]); return 0, err }},
		{"rewrite people.keys", func(t Targets) (int, error) { return 0, rewrite(t.Files[1]) }},
		{"rewrite state.db", func(t Targets) (int, error) { return 0, rewrite(t.Files[2]) }},
		{"chmod device.key", func(t Targets) (int, error) { return 0, os.Chmod(t.Files[0], 0o666) }},
		{"utimensat device.key", func(t Targets) (int, error) {
			return 0, unix.UtimesNanoAt(unix.AT_FDCWD, t.Files[0], []unix.Timespec{{Sec: 1}, {Sec: 1}}, 0)
		}},
		{"setxattr device.key", func(t Targets) (int, error) {
			return 0, unix.Setxattr(t.Files[0], "trusted.aibo-escape", []byte("x"), 0)
		}},
		{"connect to the diagnostic socket", func(t Targets) (int, error) {
			c, err := net.DialTimeout("unix", t.Diag, time.Second)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			return 0, readSecret(c, t.Secret)
		}},
		{"send a UDP datagram", func(t Targets) (int, error) {
			c, err := net.DialTimeout("udp", t.UDP, time.Second)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			_, err = c.Write([]byte("a face"))
			return 0, err
		}},
		{"pidfd_getfd of the daemon's descriptor", func(t Targets) (int, error) {
			pfd, err := unix.PidfdOpen(t.DaemonPID, 0)
			if err != nil {
				return 0, fmt.Errorf("pidfd_open: %w", err)
			}
			defer unix.Close(pfd)
			fd, err := unix.PidfdGetfd(pfd, t.DaemonFD, 0)
			if err != nil {
				return 0, fmt.Errorf("pidfd_getfd: %w", err)
			}
			return 0, unix.Close(fd)
		}},
		{"kill another process", func(t Targets) (int, error) { return 0, unix.Kill(t.VictimPID, unix.SIGTERM) }},
		{"signal another process through SIGIO", func(t Targets) (int, error) {
			// fcntl names the process the kernel signals when a pipe of
			// ours becomes readable, and the signal: SIGKILL.
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_NONBLOCK); err != nil {
				return 0, err
			}
			defer unix.Close(p[0])
			defer unix.Close(p[1])
			for _, c := range [][2]int{{unix.F_SETOWN, t.VictimPID}, {unix.F_SETSIG, int(unix.SIGKILL)}, {unix.F_SETFL, unix.O_ASYNC | unix.O_NONBLOCK}} {
				if _, err := unix.FcntlInt(uintptr(p[0]), c[0], c[1]); err != nil {
					return 0, err
				}
			}
			unix.Write(p[1], []byte("x"))
			// Watch the victim go (a zombie of the test's, or gone). Where the
			// worker cannot read /proc/PID at all, it cannot tell: the test
			// checks the victim itself (house.untouched).
			for range 50 {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", t.VictimPID))
				if errors.Is(err, os.ErrNotExist) || bytes.Contains(b, []byte(") Z ")) {
					return 0, nil
				}
				if err != nil {
					return 0, fmt.Errorf("signal sent, victim out of sight: %w", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			return 0, errors.New("the signal did not arrive")
		}},
		{"set another process's limits", func(t Targets) (int, error) {
			// The daemon's, in earnest: no files (RLIMIT_NOFILE), no growth of
			// state.db (RLIMIT_FSIZE), a SIGKILL (RLIMIT_CPU).
			return 0, unix.Prlimit(t.VictimPID, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 3, Max: 3}, nil)
		}},
		{"io_uring_setup", func(t Targets) (int, error) {
			var params [120]byte
			fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
			if e != 0 {
				return 0, e
			}
			return 0, unix.Close(int(fd))
		}},
		{"unshare a namespace", func(t Targets) (int, error) { return 0, unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWUTS) }},
		{"clone into a new user namespace", func(t Targets) (int, error) {
			pid, err := syscall.ForkExec(t.Self, []string{t.Self}, &syscall.ProcAttr{Env: t.ChildEnv,
				Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}})
			if err != nil {
				return 0, err
			}
			syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
			return 0, nil
		}},
		{"leave a child in a session of its own", func(t Targets) (int, error) {
			return syscall.ForkExec(t.Self, []string{t.Self}, &syscall.ProcAttr{Env: t.ChildEnv,
				Sys: &syscall.SysProcAttr{Setsid: true}})
		}},
	}
}

func rewrite(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt([]byte("owned"), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readSecret(c interface{ Read([]byte) (int, error) }, secret string) error {
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	if !bytes.Contains(buf[:n], []byte(secret)) {
		return errors.New("connected, but no answer")
	}
	return nil
}

// Sleep is the child's part: it stays alive until killed.
func Sleep() {
	for {
		time.Sleep(time.Hour)
	}
}

// WithoutLandlock makes this process, and all it starts, see a kernel
// without Landlock, as the security review did: a seccomp filter answers
// ENOSYS to landlock_create_ruleset and lets every other call through.
func WithoutLandlock() error {
	nr := uint32(unix.SYS_LANDLOCK_CREATE_RULESET)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // the call's number
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return e
	}
	return nil
}
