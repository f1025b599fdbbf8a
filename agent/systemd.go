package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/internal/sdnotify"
)

// runSystemd tells systemd (Type=notify) the daemon is ready once its
// diagnostic socket answers, then pings the watchdog (WatchdogSec=) only
// while the daemon is healthy: the socket accepts a connection and the
// store answers a read. A daemon that hangs stops pinging and systemd
// restarts it. Without $NOTIFY_SOCKET it does nothing.
func (d *Daemon) runSystemd(ctx context.Context) error {
	n := sdnotify.FromEnv()
	if !n.Enabled() {
		return nil
	}
	for {
		if d.socketAnswers(ctx, time.Second) == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := n.Notify("READY=1\nSTATUS=running"); err != nil {
		d.log.Warn("systemd notify", "err", err)
	}
	defer n.Notify("STOPPING=1\nSTATUS=stopping")
	period := n.Watchdog() / 2
	if period <= 0 {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	healthy := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := d.alive(ctx, period/2)
		switch {
		case err == nil:
			if !healthy {
				d.log.Info("daemon healthy again: watchdog pings resume")
			}
			healthy = true
			n.Notify("WATCHDOG=1")
		case ctx.Err() != nil:
			return nil
		default:
			if healthy {
				d.log.Error("daemon unhealthy: watchdog pings stop, systemd restarts it past WatchdogSec", "err", err, "watchdog", n.Watchdog())
			}
			healthy = false
			n.Notify("STATUS=unhealthy: " + err.Error())
		}
	}
}

// alive is the watchdog's health check, bounded by within.
func (d *Daemon) alive(ctx context.Context, within time.Duration) error {
	if err := d.socketAnswers(ctx, within); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- d.view(func(tx *bolt.Tx) error { _, err := d.pol.Read(tx); return err }) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	case <-time.After(within):
		return errors.New("store: no answer to a read within " + within.String())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// socketAnswers connects to the diagnostic socket and hangs up without a
// request (nothing is audited).
func (d *Daemon) socketAnswers(ctx context.Context, within time.Duration) error {
	dctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var dialer net.Dialer
	c, err := dialer.DialContext(dctx, "unix", d.cfg.Diag.Socket)
	if err != nil {
		return fmt.Errorf("diagnostic socket: %w", err)
	}
	return c.Close()
}
