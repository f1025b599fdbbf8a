package outbox

import (
	"context"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"testing"
)

// FuzzAck feeds untrusted ack topics and payloads to a live outbox: nothing
// may panic, and a garbage ack must never acknowledge (and so delete) a
// queued artifact.
func FuzzAck(f *testing.F) {
	f.Add("aibo/dev-1/artifacts/ID/ack", []byte(`{"ok":true}`))
	f.Add("aibo/dev-1/artifacts/ID/ack", []byte(`{"ok":false,"reason":"disk full"}`))
	f.Add("aibo/dev-1/artifacts//ack", []byte(`{"ok":1}`))
	f.Add("artifacts/x/ack", []byte(`null`))
	f.Add("aibo/dev-1/artifacts/ID/ack/ack", []byte(`{"ok":"true"}`))
	f.Add("aibo/dev-1/artifacts/ID/ack", []byte(`{"OK":true}`))
	f.Add("aibo/dev-1/artifacts/ID/ack", []byte(`{"ok":false,"ok":true}`))
	e := newEnv(f)
	o := e.open(nil)
	m, err := o.Enqueue(context.Background(), Artifact{Kind: policy.KindInventory, Content: []byte("{}")})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		o.onAck(topic, payload)
		if len(payload) > 0 && payload[0] != '{' {
			o.mu.Lock()
			_, ok := o.acks[m.ID]
			o.mu.Unlock()
			if ok {
				t.Fatalf("a non-object ack %q was taken for %s", payload, m.ID)
			}
		}
	})
}
