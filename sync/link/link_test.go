package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
	"github.com/aibo-privacy/aibo-privacyd/internal/testlog"
)

const (
	dev     = "aibo-test-1"
	wait    = 5 * time.Second
	pingPfx = "ping-"
)

func topic(suffix string) string { return "aibo/" + dev + "/" + suffix }

type fixture struct {
	link *Link
	logs *testlog.Buffer
	cmds *cmdRecorder
}

// cmdRecorder is a CommandHandler: "ping-N" answers "pong-N" (used to wait
// until the cmd subscription is live), "silent-*" answers nothing, anything
// else is recorded and answered "result:"+payload.
type cmdRecorder struct {
	mu      sync.Mutex
	got     []string
	active  atomic.Int32
	overlap atomic.Bool
}

func (r *cmdRecorder) handle(_ context.Context, p []byte) []byte {
	if r.active.Add(1) > 1 {
		r.overlap.Store(true)
	}
	defer r.active.Add(-1)
	s := string(p)
	if rest, ok := strings.CutPrefix(s, pingPfx); ok {
		return []byte("pong-" + rest)
	}
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
	time.Sleep(2 * time.Millisecond) // widen the window for overlapping calls
	if strings.HasPrefix(s, "silent-") {
		return nil
	}
	return []byte("result:" + s)
}

func (r *cmdRecorder) commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{logs: &testlog.Buffer{}, cmds: &cmdRecorder{}}
	cfg.DeviceID = dev
	cfg.Logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 20 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 200 * time.Millisecond
	}
	l, err := New(cfg, f.cmds.handle)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.link = l
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("link logs:\n%s", f.logs.String())
		}
	})
	return f
}

