package vision

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The worker's seccomp filter is an allow-list, assembled here as classic
// BPF (no library: the one we used sent a call of a foreign architecture
// to its default action, which was "allow", so int $0x80 on amd64 walked
// past every rule).
//
//  1. A call of any architecture but the native one (32-bit x86 or x32 on
//     amd64, AArch32 on arm64) kills the process.
//  2. The calls the worker makes (measured with strace over the worker's
//     requests; README, "The vision worker is untrusted") are allowed,
//     some only with harmless arguments: kill, tgkill and prlimit64 only
//     to itself, fcntl without F_SETOWN, F_SETOWN_EX or F_SETSIG (which
//     would have the kernel signal another process for it, as SIGIO),
//     clone only for a thread and with no namespace flag.
//  3. Everything else fails with EPERM: sockets of every family, ptrace,
//     process_vm_*, pidfd_*, io_uring_*, unshare, setns, bpf,
//     perf_event_open, userfaultfd, keyctl, the chmod, chown, xattr and
//     utime families, mounts, modules, fork and prctl among them. clone3
//     fails with ENOSYS instead, so that glibc falls back to clone, whose
//     flags a filter can see.

// Actions.
const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

// Offsets in struct seccomp_data (little-endian: an argument's low word
// comes first; both platforms are little-endian).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// x32Bit marks an x32 syscall number on amd64 (same AUDIT_ARCH as native).
const x32Bit = 0x40000000

// nsFlags are the namespace flags of clone: a thread needs none of them.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// workerSyscalls are what the worker may call at all (names; seccomp_*.go
// give their numbers on each platform, and a name a platform lacks is
// simply absent there). Most are the dynamic loader's, glibc's, Go's
// runtime and OpenCV's; none creates a file, a socket, a process or a
// namespace. kill, tgkill, prlimit64, fcntl and clone are allowed by
// selfRules below, with their arguments checked.
var workerSyscalls = []string{
	// files: Landlock decides which may be opened, and none for writing
	"read", "write", "readv", "writev", "pread64", "close", "openat", "open", "lseek",
	"fstat", "newfstatat", "stat", "lstat", "statx", "statfs", "fstatfs",
	"access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64",
	"dup", "dup2", "dup3", "pipe", "pipe2", "getcwd",
	// memory
	"mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "mlock", "munlock",
	"get_mempolicy", "set_mempolicy",
	// threads, time, waiting
	"futex", "sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep",
	"clock_gettime", "clock_getres", "gettimeofday", "time", "restart_syscall",
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
	"eventfd2", "poll", "ppoll", "select", "pselect6",
	"set_tid_address", "set_robust_list", "rseq", "arch_prctl",
	// signals (to itself: see selfRules)
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	// facts about itself
	"getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "uname", "getrandom",
	// the launcher's exec of the worker, and the end
	"execve", "exit", "exit_group",
}

// rule is one syscall's part of the program: a block that ends in a RET.
type rule struct {
	nr    uint32
	block []unix.SockFilter
}

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

func ret(action uint32) unix.SockFilter { return stmt(unix.BPF_RET|unix.BPF_K, action) }

func loadArgLow(i int) unix.SockFilter {
	return stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, uint32(offArgs+8*i))
}

// selfRules allow kill and tgkill only towards pid (the worker itself:
// exec keeps the launcher's pid), prlimit64 only on itself (0 or pid: on
// another process of the daemon's uid it would set the daemon's limits,
// and without a PID namespace, as under the unit, the daemon is in reach),
// fcntl but for naming a process to signal (F_SETOWN, F_SETOWN_EX,
// F_SETSIG: with O_ASYNC the kernel would send that process any signal,
// SIGKILL included, whenever a pipe of the worker's becomes readable;
// only Landlock ABI 6 scopes that, and Debian 12's kernel has ABI 2), and
// clone only for a thread without a namespace flag. The kernel reads
// these arguments as 32-bit ints, so the low word is the whole story.
func selfRules(pid uint32) []rule {
	toSelf := []unix.SockFilter{
		loadArgLow(0),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, pid, 0, 1),
		ret(retAllow),
		ret(retEPERM),
	}
	return []rule{
		{uint32(unix.SYS_KILL), toSelf},
		{uint32(unix.SYS_TGKILL), toSelf},
		{uint32(unix.SYS_PRLIMIT64), append([]unix.SockFilter{loadArgLow(0), jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, 1, 0)}, toSelf[1:]...)},
		{uint32(unix.SYS_FCNTL), []unix.SockFilter{
			loadArgLow(1), // cmd
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.F_SETOWN, 3, 0),
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.F_SETOWN_EX, 2, 0),
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.F_SETSIG, 1, 0),
			ret(retAllow),
			ret(retEPERM),
		}},
		{uint32(unix.SYS_CLONE), []unix.SockFilter{
			loadArgLow(0),
			jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, unix.CLONE_THREAD, 0, 2),
			jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, nsFlags, 1, 0),
			ret(retAllow),
			ret(retEPERM),
		}},
		{uint32(unix.SYS_CLONE3), []unix.SockFilter{ret(retENOSYS)}},
	}
}

// program assembles a filter for the native architecture: foreign
// architectures killed, rules tried in order, def for the rest.
func program(rules []rule, def uint32) ([]unix.SockFilter, error) {
	p := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, auditArch, 1, 0),
		ret(retKill),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr),
	}
	if runtime.GOARCH == "amd64" {
		p = append(p, jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, 0, 1), ret(retKill))
	}
	for _, r := range rules {
		if len(r.block) > 255 {
			return nil, fmt.Errorf("seccomp: block of syscall %d too long", r.nr)
		}
		p = append(p, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, r.nr, 0, uint8(len(r.block))))
		p = append(p, r.block...)
	}
	p = append(p, ret(def))
	if len(p) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: %d instructions, the kernel takes %d", len(p), unix.BPF_MAXINSNS)
	}
	return p, nil
}

// workerProgram is the worker's filter; pid is its own process id.
func workerProgram(pid int) ([]unix.SockFilter, error) {
	rules := selfRules(uint32(pid))
	for _, name := range workerSyscalls {
		if nr, ok := syscallNumbers[name]; ok {
			rules = append(rules, rule{uint32(nr), []unix.SockFilter{ret(retAllow)}})
		}
	}
	return program(rules, retEPERM)
}

// loadFilter installs p on every thread of the process (TSYNC), after
// no_new_privs, which an unprivileged filter requires. It stays for the
// process and everything it execs.
func loadFilter(p []unix.SockFilter) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(p)), Filter: &p[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if e != 0 {
		return fmt.Errorf("seccomp: %w", e)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not take the filter", r)
	}
	runtime.KeepAlive(p)
	return nil
}
