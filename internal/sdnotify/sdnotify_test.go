package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestNotifySendsOneDatagram(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := FromEnv()
	if !n.Enabled() || n.Watchdog() != 30*time.Second {
		t.Fatalf("enabled %v watchdog %v", n.Enabled(), n.Watchdog())
	}
	if err := n.Notify("READY=1\nSTATUS=ready"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	ln.SetReadDeadline(time.Now().Add(time.Second))
	k, err := ln.Read(buf)
	if err != nil || string(buf[:k]) != "READY=1\nSTATUS=ready" {
		t.Fatalf("got %q, %v", buf[:k], err)
	}
}

func TestWithoutSystemdNothingIsSent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "1") // another process's watchdog
	n := FromEnv()
	if n.Enabled() || n.Watchdog() != 0 {
		t.Fatalf("enabled %v watchdog %v", n.Enabled(), n.Watchdog())
	}
	if err := n.Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
}