// run starts Run and returns a stop function that cancels it and waits for
// Run to return nil (also called at cleanup).
func (f *fixture) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.link.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(wait):
				t.Errorf("Run did not return within %v of cancel", wait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitConnected(t *testing.T, l *Link, want bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for l.Connected() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Connected() did not become %v within %v", want, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitCmdReady publishes pings on cmd until one is answered, proving the
// link's cmd subscription is live. results must be subscribed to cmd/result.
func waitCmdReady(t *testing.T, cloud *testbroker.Client, results *testbroker.Sub) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		cloud.Publish(t, topic("cmd"), fmt.Appendf(nil, "%s%d", pingPfx, i), false)
		got := make(chan bool, 1)
		go func() {
			// Poll All() without failing the test from this goroutine.
			end := time.Now().Add(100 * time.Millisecond)
			for time.Now().Before(end) {
				for _, m := range results.All() {
					if strings.HasPrefix(string(m.Payload), "pong-") {
						got <- true
						return
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			got <- false
		}()
		if <-got {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cmd subscription not live within %v", wait)
		}
	}
}

func isPayload(s string) func(testbroker.Message) bool {
	return func(m testbroker.Message) bool { return string(m.Payload) == s }
}

func nextRetained(t *testing.T, b *testbroker.Broker, filter string) testbroker.Message {
	t.Helper()
	m := b.Client(t).Subscribe(t, filter).Next(t, wait)
	if !m.Retained {
		t.Fatalf("%s: got %q not retained", filter, m.Payload)
	}
	return m
}

func TestOnlineAndStateRetained(t *testing.T) {
	b := testbroker.Start(t)
	f := newFixture(t, Config{Broker: b.URL})
	f.link.SetState([]byte(`{"v":1}`))
	f.run(t)
	waitConnected(t, f.link, true)

	b.Client(t).Subscribe(t, topic("status")).WaitFor(t, wait, isPayload("online"))
	b.Client(t).Subscribe(t, topic("state")).WaitFor(t, wait, isPayload(`{"v":1}`))

	// A subscriber joining later gets both, retained.
	if m := nextRetained(t, b, topic("status")); string(m.Payload) != "online" {
		t.Fatalf("retained status = %q", m.Payload)
	}
	if m := nextRetained(t, b, topic("state")); string(m.Payload) != `{"v":1}` {
		t.Fatalf("retained state = %q", m.Payload)
	}

	// State set while connected is published now, and retained.
	live := b.Client(t).Subscribe(t, topic("state"))
	buf := []byte(`{"v":2}`)
	f.link.SetState(buf)
	copy(buf, "XXXXXXX") // SetState must have copied
	for i := 3; i <= 10; i++ {
		f.link.SetState(fmt.Appendf(nil, `{"v":%d}`, i))
	}
	live.WaitFor(t, wait, isPayload(`{"v":10}`))
	if m := nextRetained(t, b, topic("state")); string(m.Payload) != `{"v":10}` {
		t.Fatalf("retained state after SetState = %q, want the latest", m.Payload)
	}
	for _, m := range live.All() {
		if strings.Contains(string(m.Payload), "XXX") {
			t.Fatalf("state buffer was not copied: %q", m.Payload)
		}
	}

	// Events.
	events := b.Client(t).Subscribe(t, topic("events"))
	if err := f.link.PublishEvent(context.Background(), []byte(`{"type":"cap_reached"}`)); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	if m := events.Next(t, wait); m.Retained || string(m.Payload) != `{"type":"cap_reached"}` {
		t.Fatalf("event = %+v", m)
	}
}

// cutter dials the broker itself so the test can cut the network abruptly.
type cutter struct {
	mu     sync.Mutex
	conns  []*cutConn
	refuse bool
}

// cutConn reports a cut connection as a reset: paho deliberately ignores
// "use of closed network connection" errors (it assumes it closed the
// connection itself), so a plain Close would go unnoticed until keepalive.
type cutConn struct {
	net.Conn
	cut chan struct{}

	// stalled, once closed, makes Write hang until the connection is
	// closed: a Wi-Fi link that stops carrying packets without ending.
	stalled   chan struct{}
	stallOnce sync.Once
	closed    chan struct{}
	closeOnce sync.Once
}

var errReset = errors.New("connection reset (cut by test)")

func (c *cutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	return n, c.mapErr(err)
}

func (c *cutConn) Write(p []byte) (int, error) {
	select {
	case <-c.stalled:
		<-c.closed
		return 0, errReset
	default:
	}
	n, err := c.Conn.Write(p)
	return n, c.mapErr(err)
}

func (c *cutConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *cutConn) mapErr(err error) error {
	if err != nil {
		select {
		case <-c.cut:
			return errReset
		default:
		}
	}
	return err
}

func (c *cutter) open(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return nil, errors.New("network cut by test")
	}
	conn, err := net.DialTimeout("tcp", uri.Host, time.Second)
	if err != nil {
		return nil, err
	}
	cc := &cutConn{Conn: conn, cut: make(chan struct{}), stalled: make(chan struct{}), closed: make(chan struct{})}
	c.conns = append(c.conns, cc)
	return cc, nil
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = true
	for _, conn := range c.conns {
		close(conn.cut)
		conn.Conn.Close()
	}
	c.conns = nil
}

// stall makes the open connections' writes hang (cutConn.stalled).
func (c *cutter) stall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.stallOnce.Do(func() { close(conn.stalled) })
	}
}

func (c *cutter) restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = false
}

func TestLastWillOnAbruptDisconnect(t *testing.T) {
	b := testbroker.Start(t)
	f := newFixture(t, Config{Broker: b.URL})
	cut := &cutter{}
	f.link.openConn = cut.open
	f.run(t)

	status := b.Client(t).Subscribe(t, topic("status"))
	status.WaitFor(t, wait, isPayload("online"))

	cut.cut()
	status.WaitFor(t, wait, isPayload("offline"))
	if m := nextRetained(t, b, topic("status")); string(m.Payload) != "offline" {
		t.Fatalf("retained status after abrupt disconnect = %q", m.Payload)
	}
	waitConnected(t, f.link, false)
	if !strings.Contains(f.logs.String(), "connect failed") {
		// Run keeps retrying while the network is down.
		time.Sleep(300 * time.Millisecond)
		if !strings.Contains(f.logs.String(), "connect failed") {
			t.Fatal("no reconnect attempts logged after the cut")
		}
	}

	// When the network comes back the link reconnects on its own.
	cut.restore()
	status.WaitFor(t, wait, isPayload("online"))
	waitConnected(t, f.link, true)
}

