//go:build linux

package vision

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets a seccomp program (the few classic BPF instructions
// program emits) over one call: what the kernel would decide.
func run(t *testing.T, p []unix.SockFilter, arch uint32, nr uint32, args ...uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[offNr:], nr)
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[offArgs+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			pc += int(map[bool]uint8{true: in.Jt, false: in.Jf}[acc == in.K])
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			pc += int(map[bool]uint8{true: in.Jt, false: in.Jf}[acc >= in.K])
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			pc += int(map[bool]uint8{true: in.Jt, false: in.Jf}[acc&in.K != 0])
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: unknown code %#x", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID

// Issue 21: the filter kills a call of any architecture but the native
// one (the old filter let int $0x80 through: its default was "allow"),
// allows what the worker calls, and refuses the rest with EPERM.
func TestTheFilterKillsForeignArchitecturesAndAllowsOnlyTheList(t *testing.T) {
	const self = 4242
	p, err := workerProgram(self)
	if err != nil {
		t.Fatal(err)
	}
	native := uint32(auditArch)
	for _, arch := range []uint32{unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM, unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_AARCH64} {
		if arch == native {
			continue
		}
		// Whatever the number: getpid on one, socket on another.
		for _, nr := range []uint32{0, 20, 102, 359, uint32(unix.SYS_GETPID)} {
			if got := run(t, p, arch, nr); got != retKill {
				t.Errorf("arch %#x call %d: action %#x, want kill", arch, nr, got)
			}
		}
	}
	if auditArch == unix.AUDIT_ARCH_X86_64 {
		if got := run(t, p, native, x32Bit|uint32(unix.SYS_SOCKET)); got != retKill {
			t.Errorf("x32 socket: action %#x, want kill", got)
		}
	}
	for _, name := range workerSyscalls {
		if nr, ok := syscallNumbers[name]; ok {
			if got := run(t, p, native, uint32(nr)); got != retAllow {
				t.Errorf("%s: action %#x, want allow", name, got)
			}
		}
	}
	denied := map[string]uintptr{
		"socket": unix.SYS_SOCKET, "connect": unix.SYS_CONNECT, "fchmodat": unix.SYS_FCHMODAT, "fchmod": unix.SYS_FCHMOD,
		"fchownat": unix.SYS_FCHOWNAT, "setxattr": unix.SYS_SETXATTR, "fsetxattr": unix.SYS_FSETXATTR, "utimensat": unix.SYS_UTIMENSAT,
		"pidfd_open": unix.SYS_PIDFD_OPEN, "pidfd_getfd": unix.SYS_PIDFD_GETFD, "pidfd_send_signal": unix.SYS_PIDFD_SEND_SIGNAL,
		"tkill": unix.SYS_TKILL, "ptrace": unix.SYS_PTRACE, "process_vm_readv": unix.SYS_PROCESS_VM_READV,
		"process_vm_writev": unix.SYS_PROCESS_VM_WRITEV, "io_uring_setup": unix.SYS_IO_URING_SETUP, "unshare": unix.SYS_UNSHARE,
		"setns": unix.SYS_SETNS, "bpf": unix.SYS_BPF, "perf_event_open": unix.SYS_PERF_EVENT_OPEN, "userfaultfd": unix.SYS_USERFAULTFD,
		"keyctl": unix.SYS_KEYCTL, "mount": unix.SYS_MOUNT, "prctl": unix.SYS_PRCTL, "ioctl": unix.SYS_IOCTL, "seccomp": unix.SYS_SECCOMP,
	}
	for name, nr := range denied {
		if got := run(t, p, native, uint32(nr)); got != retEPERM {
			t.Errorf("%s: action %#x, want EPERM", name, got)
		}
	}
	// Signals and limits to itself only; threads, never processes or namespaces.
	for _, c := range []struct {
		what string
		nr   uintptr
		args []uint64
		want uint32
	}{
		{"kill itself", unix.SYS_KILL, []uint64{self, 15}, retAllow},
		{"kill another", unix.SYS_KILL, []uint64{self + 1, 15}, retEPERM},
		{"kill its group", unix.SYS_KILL, []uint64{0, 15}, retEPERM},
		{"kill everyone", unix.SYS_KILL, []uint64{uint64(0xFFFFFFFF), 9}, retEPERM},
		{"tgkill its thread", unix.SYS_TGKILL, []uint64{self, 77, 23}, retAllow},
		{"tgkill another's", unix.SYS_TGKILL, []uint64{self + 1, 77, 23}, retEPERM},
		{"prlimit64 itself (0)", unix.SYS_PRLIMIT64, []uint64{0, unix.RLIMIT_NOFILE}, retAllow},
		{"prlimit64 itself (its pid)", unix.SYS_PRLIMIT64, []uint64{self, unix.RLIMIT_NOFILE}, retAllow},
		{"prlimit64 another (the daemon)", unix.SYS_PRLIMIT64, []uint64{self - 1, unix.RLIMIT_NOFILE}, retEPERM},
		{"fcntl F_GETFL", unix.SYS_FCNTL, []uint64{3, unix.F_GETFL}, retAllow},
		{"fcntl F_SETFD", unix.SYS_FCNTL, []uint64{3, unix.F_SETFD, unix.FD_CLOEXEC}, retAllow},
		{"fcntl F_SETOWN (SIGIO to another)", unix.SYS_FCNTL, []uint64{3, unix.F_SETOWN, self - 1}, retEPERM},
		{"fcntl F_SETOWN_EX", unix.SYS_FCNTL, []uint64{3, unix.F_SETOWN_EX}, retEPERM},
		{"fcntl F_SETSIG", unix.SYS_FCNTL, []uint64{3, unix.F_SETSIG, 9}, retEPERM},
		{"clone a thread", unix.SYS_CLONE, []uint64{threadFlags}, retAllow},
		{"fork", unix.SYS_CLONE, []uint64{uint64(unix.SIGCHLD)}, retEPERM},
		{"vfork for exec", unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)}, retEPERM},
		{"a thread in a new user namespace", unix.SYS_CLONE, []uint64{threadFlags | unix.CLONE_NEWUSER}, retEPERM},
		{"a thread in a new network namespace", unix.SYS_CLONE, []uint64{threadFlags | unix.CLONE_NEWNET}, retEPERM},
		{"clone3 (glibc falls back to clone)", unix.SYS_CLONE3, nil, retENOSYS},
	} {
		if got := run(t, p, native, uint32(c.nr), c.args...); got != c.want {
			t.Errorf("%s: action %#x, want %#x", c.what, got, c.want)
		}
	}
}

// Every name on the allow-list is a syscall of amd64 or arm64 (the
// numbers come from x/sys for the platform compiled: a typo would allow
// nothing and go unnoticed).
func TestTheAllowListNamesRealSyscalls(t *testing.T) {
	absentOnArm64 := map[string]bool{"open": true, "stat": true, "lstat": true, "access": true, "readlink": true, "dup2": true,
		"pipe": true, "time": true, "epoll_wait": true, "poll": true, "select": true, "arch_prctl": true}
	for _, name := range workerSyscalls {
		_, ok := syscallNumbers[name]
		if !ok && !(auditArch == unix.AUDIT_ARCH_AARCH64 && absentOnArm64[name]) {
			t.Errorf("%s has no number on this platform", name)
		}
	}
	if len(syscallNumbers) < len(workerSyscalls)-len(absentOnArm64) {
		t.Errorf("%d numbers for %d names", len(syscallNumbers), len(workerSyscalls))
	}
}
