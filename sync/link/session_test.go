package link

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// chunkFilter is what the daemon subscribes to for firmware chunks
// (firmware.Manager.ChunkTopic). Not firmware/+/chunk/+: RabbitMQ's MQTT
// plugin turns the dots of firmware/1.2.0/chunk/0 into level separators,
// so a version takes three levels there and a single + never matches.
const chunkFilter = "firmware/#"

// startSession runs a link once until its cmd subscription is live, so the
// broker holds a persistent session for the device, then stops it.
func startSession(t *testing.T, b *testbroker.Broker, subs ...string) {
	t.Helper()
	f := newFixture(t, Config{Broker: b.URL})
	for _, s := range subs {
		f.link.Subscribe(s, func(string, []byte) {})
	}
	stop := f.run(t)
	cloud := b.Client(t)
	waitCmdReady(t, cloud, cloud.Subscribe(t, topic("cmd/result")))
	waitConnected(t, f.link, true)
	stop()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestP5_CommandsQueuedWhileDownArriveOnReturn: the session is persistent,
// so QoS 1 commands (and messages on other subscriptions, such as firmware
// chunks) published while the daemon is stopped arrive, all and in order,
// when it returns, even though the broker delivers them right after
// CONNACK, before this connection has subscribed again.
func TestP5_CommandsQueuedWhileDownArriveOnReturn(t *testing.T) {
	b := testbroker.Start(t)
	startSession(t, b, chunkFilter)

	cloud := b.Client(t)
	var want []string
	for i := range 20 {
		p := fmt.Sprintf("queued-%02d", i)
		want = append(want, p)
		cloud.Publish(t, topic("cmd"), []byte(p), false)
	}
	cloud.Publish(t, topic("firmware/1.2.0/chunk/0"), []byte("chunk zero"), false)

	f := newFixture(t, Config{Broker: b.URL})
	// Subscribing late is what loses messages without routes made before
	// CONNACK: widen the gap so the test fails without them.
	f.link.beforeSubscribe = func() { time.Sleep(200 * time.Millisecond) }
	var chunks atomic.Int32
	f.link.Subscribe(chunkFilter, func(_ string, p []byte) {
		if string(p) == "chunk zero" {
			chunks.Add(1)
		}
	})
	f.run(t)
	waitFor(t, "the queued commands", func() bool { return len(f.cmds.commands()) >= len(want) })
	if got := f.cmds.commands(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("handler saw\n%v\nwant\n%v", got, want)
	}
	waitFor(t, "the queued chunk", func() bool { return chunks.Load() == 1 })
}

// TestAQueuedCommandsResultIsNotLostToTheConnectRace: a command the broker
// kept while the daemon was away arrives right after CONNACK, which can be
// before the link has taken its new session; its result must still reach
// the cloud (CI once lost one this way: the app never heard that a
// withdrawal was applied).
func TestAQueuedCommandsResultIsNotLostToTheConnectRace(t *testing.T) {
	b := testbroker.Start(t)
	startSession(t, b)
	cloud := b.Client(t)
	results := cloud.Subscribe(t, topic("cmd/result"))
	cloud.Publish(t, topic("cmd"), []byte("while-away"), false)

	f := newFixture(t, Config{Broker: b.URL})
	f.link.beforeSession = func() { time.Sleep(300 * time.Millisecond) }
	f.run(t)
	results.WaitFor(t, wait, func(m testbroker.Message) bool { return string(m.Payload) == "result:while-away" })
}

// TestP5_ACommandNotYetHandledIsDeliveredAgain: a command is acknowledged
// to the broker only once its handler has returned, so one that was
// received but not handled when the connection died (or the process) is
// delivered again on the next connection. (The dispatcher's id memory
// turns the second delivery into the stored result.)
func TestP5_ACommandNotYetHandledIsDeliveredAgain(t *testing.T) {
	b := testbroker.Start(t)
	rec := &cmdRecorder{}
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	handler := func(ctx context.Context, p []byte) []byte {
		if string(p) == "hold-1" && calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return rec.handle(ctx, p)
	}
	f := newFixture(t, Config{Broker: b.URL})
	l, err := New(f.link.cfg, handler)
	if err != nil {
		t.Fatal(err)
	}
	f.link = l
	cut := &cutter{}
	l.openConn = cut.open
	f.run(t)
	cloud := b.Client(t)
	waitCmdReady(t, cloud, cloud.Subscribe(t, topic("cmd/result")))

	cloud.Publish(t, topic("cmd"), []byte("hold-1"), false)
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("command never reached the handler")
	}
	// Long enough for a PUBACK sent on receipt to reach the broker: the
	// test must fail if the link acknowledged before handling.
	time.Sleep(200 * time.Millisecond)
	cut.cut() // the connection dies while the command is being handled
	waitConnected(t, l, false)
	close(release)
	cut.restore()
	waitFor(t, "the second delivery", func() bool { return calls.Load() >= 2 })
	time.Sleep(200 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("hold-1 handled %d times, want 2 (once per delivery)", n)
	}
}

