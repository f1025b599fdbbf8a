package main

import (
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// Technicians must never see a name or a birthday: not on any endpoint,
// not in any aiboctl output, not in the daemon's log.
func TestP16_TechniciansNeverSeeNamesOrBirthdays(t *testing.T) {
	const name, birthday = "Quirinus Vandermeulen", "02-29"
	b := testbroker.Start(t)
	r := newRig(t, b, "faces:\n  enrollment_samples: 3\n  sighting_interval: 0s\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	a.must("feat", "set_features", map[string]any{"patrol": true, "auto_photo": true})
	a.must("g", "grant_consent", map[string]any{"subject_id": "s-42", "display_name": name, "birthday": birthday,
		"minor": false, "granted_by": "self", "scopes": []string{"face_recognition", "cloud_backup"}})
	a.must("e", "start_enrollment", map[string]any{"subject_id": "s-42"})
	enrol(t, r, a, "s-42", "s2")
	img, _ := scene(orl(t, "s2", 4))
	r.dropFrame("seen.png", encodePNG(t, img))
	cl.receive("sighting", false) // sightings exist, one still queued
	r.drop("one.jpg", photos(t, 1)[0])
	r.waitSpoolEmpty(2 * time.Second)
	a.must("x", "export_inventory", map[string]any{})
	a.must("rv", "revoke_consent", map[string]any{"subject_id": "s-42", "scopes": []string{"cloud_backup"}})

	var seen strings.Builder
	for _, args := range [][]string{
		{"status"}, {"status", "--json"}, {"health"}, {"health", "--json"}, {"audit", "-limit", "1000"}, {"audit", "--json", "-limit", "1000"},
		{"audit", "verify"}, {"metrics"}, {"queue"}, {"queue", "--json"}, {"inventory"}, {"inventory", "--json"}, {"selftest"}, {"selftest", "--json"},
	} {
		out, code := r.ctl(args...)
		if code >= 2 { // usage, unreachable, forbidden or a daemon error: not an answer
			t.Fatalf("aiboctl %v: %s", args, out)
		}
		seen.WriteString(out)
	}
	if !strings.Contains(seen.String(), "s-42") {
		t.Fatal("the opaque id should be visible to technicians; the check reads nothing")
	}
	r.stop()
	seen.WriteString(r.logs.String())
	for _, l := range r.allLogs {
		seen.WriteString(l)
	}
	for _, secret := range []string{name, "Quirinus", "Vandermeulen", birthday} {
		if strings.Contains(seen.String(), secret) {
			t.Errorf("%q leaked to a technician or the log", secret)
		}
	}
}