// A connection that stalls right after CONNACK, while the link is still
// handing its status and subscriptions to paho, holds each of those calls
// for paho's write timeout (opTimeout, 10 s). Shutdown must not wait for
// them: systemd stops the daemon with SIGKILL after TimeoutStopSec (10 s).
func TestShutdownIsNotHeldByAConnectionThatStallsWhileSubscribing(t *testing.T) {
	b := testbroker.Start(t)
	f := newFixture(t, Config{Broker: b.URL})
	cut := &cutter{}
	f.link.openConn = cut.open
	// Enough subscriptions that paho's hand-over fills behind the hung
	// writer and one Subscribe waits there.
	for _, suffix := range []string{"config", "firmware/+", "artifacts/+/ack"} {
		f.link.Subscribe(suffix, func(string, []byte) {})
	}
	stalled := make(chan struct{})
	var once sync.Once
	f.link.beforeSubscribe = func() {
		once.Do(func() {
			cut.stall()
			close(stalled)
		})
	}
	stop := f.run(t)
	select {
	case <-stalled:
	case <-time.After(wait):
		t.Fatal("the link never connected")
	}
	// Let afterConnect reach paho: its status publish takes the writer,
	// which hangs, and the first Subscribe waits behind it.
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	stop()
	// offlineWait for afterConnect, offlineWait for "offline", quiesce
	// (2.25 s), and room for a loaded machine: far under paho's 10 s.
	if d, bound := time.Since(start), 2*offlineWait+2*time.Second; d > bound {
		t.Fatalf("shutdown took %v with the connection stalled, want under %v", d.Round(time.Millisecond), bound)
	}
}

func TestCleanShutdownLeavesOffline(t *testing.T) {
	b := testbroker.Start(t)
	f := newFixture(t, Config{Broker: b.URL})
	stop := f.run(t)
	status := b.Client(t).Subscribe(t, topic("status"))
	status.WaitFor(t, wait, isPayload("online"))

	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if f.link.Connected() {
		t.Fatal("Connected() after Run returned")
	}
	if m := nextRetained(t, b, topic("status")); string(m.Payload) != "offline" {
		t.Fatalf("retained status after clean shutdown = %q", m.Payload)
	}
	if err := f.link.Publish(context.Background(), "events", []byte("x"), false); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish after shutdown: %v, want ErrNotConnected", err)
	}
}

func TestCommandsInOrderWithResults(t *testing.T) {
	b := testbroker.Start(t)
	f := newFixture(t, Config{Broker: b.URL})
	f.run(t)
	cloud := b.Client(t)
	results := cloud.Subscribe(t, topic("cmd/result"))
	waitCmdReady(t, cloud, results)

	const secret = "SECRET-PERSONAL-DATA"
	var want []string
	for i := range 30 {
		p := fmt.Sprintf("c%02d-%s", i, secret)
		if i%10 == 5 {
			p = fmt.Sprintf("silent-%02d", i)
		}
		want = append(want, p)
		cloud.Publish(t, topic("cmd"), []byte(p), false)
	}
	for _, p := range want {
		if strings.HasPrefix(p, "silent-") {
			continue
		}
		m := results.WaitFor(t, wait, func(m testbroker.Message) bool {
			return !strings.HasPrefix(string(m.Payload), "pong-")
		})
		if string(m.Payload) != "result:"+p || m.Retained {
			t.Fatalf("result = %q (retained %v), want %q", m.Payload, m.Retained, "result:"+p)
		}
	}
	got := f.cmds.commands()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("handler saw\n%v\nwant\n%v", got, want)
	}
	if f.cmds.overlap.Load() {
		t.Fatal("handler was called concurrently")
	}
	if strings.Contains(f.logs.String(), secret) {
		t.Fatal("a command payload was logged")
	}
}

