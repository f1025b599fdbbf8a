package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// inventorySubject reads one person's line of the technician's inventory.
func inventorySubject(t *testing.T, r *rig, id string) (map[string]any, bool) {
	t.Helper()
	out, code := r.ctl("inventory", "--json")
	if code != 0 {
		t.Fatalf("aiboctl inventory: %d %s", code, out)
	}
	var inv struct {
		Subjects []map[string]any `json:"subjects"`
	}
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatal(err)
	}
	for _, s := range inv.Subjects {
		if s["subject_id"] == id {
			return s, true
		}
	}
	return nil, false
}

// Issue 11, item 1, end to end through the contract with the real worker:
// grant face_recognition and cloud_backup, enroll, be seen, then grant
// again with cloud_backup only. Before, templates and sightings stayed,
// no erase_request went out, and a later revocation left orphans that no
// inventory showed. Now the narrower grant withdraws face_recognition
// exactly as revoke_consent does.
func TestP5_ANarrowerGrantWithdrawsLikeARevocation(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "faces:\n  enrollment_samples: 3\n  sighting_interval: 0s\n")
	a := newApp(t, b, r.deviceID)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	a.must("feat", "set_features", map[string]any{"patrol": true, "cloud_backup": true})
	a.must("g1", "grant_consent", map[string]any{"subject_id": "carol", "display_name": "Carol Quill", "granted_by": "self",
		"scopes": []string{"face_recognition", "cloud_backup"}})
	a.must("e1", "start_enrollment", map[string]any{"subject_id": "carol"})
	enrol(t, r, a, "carol", "s12")
	img, _ := scene(orl(t, "s12", 4))
	r.dropFrame("carol-again.png", encodePNG(t, img))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, ok := inventorySubject(t, r, "carol"); ok && s["templates"].(float64) == 1 && s["sightings"].(float64) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			s, _ := inventorySubject(t, r, "carol")
			t.Fatalf("set-up: carol not enrolled and seen: %v", s)
		}
		time.Sleep(100 * time.Millisecond)
	}

	a.must("g2", "grant_consent", map[string]any{"subject_id": "carol", "display_name": "Carol Quill", "granted_by": "self",
		"scopes": []string{"cloud_backup"}})
	ev := eventOf(t, a, "erase_request")
	kinds, _ := ev["kinds"].([]any)
	if ev["subject_id"] != "carol" || !slices.Contains(kinds, any("sighting")) || !slices.Contains(kinds, any("face_template")) {
		t.Fatalf("erase_request after the narrower grant: %v", ev)
	}
	s, ok := inventorySubject(t, r, "carol")
	if !ok || s["templates"].(float64) != 0 || s["sightings"].(float64) != 0 || s["queued_artifacts"].(float64) != 0 {
		t.Fatalf("after the narrower grant carol still has face data: %v", s)
	}
	// Not recognised any more.
	r.dropFrame("carol-later.png", encodePNG(t, img))
	time.Sleep(time.Second)
	if s, _ := inventorySubject(t, r, "carol"); s["sightings"].(float64) != 0 {
		t.Fatalf("carol seen after her face_recognition went: %v", s)
	}

	a.must("rv", "revoke_consent", map[string]any{"subject_id": "carol"})
	if s, ok := inventorySubject(t, r, "carol"); ok {
		t.Fatalf("carol still in the inventory after revoking everything: %v", s)
	}
	r.stop()
	if keys := keysMentioning(t, r, "carol"); len(keys) != 0 {
		t.Fatalf("the store still holds %v about carol", keys)
	}
	if n := keyringSlots(t, r); n != 0 {
		t.Fatalf("%d keyring slots still occupied", n)
	}
	raw, err := os.ReadFile(filepath.Join(r.dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("Carol Quill")) {
		t.Fatal("carol's name is in clear in the store file")
	}
}
