package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// notifySocket is systemd's end of Type=notify: it collects datagrams.
type notifySocket struct {
	path string
	ch   chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify"), ch: make(chan string, 1024)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.ch <- string(buf[:k])
		}
	}()
	return n
}

// waitFor returns the first datagram containing want within d.
func (n *notifySocket) waitFor(t *testing.T, want string, d time.Duration) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-n.ch:
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from the daemon within %s", want, d)
		}
	}
}

// Type=notify with WatchdogSec: READY=1 once the diagnostic socket
// answers, WATCHDOG=1 while the daemon is healthy, and no ping once it is
// not (here its socket stops answering), so systemd restarts it.
func TestSystemdReadinessAndWatchdogFollowHealth(t *testing.T) {
	b := testbroker.Start(t)
	n := listenNotify(t)
	r := newRig(t, b, "")
	r.env = []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=400000"}
	r.start()
	n.waitFor(t, "READY=1", 5*time.Second)
	for range 3 {
		n.waitFor(t, "WATCHDOG=1", 3*time.Second)
	}
	// The socket no longer answers: the pings stop and systemd is told why.
	if err := os.Remove(r.socket); err != nil {
		t.Fatal(err)
	}
	n.waitFor(t, "STATUS=unhealthy", 5*time.Second)
	quiet := time.After(time.Second) // 5 periods of 200 ms
	for done := false; !done; {
		select {
		case m := <-n.ch:
			if strings.Contains(m, "WATCHDOG=1") {
				t.Fatalf("watchdog pinged while the daemon was unhealthy: %q", m)
			}
		case <-quiet:
			done = true
		}
	}
	r.stop()
	n.waitFor(t, "STOPPING=1", 5*time.Second)
}

// Without $NOTIFY_SOCKET (make run, the tests) the daemon sends nothing
// and needs nothing from systemd.
func TestWithoutSystemdTheDaemonRunsAsBefore(t *testing.T) {
	r := newRig(t, testbroker.Start(t), "")
	r.env = []string{"NOTIFY_SOCKET=", "WATCHDOG_USEC=100000"}
	r.start()
	r.waitHealthy(10 * time.Second)
	r.stop()
}
