package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// eventsPending is what aiboctl queue says waits for the broker.
func eventsPending(t *testing.T, r *rig) int {
	t.Helper()
	out, code := r.ctl("queue", "--json")
	var q struct {
		EventsPending int `json:"events_pending"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &q) != nil {
		t.Fatalf("aiboctl queue: exit %d: %s", code, out)
	}
	return q.EventsPending
}

func waitEventsPending(t *testing.T, r *rig, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if eventsPending(t, r) == n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d events pending, want %d", eventsPending(t, r), n)
}

// TestP10_NoEventIsLostAcrossABrokerOutageAndARestart (contract v3, issue
// 22 item 8): events other than erase requests used to be published once,
// fire and forget, and an enrollment_failed, cap_reached or selection_done
// raised while the broker was away never reached the app. With the real
// Mosquitto stopped, the daemon raises three, is killed (-9), starts
// again with the broker still away, and stops; once the broker is back,
// the app gets all three, in the order they were raised, each once with
// its event_id.
func TestP10_NoEventIsLostAcrossABrokerOutageAndARestart(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  daily_cap: 3\n  keep_per_day: 1\nfaces:\n  enrollment_timeout: 2s\n")
	a := newApp(t, b, r.deviceID)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	a.must("on", "set_features", map[string]any{"auto_photo": true, "patrol": true})
	a.must("grant", "grant_consent", map[string]any{"subject_id": "ana", "display_name": "Ana", "granted_by": "self", "scopes": []string{"face_recognition"}})
	base := eventsPending(t, r)
	a.must("enroll", "start_enrollment", map[string]any{"subject_id": "ana"})

	b.Stop()
	// No frame comes: the window times out (enrollment_failed).
	waitEventsPending(t, r, base+1)
	// The day's cap is reached (cap_reached), which starts the selection
	// (selection_done).
	for i, p := range photos(t, 3) {
		r.drop(name("p", i), p)
	}
	r.waitSpoolEmpty(5 * time.Second)
	waitEventsPending(t, r, base+3)
	r.kill()

	r.start() // the broker is still away
	time.Sleep(time.Second)
	if n := eventsPending(t, r); n != base+3 {
		t.Fatalf("%d events pending after a kill -9 and a start without the broker, want %d", n, base+3)
	}
	r.stop()

	b.Restart(t)
	a = newApp(t, b, r.deviceID)
	r.start()
	var got []map[string]any
	a.events.WaitFor(t, 30*time.Second, func(m testbroker.Message) bool {
		var ev map[string]any
		if json.Unmarshal(m.Payload, &ev) == nil && ev["type"] != "firmware_need" {
			got = append(got, ev)
		}
		return len(got) >= base+3
	})
	waitEventsPending(t, r, 0)
	var types []string
	ids := map[string]bool{}
	for _, ev := range got[base:] {
		types = append(types, ev["type"].(string))
		id, _ := ev["event_id"].(string)
		if len(id) != 32 || ids[id] {
			t.Errorf("event %v: event_id %q missing or repeated", ev["type"], id)
		}
		ids[id] = true
	}
	want := []string{"enrollment_failed", "cap_reached", "selection_done"}
	if len(types) != 3 || types[0] != want[0] || types[1] != want[1] || types[2] != want[2] {
		t.Fatalf("events after the outage: %v, want %v in that order", types, want)
	}
	if got[base]["subject_id"] != "ana" || got[base]["reason"] != "timeout" {
		t.Errorf("enrollment_failed %v", got[base])
	}
	r.stop()
}
