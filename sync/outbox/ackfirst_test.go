package outbox

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// latePUBACK is the link as a broker that delivers before it acknowledges
// (RabbitMQ): every message is published for real, but the publish of an
// artifact's last chunk returns only once arrived says the cloud's ack is
// in (or its context ends): the PUBACK was still on its way while the
// cloud, which already had the whole artifact, acked it.
type latePUBACK struct {
	Publisher
	last    string
	arrived func() bool
}

func (p latePUBACK) Publish(ctx context.Context, suffix string, payload []byte, retained bool) error {
	if err := p.Publisher.Publish(ctx, suffix, payload, retained); err != nil {
		return err
	}
	if !strings.HasSuffix(suffix, p.last) {
		return nil
	}
	for !p.arrived() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// An ok ack that arrives before the last chunk's PUBACK ends a complete
// send once that PUBACK comes: it is counted and logged as sent (make
// test-rabbitmq found uploads acked with no attempt counted and no
// "artifact sent" line).
func TestAnAckBeforeTheLastPUBACKCountsACompleteSend(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(nil)
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindPhoto, randBytes(3*1024+100)) // 4 chunks of 1 KiB
	ackIn := func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		it := o.items[m.ID]
		return it != nil && it.deferredOK
	}
	runOutbox(t, o, latePUBACK{Publisher: l, last: "/chunk/3", arrived: ackIn})
	e.waitAcked(m.ID)
	e.waitUntil("the send counted and logged", func() bool {
		return o.Stats()[StatSent][policy.KindPhoto] == 1 && strings.Contains(e.logs.String(), `msg="artifact sent" artifact_id=`+m.ID)
	})
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.acked) != 1 {
		t.Fatalf("%d artifacts acked, want 1", len(e.acked))
	}
}
