package outbox

import (
	"context"
	"strings"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// latePUBACK is the link as a broker that delivers before it acknowledges
// (RabbitMQ): every message is published for real, but the publish of an
// artifact's last chunk returns only when its context ends, as when the
// PUBACK is still on its way while the cloud, which already has the whole
// artifact, acks it.
type latePUBACK struct {
	Publisher
	last string
}

func (p latePUBACK) Publish(ctx context.Context, suffix string, payload []byte, retained bool) error {
	if err := p.Publisher.Publish(ctx, suffix, payload, retained); err != nil {
		return err
	}
	if strings.HasSuffix(suffix, p.last) {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// An ok ack that arrives before the last chunk's PUBACK ends a complete
// send: it is counted and logged as sent (make test-rabbitmq found
// uploads acked with no attempt counted and no "artifact sent" line).
func TestAnAckBeforeTheLastPUBACKCountsACompleteSend(t *testing.T) {
	b := testbroker.Start(t)
	e := newEnv(t)
	o := e.open(nil)
	cl := newCloud(t, b)
	cl.autoAck(`{"ok":true}`)
	l, _ := startLink(t, b)
	m := enqueue(t, o, policy.KindPhoto, randBytes(3*1024+100)) // 4 chunks of 1 KiB
	runOutbox(t, o, latePUBACK{Publisher: l, last: "/chunk/3"})
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
