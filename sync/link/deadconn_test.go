package link

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// freezer is a TCP proxy to the broker that can stop moving bytes in
// both directions without closing anything: packets silently dropped, as
// when a robot's Wi-Fi goes away. Its sockets' receive buffers are small,
// so what it stops reading piles up at the sender.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
	thaw   chan struct{}
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t *testing.T, broker string) *freezer {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10) })
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, thaw: make(chan struct{})}
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", strings.TrimPrefix(broker, "tcp://"))
			if err != nil {
				in.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, in, out)
			f.mu.Unlock()
			go f.pipe(out, in)
			go f.pipe(in, out)
		}
	}()
	return f
}

// pipe copies src to dst, in small reads, none while frozen.
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 4096)
	for {
		if f.frozen.Load() {
			<-f.thaw
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

func (f *freezer) url() string { return "tcp://" + f.ln.Addr().String() }

// TestASilentlyDeadConnectionIsDroppedWhileBytesWait: when the network
// silently drops a robot's packets in the middle of an upload, the link
// notices within seconds (a write that cannot go for opTimeout), instead
// of handing megabytes to a socket that grew its buffer while the
// network was good, noticing only at the next keepalive (2 minutes), and
// bursting it all out when the network returns.
func TestASilentlyDeadConnectionIsDroppedWhileBytesWait(t *testing.T) {
	b := testbroker.Start(t)
	fz := newFreezer(t, b.URL)
	f := newFixture(t, Config{Broker: fz.url()})
	f.run(t)
	waitConnected(t, f.link, true)
	chunk := make([]byte, 128<<10)
	// A good network first: the kernel grows the socket's buffer.
	for range 32 {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := f.link.Publish(ctx, "artifacts/a/chunk/0", chunk, false)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	fz.frozen.Store(true)
	frozen := time.Now()
	go func() { // an upload goes on, unaware
		for range 32 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			f.link.Publish(ctx, "artifacts/b/chunk/0", chunk, false)
			cancel()
		}
	}()
	deadline := frozen.Add(40 * time.Second)
	for f.link.Connected() {
		if time.Now().After(deadline) {
			t.Fatalf("the link still thinks it is connected %s after its packets stopped going anywhere", time.Since(frozen).Round(time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("dead connection noticed after %s", time.Since(frozen).Round(100*time.Millisecond))
	fz.frozen.Store(false)
	close(fz.thaw)
}