func TestSubscribe(t *testing.T) {
	b := testbroker.Start(t)
	f := newFixture(t, Config{Broker: b.URL})
	type msg struct{ topic, payload string }
	got := make(chan msg, 100)
	h := func(topic string, payload []byte) { got <- msg{topic, string(payload)} }
	f.link.Subscribe("artifacts/+/ack", h)
	f.run(t)
	waitConnected(t, f.link, true)
	cloud := b.Client(t)

	// expect publishes on topic until h sees it (the subscription is made
	// asynchronously on connect).
	expect := func(tp, payload string) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			cloud.Publish(t, tp, []byte(payload), false)
			select {
			case m := <-got:
				if m.topic != tp || m.payload != payload {
					t.Fatalf("handler got %+v, want %s %s", m, tp, payload)
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("nothing received on %s", tp)
			}
		}
	}
	expect(topic("artifacts/a1/ack"), `{"ok": true}`)

	// Registered while connected: subscribed right away.
	f.link.Subscribe("extra", h)
	expect(topic("extra"), "x")
	for len(got) > 0 { // drop duplicates from the retries
		<-got
	}
}

func TestReconnectAfterBrokerRestart(t *testing.T) {
	b := testbroker.Start(t)
	f := newFixture(t, Config{Broker: b.URL})
	var mu sync.Mutex
	var changes []bool
	f.link.OnConnectionChange(func(c bool) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	})
	f.link.SetState([]byte(`{"s":1}`))
	f.run(t)
	cloud := b.Client(t)
	waitCmdReady(t, cloud, cloud.Subscribe(t, topic("cmd/result")))

	b.Stop()
	waitConnected(t, f.link, false)
	start := time.Now()
	err := f.link.Publish(context.Background(), "events", []byte("{}"), false)
	if !errors.Is(err, ErrNotConnected) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("Publish while broker down: %v after %v", err, time.Since(start))
	}
	f.link.SetState([]byte(`{"s":2}`)) // while down: published on reconnect
	time.Sleep(300 * time.Millisecond) // let a few reconnect attempts fail

	b.Restart(t) // persistence off: the broker lost every retained message
	waitConnected(t, f.link, true)
	b.Client(t).Subscribe(t, topic("status")).WaitFor(t, wait, isPayload("online"))
	b.Client(t).Subscribe(t, topic("state")).WaitFor(t, wait, isPayload(`{"s":2}`))
	if m := nextRetained(t, b, topic("status")); string(m.Payload) != "online" {
		t.Fatalf("retained status after reconnect = %q", m.Payload)
	}
	if m := nextRetained(t, b, topic("state")); string(m.Payload) != `{"s":2}` {
		t.Fatalf("retained state after reconnect = %q", m.Payload)
	}

	cloud = b.Client(t)
	results := cloud.Subscribe(t, topic("cmd/result"))
	waitCmdReady(t, cloud, results)
	cloud.Publish(t, topic("cmd"), []byte("after-restart"), false)
	results.WaitFor(t, wait, isPayload("result:after-restart"))
	if err := f.link.PublishEvent(context.Background(), []byte("{}")); err != nil {
		t.Fatalf("PublishEvent after reconnect: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(changes) != "[true false true]" {
		t.Fatalf("connection changes = %v", changes)
	}
}

func TestTLS(t *testing.T) {
	b := testbroker.StartTLS(t)
	f := newFixture(t, Config{
		Broker: b.URL,
		TLS:    TLSConfig{CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile},
	})
	f.run(t)
	waitConnected(t, f.link, true)
	cloud := b.Client(t)
	results := cloud.Subscribe(t, topic("cmd/result"))
	waitCmdReady(t, cloud, results)
	cloud.Publish(t, topic("cmd"), []byte("over-tls"), false)
	results.WaitFor(t, wait, isPayload("result:over-tls"))
}

func TestTLSWrongCA(t *testing.T) {
	b := testbroker.StartTLS(t)
	other := testbroker.StartTLS(t) // its CA did not sign b's server certificate
	f := newFixture(t, Config{
		Broker: b.URL,
		TLS:    TLSConfig{CAFile: other.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile},
	})
	stop := f.run(t)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if f.link.Connected() {
			t.Fatal("connected to a broker whose certificate is not signed by the configured CA")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(f.logs.String(), "mqtt connect failed"); n < 2 {
		t.Fatalf("want Run to keep retrying, saw %d failed attempts", n)
	}
	if !strings.Contains(f.logs.String(), "certificate") {
		t.Fatalf("connect errors do not mention the certificate:\n%s", f.logs.String())
	}
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Run took %v to stop while retrying", d)
	}
}

