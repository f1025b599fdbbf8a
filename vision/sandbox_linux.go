package vision

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// The worker's sandbox. The daemon does not start the worker directly: it
// starts its own binary with LauncherArg, which confines itself and then
// execs the worker, so the worker runs confined from its first instruction
// (before OpenCV or any image decoder is even loaded). Both confinements
// are inherited across exec and can never be lifted:
//
//   - Landlock (where the kernel has it): the filesystem is read-only and
//     only below Sandbox.Read (the worker, its libraries, the models);
//     data_dir with device.key, people.keys and state.db, the spool, /run
//     and every other path cannot be opened, nothing can be written, no
//     TCP socket bound or connected, no signal sent outside the worker and
//     no abstract Unix socket reached.
//   - seccomp: the worker talks to the daemon over its pipes only, so it
//     may not create a socket of any family (a pathname Unix socket such
//     as the diagnostic socket included), nor trace, mount, load modules,
//     or use the other syscalls an exploit reaches for.
//
// The network namespace (setProcAttr) comes on top.

// LauncherArg, as the first argument of the daemon's binary, makes it the
// worker's launcher instead of the daemon.
const LauncherArg = "__aibo-vision-launcher"

// Sandbox is what the worker may read (and execute). Everything else is
// out of reach.
type Sandbox struct {
	Read []string `json:"read"` // directories and files, read-only
}

// launcherCommand is how the client starts the worker confined.
func launcherCommand(launcher string, sb Sandbox, path string, args []string) (string, []string) {
	policy, _ := json.Marshal(sb)
	return launcher, append([]string{LauncherArg, string(policy), "--", path}, args...)
}

// deniedSyscalls fail with EPERM inside the worker.
var deniedSyscalls = []string{
	"socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
	"ptrace", "process_vm_readv", "process_vm_writev",
	"mount", "umount2", "pivot_root", "chroot", "setns", "unshare",
	"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"reboot", "swapon", "swapoff", "acct", "name_to_handle_at", "open_by_handle_at",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// RunLauncher, when the process was started with LauncherArg, confines
// itself and execs the worker; it never returns then (exit 126 when it
// cannot). Otherwise it returns at once. Call it first in main.
func RunLauncher() {
	if len(os.Args) < 2 || os.Args[1] != LauncherArg {
		return
	}
	if err := launch(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, `{"level":"ERROR","msg":"vision worker not started: sandbox","err":%q}`+"\n", err.Error())
		os.Exit(126)
	}
}

func launch(args []string) error {
	if len(args) < 3 || args[1] != "--" {
		return errors.New("usage: " + LauncherArg + " POLICY -- WORKER [ARGS...]")
	}
	var sb Sandbox
	if err := json.Unmarshal([]byte(args[0]), &sb); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	path, argv := args[2], args[2:]
	// Landlock and seccomp apply to the calling thread; exec keeps only
	// that thread, so everything runs on one.
	runtime.LockOSThread()
	abi, err := restrictPaths(sb.Read)
	if err != nil {
		return fmt.Errorf("landlock: %w", err)
	}
	if err := seccomp.LoadFilter(seccomp.Filter{
		NoNewPrivs: true,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls:      []seccomp.SyscallGroup{{Action: seccomp.ActionErrno, Names: deniedSyscalls}},
		},
	}); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	fmt.Fprintf(os.Stderr, `{"level":"INFO","msg":"vision worker sandboxed","landlock_abi":%d,"seccomp":true}`+"\n", abi)
	return syscall.Exec(path, argv, os.Environ())
}

// Filesystem rights by Landlock ABI: what a ruleset handles (denies unless
// a rule allows it) must be rights the kernel knows.
const (
	fsV1 = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	readExec = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
)

func fsRights(abi int) uint64 {
	r := uint64(fsV1)
	if abi >= 2 {
		r |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		r |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		r |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	if abi >= 8 {
		r |= unix.LANDLOCK_ACCESS_FS_RESOLVE_UNIX
	}
	return r
}

// LandlockABI is the kernel's Landlock version, 0 when it has none.
func LandlockABI() int {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0
	}
	return int(v)
}

// restrictPaths confines the calling thread to reading (and executing)
// below read; it returns the ABI used, 0 when the kernel has no Landlock
// (seccomp and the network namespace still apply then).
func restrictPaths(read []string) (int, error) {
	abi := LandlockABI()
	if abi == 0 {
		return 0, nil
	}
	attr := unix.LandlockRulesetAttr{Handled_access_fs: fsRights(abi)}
	if abi >= 4 {
		attr.Handled_access_net = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
	}
	if abi >= 6 {
		attr.Scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
	}
	// Only the fields this ABI knows are passed: an older kernel refuses a
	// larger struct whose extra fields it cannot check.
	size := unsafe.Sizeof(attr.Handled_access_fs)
	if abi >= 4 {
		size += unsafe.Sizeof(attr.Handled_access_net)
	}
	if abi >= 6 {
		size += unsafe.Sizeof(attr.Scoped)
	}
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if e != 0 {
		return 0, fmt.Errorf("create ruleset: %w", e)
	}
	defer unix.Close(int(fd))
	for _, p := range read {
		if err := allow(int(fd), p, readExec&attr.Handled_access_fs); err != nil {
			return 0, err
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); e != 0 {
		return 0, fmt.Errorf("restrict self: %w", e)
	}
	return abi, nil
}

// allow adds a rule letting rights below path (a missing path is skipped:
// a library folder one platform lacks).
func allow(ruleset int, path string, rights uint64) error {
	f, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(f)
	var st unix.Stat_t
	if err := unix.Fstat(f, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		rights &^= unix.LANDLOCK_ACCESS_FS_READ_DIR // a file takes file rights only
	}
	rule := unix.LandlockPathBeneathAttr{Allowed_access: rights, Parent_fd: int32(f)}
	if _, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0); e != 0 {
		return fmt.Errorf("rule for %s: %w", path, e)
	}
	return nil
}

// SystemReadPaths are what any dynamically linked worker reads: the loader
// and libraries, their cache, and the CPU facts OpenCV sizes its threads
// by. Add the worker's own folder and its models.
var SystemReadPaths = []string{
	"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/opencv4",
	"/etc/ld.so.cache", "/proc/self", "/proc/cpuinfo", "/sys/devices/system/cpu", "/sys/fs/cgroup",
	"/dev/null",
}
