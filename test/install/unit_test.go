//go:build installtest

package install

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/paths"
)

// unit is the [Service] section of the installed unit file.
type unit map[string][]string

func readUnit(t *testing.T, file string) unit {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("the installed unit: %v", err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = l
		case section == "[Service]":
			k, v, _ := strings.Cut(l, "=")
			u[k] = append(u[k], v)
		}
	}
	return u
}

func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("the unit has %d %s= lines, want one", len(u[key]), key)
	}
	return u[key][0]
}

// The keys of the unit's [Service] section this test emulates, and those
// it leaves to systemd on the robot (checked offline by systemd-analyze
// verify and security in make test). A key in neither list fails the
// test: the daemon would no longer be started the way its unit says.
var (
	emulated = []string{"Type", "NotifyAccess", "ExecStart", "WatchdogSec", "User", "Group", "UMask",
		"RuntimeDirectory", "RuntimeDirectoryMode", "StateDirectory", "StateDirectoryMode", "NoNewPrivileges",
		"CapabilityBoundingSet", "AmbientCapabilities"}
	notEmulated = []string{"TimeoutStartSec", "TimeoutStopSec", "Restart", "RestartSec", "ReadWritePaths",
		"MemoryMax", "MemorySwapMax", "TasksMax", "Delegate", "ProtectSystem", "ProtectHome", "PrivateTmp",
		"PrivateDevices", "DevicePolicy", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectClock", "ProtectControlGroups", "ProtectHostname", "ProtectProc", "ProcSubset", "KeyringMode",
		"LockPersonality", "MemoryDenyWriteExecute", "RestrictRealtime", "RestrictSUIDSGID", "RemoveIPC",
		"PrivateMounts", "RestrictAddressFamilies", "RestrictNamespaces", "SystemCallArchitectures",
		"SystemCallFilter", "SystemCallErrorNumber"}
)

// daemon is the installed daemon, started as its unit starts it.
type daemon struct {
	*proc
	notify *notifySocket
}

// startDaemon starts the installed daemon the way systemd would with the
// installed unit: its ExecStart, as its User and Group with their
// supplementary groups, no capabilities, no new privileges, its UMask,
// its RuntimeDirectory and StateDirectory made with their modes and
// owner, NOTIFY_SOCKET and WATCHDOG_USEC set (Type=notify, WatchdogSec).
func startDaemon(t *testing.T, r *root) *daemon {
	t.Helper()
	u := readUnit(t, r.path(paths.Unit))
	known := map[string]bool{}
	for _, k := range append(append([]string{}, emulated...), notEmulated...) {
		known[k] = true
	}
	for k := range u {
		if !known[k] {
			t.Fatalf("the unit gained %s=, which this test neither emulates nor leaves to systemd knowingly", k)
		}
	}
	if u.one(t, "Type") != "notify" || u.one(t, "NoNewPrivileges") != "yes" || u.one(t, "CapabilityBoundingSet") != "" || u.one(t, "AmbientCapabilities") != "" {
		t.Fatal("the unit's Type, NoNewPrivileges or capabilities changed: emulate the new ones here")
	}
	user, group := u.one(t, "User"), u.one(t, "Group")
	uid, gid := r.ids(user)
	mkdir := func(dir, mode string) {
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil {
			t.Fatalf("mode %q: %v", mode, err)
		}
		p := r.path(dir)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, uid, gid)
		os.Chmod(p, os.FileMode(m))
	}
	mkdir("/run/"+u.one(t, "RuntimeDirectory"), u.one(t, "RuntimeDirectoryMode"))
	mkdir("/var/lib/"+u.one(t, "StateDirectory"), u.one(t, "StateDirectoryMode"))
	watchdog, err := time.ParseDuration(u.one(t, "WatchdogSec"))
	if err != nil {
		t.Fatalf("WatchdogSec: %v", err)
	}
	ns := listenNotify(t, r, "/run/install-test-notify.sock")
	env := []string{"NOTIFY_SOCKET=/run/install-test-notify.sock", fmt.Sprintf("WATCHDOG_USEC=%d", watchdog.Microseconds())}
	args := append([]string{"setpriv", "--reuid=" + user, "--regid=" + group, "--init-groups", "--no-new-privs",
		"--inh-caps=-all", "--bounding-set=-all", "--", "/bin/sh", "-c", `umask "$0"; exec "$@"`, u.one(t, "UMask")},
		strings.Fields(u.one(t, "ExecStart"))...)
	d := &daemon{proc: r.start("aibo-privacyd", env, args...), notify: ns}
	timeout := 60 * time.Second
	if ts, err := time.ParseDuration(u.one(t, "TimeoutStartSec")); err == nil {
		timeout = ts
	}
	if !ns.waitFor("READY=1", timeout, d.running) {
		t.Fatalf("no READY=1 within TimeoutStartSec %v; the daemon said:\n%s", timeout, d.out)
	}
	return d
}

// notifySocket plays systemd's notification socket.
type notifySocket struct {
	mu   sync.Mutex
	got  []string
	conn *net.UnixConn
}

func listenNotify(t *testing.T, r *root, inside string) *notifySocket {
	t.Helper()
	p := r.path(inside)
	os.Remove(p) // a restart's: the earlier daemon's socket is done with
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o777) // systemd's own socket lets every service write
	n := &notifySocket{conn: conn}
	t.Cleanup(func() { conn.Close(); os.Remove(p) })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.got = append(n.got, strings.Split(strings.TrimSpace(string(buf[:k])), "\n")...)
			n.mu.Unlock()
		}
	}()
	return n
}

// has reports whether the daemon sent line.
func (n *notifySocket) has(line string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.got {
		if l == line {
			return true
		}
	}
	return false
}

func (n *notifySocket) waitFor(line string, timeout time.Duration, alive func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline) && alive(); time.Sleep(50 * time.Millisecond) {
		if n.has(line) {
			return true
		}
	}
	return n.has(line)
}
