package vision

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The worker's sandbox. The daemon does not start the worker directly: it
// starts its own binary with LauncherArg, which confines itself and then
// execs the worker, so the worker runs confined from its first instruction
// (before OpenCV or any image decoder is even loaded). Both confinements
// are inherited across exec and can never be lifted:
//
//   - Landlock: the filesystem is read-only and only below Sandbox.Read
//     (the worker, its libraries, the models); data_dir with device.key,
//     people.keys and state.db, the spool, /run and every other path
//     cannot be opened, nothing can be written, no TCP socket bound or
//     connected, no signal sent outside the worker and no abstract Unix
//     socket reached. A kernel without Landlock gets no worker at all: the
//     launcher refuses, and the daemon refuses face and photo work and
//     says why (Client.Confinement).
//   - seccomp: an allow-list of the calls the worker makes, native
//     architecture only (seccomp_linux.go). It talks to the daemon over
//     its pipes only: no socket of any family, no chmod, chown, xattr or
//     utime, no new process, namespace, ptrace, io_uring or bpf.
//
// The namespaces (setProcAttr) come on top. The launcher reports what it
// put in force on a pipe of its own (descriptor 3), closed before the
// exec: the daemon learns it from code it trusts, never from the worker.

// LauncherArg, as the first argument of the daemon's binary, makes it the
// worker's launcher instead of the daemon.
const LauncherArg = "__aibo-vision-launcher"

// Sandbox is what the worker may read (and execute). Everything else is
// out of reach.
type Sandbox struct {
	Read []string `json:"read"` // directories and files, read-only
}

// RunLauncher, when the process was started with LauncherArg, confines
// itself and execs the worker; it never returns then (exit 126 when it
// cannot). Otherwise it returns at once. Call it first in main.
func RunLauncher() {
	if len(os.Args) < 2 || os.Args[1] != LauncherArg {
		return
	}
	report := os.NewFile(reportFD, "confinement-report")
	path, argv, err := launch(os.Args[2:])
	r := launchReport{UID: os.Getuid()}
	if err != nil {
		r.Refused = err.Error()
		fmt.Fprintf(os.Stderr, `{"level":"ERROR","msg":"vision worker not started: sandbox","err":%q}`+"\n", err.Error())
	} else {
		r.Landlock, r.Seccomp = landlockInForce, true
	}
	if report != nil {
		json.NewEncoder(report).Encode(r) // nobody listening: started by hand
		report.Close()                    // never reaches the worker
	}
	if err != nil {
		os.Exit(126)
	}
	if path == "" {
		os.Exit(0) // a probe
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, `{"level":"ERROR","msg":"vision worker not started: exec","err":%q}`+"\n", err.Error())
	os.Exit(126)
}

// landlockInForce is the ABI launch restricted the process with.
var landlockInForce int

// launch confines the process: Landlock, then the seccomp filter. It
// returns the worker to exec ("" for a probe).
func launch(args []string) (path string, argv []string, err error) {
	if len(args) < 2 || args[1] != "--" {
		return "", nil, errors.New("usage: " + LauncherArg + " POLICY -- [WORKER [ARGS...]]")
	}
	var sb Sandbox
	if err := json.Unmarshal([]byte(args[0]), &sb); err != nil {
		return "", nil, fmt.Errorf("policy: %w", err)
	}
	if len(args) > 2 {
		path, argv = args[2], args[2:]
	}
	// Landlock and seccomp apply to the calling thread (the filter is
	// synchronised to the others); exec keeps only that thread.
	runtime.LockOSThread()
	abi, err := restrictPaths(sb.Read)
	if err != nil {
		return "", nil, fmt.Errorf("landlock: %w", err)
	}
	prog, err := workerProgram(os.Getpid())
	if err == nil {
		err = loadFilter(prog)
	}
	if err != nil {
		return "", nil, fmt.Errorf("seccomp: %w", err)
	}
	landlockInForce = abi
	return path, argv, nil
}

// ErrNoLandlock: the kernel has no Landlock (or has it switched off), so
// the worker's files could not be confined; no worker runs.
var ErrNoLandlock = errors.New("this kernel has no Landlock: the worker's files cannot be confined, so no worker runs")

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
// below read; it returns the ABI used, or ErrNoLandlock.
func restrictPaths(read []string) (int, error) {
	abi := LandlockABI()
	if abi == 0 {
		return 0, ErrNoLandlock
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
