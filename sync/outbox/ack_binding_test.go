package outbox

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// heldWhile configures an outbox whose MaySend holds everything while hold
// is set, and that waits an hour for acks.
func heldWhile(hold *atomic.Bool) func(*Config) {
	return func(c *Config) {
		c.AckTimeout = time.Hour
		c.MaySend = func(Meta) policy.Verdict {
			if hold.Load() {
				return policy.Hold
			}
			return policy.Send
		}
	}
}

// TestP4_AnAckCountsOnlyForWhatWasPublished (issue 22 item 9): any
// {"ok":true} on artifacts/{aid}/ack for a known artifact used to delete
// the local copy, even before it was first published. An ok ack now
// counts only for an artifact published in full since the daemon started
// (or queued by an earlier run and being resent), and, when it names the
// content's sha256, only for that content.
func TestP4_AnAckCountsOnlyForWhatWasPublished(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	var hold atomic.Bool
	hold.Store(true)
	o := e.open(heldWhile(&hold))
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindPhoto, randBytes(3000))
	runOutbox(t, o, l)

	// Held: never published. A forged or early ack deletes nothing.
	cl.sendAck(m.ID, `{"ok":true}`)
	marker := func() { // an acked marker shows the ack before it was processed
		hold.Store(false)
		mk := enqueue(t, o, policy.KindInventory, randBytes(10))
		cl.waitDelivered(mk.ID, 1)
		cl.sendAck(mk.ID, `{"ok":true}`)
		e.waitAcked(mk.ID)
	}
	time.Sleep(200 * time.Millisecond)
	if cl.deliveries(m.ID) != 0 {
		t.Fatal("the held artifact was published: the test checks nothing")
	}
	hold.Store(false)
	o.Wake()
	cl.waitDelivered(m.ID, 1)
	if got := o.List(); len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("an ack sent before the first publish removed the artifact: queue %+v", got)
	}
	// Published: an ack for other content is ignored, the right one counts.
	other := map[byte]string{'0': "1"}[m.SHA256[0]]
	if other == "" {
		other = "0"
	}
	cl.sendAck(m.ID, `{"ok":true,"sha256":"`+other+m.SHA256[1:]+`"}`)
	marker()
	if got := o.List(); len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("an ack naming other content removed the artifact: queue %+v\n%s", got, e.logs.String())
	}
	cl.sendAck(m.ID, `{"ok":true,"sha256":"`+m.SHA256+`"}`)
	e.waitAcked(m.ID)
}

// An ack that arrives while the artifact is still being sent the first
// time counts once the send completes, never for a half-sent artifact.
func TestP4_AnAckDuringTheFirstSendCountsOnceItIsComplete(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) { c.AckTimeout = time.Hour })
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	runOutbox(t, o, l)
	m := enqueue(t, o, policy.KindPhoto, randBytes(300*1024)) // 300 chunks of 1 KiB
	// The cloud answers as soon as it has the manifest and a chunk.
	cl.waitFor("the first chunk", wait, func() bool { return len(cl.msgs) >= 2 })
	cl.sendAck(m.ID, `{"ok":true}`)
	e.waitAcked(m.ID)
	if got := cl.deliveries(m.ID); got != 1 {
		t.Fatalf("acked after %d complete deliveries, want the first one complete", got)
	}
}

// An ack for an artifact an earlier run queued (and may have published)
// counts while it is being resent, not before.
func TestP4_AnAckForAnEarlierRunsArtifactWaitsForItsResend(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	cl := newCloud(t, b)
	o := e.open(func(c *Config) { c.AckTimeout = time.Hour })
	l, stopLink := startLink(t, b)
	m := enqueue(t, o, policy.KindPhoto, randBytes(2000))
	stop := runOutbox(t, o, l)
	cl.waitDelivered(m.ID, 1)
	stop()
	stopLink()
	e.closeStore()

	e.openStore()
	var hold atomic.Bool
	hold.Store(true)
	o2 := e.open(heldWhile(&hold))
	l2, _ := startLink(t, b)
	runOutbox(t, o2, l2)
	cl.sendAck(m.ID, `{"ok":true}`)
	time.Sleep(300 * time.Millisecond)
	if got := o2.List(); len(got) != 1 {
		t.Fatalf("an ack before the resend removed the artifact: %+v", got)
	}
	hold.Store(false)
	o2.Wake()
	cl.waitDelivered(m.ID, 2)
	cl.sendAck(m.ID, `{"ok":true}`)
	e.waitAcked(m.ID)
}
