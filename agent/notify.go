package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"
)

// eventTypes is every event the daemon raises: the one list of them
// (docs/PROTOCOL.md follows it, and a test checks that every event the
// code builds is here). notify and durableEventTx refuse any other.
var eventTypes = []string{
	"cap_reached", "selection_done", "selection_failed",
	"enrollment_completed", "enrollment_failed", "enrollment_needed",
	"consent_revoked", "erase_request",
	"firmware_need", "firmware_staged", "firmware_rejected",
}

// knownEvent refuses, with an error line, an event of a type not listed.
func (d *Daemon) knownEvent(ev map[string]any) bool {
	typ, _ := ev["type"].(string)
	if !slices.Contains(eventTypes, typ) {
		d.log.Error("event of a type not in eventTypes not raised", "type", typ)
		return false
	}
	return true
}

// notifyQueue bounds the notifications waiting for the broker. They are
// notifications (what must reach the cloud goes through the durable
// events queue): past this many, the newest are dropped and logged.
const notifyQueue = 256

// newEventID is a random id, the same on every resend of one event, so
// the cloud can deduplicate the repeats at-least-once delivery allows.
func newEventID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// notify queues an event for the cloud. Events are published in the order
// they were raised, one at a time, by runNotifier; a notification that
// finds the broker away is logged and lost.
func (d *Daemon) notify(ev map[string]any) {
	if !d.knownEvent(ev) {
		return
	}
	if _, ok := ev["event_id"]; !ok {
		ev["event_id"] = newEventID()
	}
	if _, ok := ev["at"]; !ok {
		ev["at"] = d.now().UTC().Format(time.RFC3339)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		d.log.Error("event not encodable", "type", ev["type"], "err", err)
		return
	}
	select {
	case d.notifications <- raw:
	default:
		d.log.Warn("event dropped: too many wait for the broker", "type", ev["type"], "waiting", notifyQueue)
	}
}

// runNotifier publishes queued notifications in order until ctx ends.
func (d *Daemon) runNotifier(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case raw := <-d.notifications:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := d.link.PublishEvent(pctx, raw)
			cancel()
			if err != nil && ctx.Err() == nil {
				var ev struct {
					Type string `json:"type"`
				}
				_ = json.Unmarshal(raw, &ev)
				d.log.Warn("event not published", "type", ev.Type, "err", err)
			}
		}
	}
}
