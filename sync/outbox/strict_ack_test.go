package outbox

import (
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// TestP4_LooseAcksAreNotSuccess: encoding/json matches {"OK":true} to ok
// and keeps the last of {"ok":false,"ok":true}; the cloud meant neither as
// a success, and the device must keep the artifact until a real ok ack.
func TestP4_LooseAcksAreNotSuccess(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(func(c *Config) { c.AckTimeout = time.Hour })
	cl := newCloud(t, b)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindSighting, randBytes(1500))
	runOutbox(t, o, l)
	cl.waitDelivered(m.ID, 1)

	for _, p := range []string{`{"OK":true}`, `{"Ok":true}`, `{"ok":false,"ok":true}`, `{"ok":true,"ok":true}`, `{"ok":true,"reason":"a","reason":"b"}`} {
		cl.sendAck(m.ID, p)
	}
	// A marker artifact acked properly shows the loose acks were processed.
	m2 := enqueue(t, o, policy.KindSighting, randBytes(100))
	cl.waitDelivered(m2.ID, 1)
	cl.sendAck(m2.ID, `{"ok":true}`)
	e.waitAcked(m2.ID)
	if got := o.List(); len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("a loose ack was taken as success: queue %+v", got)
	}
	o.mu.Lock()
	_, taken := o.acks[m.ID]
	o.mu.Unlock()
	if taken {
		t.Fatal("a loose ack was recorded for the artifact")
	}
	cl.sendAck(m.ID, `{"ok":true}`)
	e.waitAcked(m.ID)
}
