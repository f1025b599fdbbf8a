package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// netnsDialer returns a dialer whose sockets live in the network namespace
// at path (scripts/cluster.sh makes the namespace aibo-fleet with ip
// netns, joined to this one by a veth pair it can take down). A socket belongs to the namespace
// of the thread that created it, for its whole life: the dial runs on a
// thread of its own that enters the namespace and is never handed back
// to the scheduler (a goroutine that ends locked takes its thread with it).
func netnsDialer(path string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
			f, err := os.Open(path)
			if err != nil {
				ch <- result{err: err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- result{err: fmt.Errorf("setns %s: %w", path, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