func TestPublishWhileDisconnected(t *testing.T) {
	// Nothing listens on this port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f := newFixture(t, Config{Broker: "tcp://" + addr})

	check := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		start := time.Now()
		err := f.link.Publish(ctx, "artifacts/x/meta", []byte("{}"), false)
		if !errors.Is(err, ErrNotConnected) {
			t.Fatalf("Publish: %v, want ErrNotConnected", err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("Publish took %v to fail", d)
		}
		if err := f.link.PublishEvent(ctx, []byte("{}")); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("PublishEvent: %v, want ErrNotConnected", err)
		}
	}
	check() // before Run
	f.run(t)
	time.Sleep(200 * time.Millisecond) // Run is retrying
	check()
	if f.link.Connected() {
		t.Fatal("Connected() with no broker")
	}
	f.link.SetState([]byte("{}")) // must not block while disconnected
	if err := f.link.Publish(context.Background(), "a/+/b", nil, false); err == nil {
		t.Fatal("Publish accepted a wildcard topic")
	}
}

func TestRunTwice(t *testing.T) {
	f := newFixture(t, Config{Broker: "tcp://127.0.0.1:1"})
	f.run(t)
	time.Sleep(20 * time.Millisecond)
	if err := f.link.Run(context.Background()); err == nil {
		t.Fatal("second Run returned nil")
	}
}

func TestNewValidation(t *testing.T) {
	b := testbroker.StartTLS(t) // for real PEM files
	h := func(context.Context, []byte) []byte { return nil }
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad device id", Config{DeviceID: "a/b", Broker: "tcp://h:1"}, "device_id"},
		{"empty device id", Config{Broker: "tcp://h:1"}, "device_id"},
		{"bad scheme", Config{DeviceID: "d", Broker: "http://h:1"}, "scheme"},
		{"no port", Config{DeviceID: "d", Broker: "tcp://h"}, "host:port"},
		{"ssl without ca", Config{DeviceID: "d", Broker: "ssl://h:1"}, "mqtt tls: ca_file is required"},
		{"missing ca", Config{DeviceID: "d", Broker: "ssl://h:1", TLS: TLSConfig{CAFile: "/nonexistent/ca.pem"}}, "mqtt tls: read ca_file"},
		{"ca not pem", Config{DeviceID: "d", Broker: "ssl://h:1", TLS: TLSConfig{CAFile: b.KeyFile}}, "no PEM certificate"},
		{"cert without key", Config{DeviceID: "d", Broker: "ssl://h:1", TLS: TLSConfig{CAFile: b.CAFile, CertFile: b.CertFile}}, "together"},
		{"missing cert", Config{DeviceID: "d", Broker: "ssl://h:1", TLS: TLSConfig{CAFile: b.CAFile, CertFile: "/nonexistent", KeyFile: b.KeyFile}}, "mqtt tls: read cert_file"},
		{"mismatched pair", Config{DeviceID: "d", Broker: "ssl://h:1", TLS: TLSConfig{CAFile: b.CAFile, CertFile: b.CAFile, KeyFile: b.KeyFile}}, "mqtt tls: load cert_file/key_file"},
		{"tls files with tcp", Config{DeviceID: "d", Broker: "tcp://h:1", TLS: TLSConfig{CAFile: b.CAFile}}, "not ssl://"},
		{"negative backoff", Config{DeviceID: "d", Broker: "tcp://h:1", MinBackoff: -1}, "backoff"},
	}
	for _, c := range cases {
		_, err := New(c.cfg, h)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want containing %q", c.name, err, c.want)
		}
	}
	if _, err := New(Config{DeviceID: "d", Broker: "tcp://h:1"}, nil); err == nil {
		t.Error("nil handler accepted")
	}

	l, err := New(Config{DeviceID: "aibo-0001", Broker: "tcp://127.0.0.1:1883"}, h)
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.ClientID != "aibo-privacyd-aibo-0001" || l.cfg.MinBackoff != defaultMinBackoff || l.cfg.MaxBackoff != defaultMaxBackoff {
		t.Fatalf("defaults: %+v", l.cfg)
	}
	if _, err := New(Config{DeviceID: "d", Broker: b.URL, TLS: TLSConfig{CAFile: b.CAFile}}, h); err != nil {
		t.Fatalf("CA only: %v", err)
	}
}
