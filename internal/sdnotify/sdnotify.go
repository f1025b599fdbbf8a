// Package sdnotify speaks systemd's notify protocol: one datagram of
// "KEY=value" lines on the Unix socket named by $NOTIFY_SOCKET (READY=1,
// WATCHDOG=1, STOPPING=1, STATUS=...). It needs no library: it is a
// datagram. It owns nothing else and does nothing when the daemon does not
// run under systemd (no $NOTIFY_SOCKET).
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends states to systemd. The zero value (no socket) drops them.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

// FromEnv reads $NOTIFY_SOCKET and $WATCHDOG_USEC (honoured only when
// $WATCHDOG_PID is unset or this process).
func FromEnv() Notifier {
	var n Notifier
	if s := os.Getenv("NOTIFY_SOCKET"); s != "" {
		// A leading @ is an abstract socket; Go's UnixAddr understands it.
		n.addr = &net.UnixAddr{Name: s, Net: "unixgram"}
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return n
	}
	if us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
		n.watchdog = time.Duration(us) * time.Microsecond
	}
	return n
}

// Enabled reports whether systemd listens.
func (n Notifier) Enabled() bool { return n.addr != nil }

// Watchdog is WatchdogSec= of the unit, 0 when off. WATCHDOG=1 must come
// more often than that.
func (n Notifier) Watchdog() time.Duration { return n.watchdog }

// Notify sends state (newline-separated assignments) in one datagram.
func (n Notifier) Notify(state string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
