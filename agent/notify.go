package agent

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/sync/events"
)

// eventTypes is every event the daemon raises: the one list of them
// (docs/PROTOCOL.md follows it, and a test checks that every event the
// code builds is here). eventTx refuses any other.
var eventTypes = []string{
	"cap_reached", "selection_done", "selection_failed",
	"enrollment_completed", "enrollment_failed", "enrollment_needed",
	"consent_revoked", "erase_request",
	"firmware_need", "firmware_staged", "firmware_rejected",
}

// Events have one path (contract section 5, v3): each is appended to the
// durable queue (sync/events) in the transaction of the decision it
// reports, published at QoS 1 in the order raised, and dropped only once
// the broker acknowledged it (PUBACK), across restarts and outages. An
// event no decision commits (a selection that failed, a firmware download
// asking for chunks) gets a transaction of its own.

// newEventID is a random id, the same on every resend of one event, so
// the cloud can deduplicate the repeats at-least-once delivery allows.
func newEventID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// eventTx raises ev in tx: it gets its event_id and time and is queued;
// it is published once tx commits (never if tx rolls back). An event of a
// type not in eventTypes is an error: the cloud could not know it.
func (d *Daemon) eventTx(tx *bolt.Tx, now time.Time, ev map[string]any) error {
	if typ, _ := ev["type"].(string); !slices.Contains(eventTypes, typ) {
		return fmt.Errorf("event type %q is not one the daemon raises (eventTypes)", typ)
	}
	ev["event_id"] = newEventID()
	ev["at"] = now.UTC().Format(time.RFC3339)
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	switch err := d.events.Add(tx, raw); {
	case errors.Is(err, events.ErrFull):
		// Only erase requests wait, events.MaxPending of them: the
		// decision itself never waits on the cloud.
		d.log.Error("event not kept: too many erase requests wait for the broker", "type", ev["type"], "pending", events.MaxPending)
		return nil
	case err != nil:
		return err
	}
	tx.OnCommit(d.events.Wake)
	return nil
}

// event raises ev in a transaction of its own.
func (d *Daemon) event(ev map[string]any) {
	if err := d.st.Update(func(tx *bolt.Tx) error { return d.eventTx(tx, d.now(), ev) }); err != nil {
		d.log.Error("event not kept", "type", ev["type"], "err", err)
	}
}