// TestOversizedMessagesAreNotQueued: the size is checked in paho's
// callback; an oversized command is answered from a bounded prefix, an
// oversized message is dropped, and both are acknowledged so the broker
// does not deliver them again.
func TestOversizedMessagesAreNotQueued(t *testing.T) {
	b := testbroker.Start(t)
	type big struct {
		prefix, size int
		start        string
	}
	var mu sync.Mutex
	var oversized []big
	f := newFixture(t, Config{Broker: b.URL, MaxCommandBytes: 100 << 10, MaxMessageBytes: 1 << 10,
		Oversized: func(_ context.Context, prefix []byte, size int) []byte {
			mu.Lock()
			defer mu.Unlock()
			oversized = append(oversized, big{len(prefix), size, string(prefix[:12])})
			return []byte("too big")
		}})
	var small atomic.Int32
	f.link.Subscribe(chunkFilter, func(_ string, p []byte) {
		if len(p) > 1<<10 {
			t.Errorf("handler got %d bytes over the limit", len(p))
		}
		small.Add(1)
	})
	cut := &cutter{}
	f.link.openConn = cut.open
	f.run(t)
	cloud := b.Client(t)
	results := cloud.Subscribe(t, topic("cmd/result"))
	waitCmdReady(t, cloud, results)

	cloud.Publish(t, topic("cmd"), []byte(`{"id":"huge"}`+strings.Repeat(" ", 200<<10)), false)
	cloud.Publish(t, topic("firmware/1.0.1/chunk/0"), make([]byte, 2<<10), false)
	cloud.Publish(t, topic("firmware/1.0.1/chunk/1"), make([]byte, 512), false)
	results.WaitFor(t, wait, isPayload("too big"))
	waitFor(t, "the small chunk", func() bool { return small.Load() == 1 })
	for _, c := range f.cmds.commands() {
		if strings.HasPrefix(c, `{"id":"huge"}`) {
			t.Fatal("the oversized command reached the command handler")
		}
	}
	mu.Lock()
	got := append([]big(nil), oversized...)
	mu.Unlock()
	if len(got) != 1 || got[0].size != len(`{"id":"huge"}`)+200<<10 || got[0].prefix != oversizedPrefix || got[0].start != `{"id":"huge"` {
		t.Fatalf("Oversized got %+v", got)
	}
	if !strings.Contains(f.logs.String(), "over the size limit dropped") {
		t.Fatal("no log line for the oversized chunk")
	}

	// Acknowledged: a new connection brings neither back. (The small
	// chunk's PUBACK follows its handler; give it time to leave.)
	time.Sleep(200 * time.Millisecond)
	cut.cut()
	waitConnected(t, f.link, false)
	cut.restore()
	waitConnected(t, f.link, true)
	waitCmdReady(t, cloud, results)
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	n := len(oversized)
	mu.Unlock()
	if n != 1 || small.Load() != 1 {
		t.Fatalf("after reconnecting: %d oversized commands, %d chunks; want 1 and 1", n, small.Load())
	}
}

// TestMessagesOnAForgottenSubscriptionAreDropped: a subscription that the
// persistent session still holds but no handler wants any more is
// acknowledged and dropped, once, not delivered forever.
func TestMessagesOnAForgottenSubscriptionAreDropped(t *testing.T) {
	b := testbroker.Start(t)
	startSession(t, b, "old/+")
	cloud := b.Client(t)
	cloud.Publish(t, topic("old/x"), []byte("left over"), false)

	f := newFixture(t, Config{Broker: b.URL})
	cut := &cutter{}
	f.link.openConn = cut.open
	f.run(t)
	waitFor(t, "the unhandled-topic log line", func() bool { return strings.Contains(f.logs.String(), "unhandled topic") })
	cut.cut()
	waitConnected(t, f.link, false)
	cut.restore()
	waitConnected(t, f.link, true)
	waitCmdReady(t, cloud, cloud.Subscribe(t, topic("cmd/result")))
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(f.logs.String(), "unhandled topic"); n != 1 {
		t.Fatalf("the left-over message came %d times", n)
	}
}

func TestQueueByteBudget(t *testing.T) {
	l := &Link{}
	q := make(chan inbound, 10)
	var queued atomic.Int64
	big := inbound{payload: make([]byte, 600)}
	if !l.enqueue(q, &queued, 1000, big) {
		t.Fatal("an empty queue refused a message")
	}
	if l.enqueue(q, &queued, 1000, big) {
		t.Fatal("the budget let 1200 bytes wait")
	}
	if !l.enqueue(q, &queued, 1000, inbound{payload: make([]byte, 400)}) {
		t.Fatal("a message within the budget was refused")
	}
	if queued.Load() != 1000 || len(q) != 2 {
		t.Fatalf("queued %d bytes in %d messages", queued.Load(), len(q))
	}
	// A message larger than the whole budget still passes an empty queue.
	l2 := &Link{}
	var q2n atomic.Int64
	if !l2.enqueue(make(chan inbound, 1), &q2n, 1000, inbound{payload: make([]byte, 5000)}) {
		t.Fatal("a large message could never pass")
	}
}
