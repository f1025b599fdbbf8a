package agent

import (
	"bytes"
	"encoding/json"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/sync/outbox"
)

func (dv *device) code(typ string, payload any) string {
	dv.t.Helper()
	a := dv.try(typ, payload)
	if a.OK {
		return "ok"
	}
	return a.Error.Code
}

// queuePhoto queues a photo of today as the selection does.
func (dv *device) queuePhoto(masked bool) outbox.Meta {
	dv.t.Helper()
	var m outbox.Meta
	err := dv.d.st.Update(func(tx *bolt.Tx) error {
		p, err := dv.d.outbox.Prepare(outbox.Artifact{Kind: policy.KindPhoto, ContentType: "image/jpeg", Content: []byte("jpeg"),
			Attrs: map[string]any{"day": "2026-11-22"}, Masked: masked})
		if err != nil {
			return err
		}
		m, err = dv.d.outbox.EnqueueTx(tx, p)
		return err
	})
	if err != nil {
		dv.t.Fatal(err)
	}
	return m
}

func (dv *device) day() capture.DayCounts {
	var c capture.DayCounts
	dv.d.st.View(func(tx *bolt.Tx) (err error) { c, err = capture.ReadDay(tx, "2026-11-22"); return })
	return c
}

// Promises P14 and P7: switching blurring on refuses, in the switch's own
// transaction, the photos queued without their strangers pixelated; they
// count as deleted on their day (every admitted photo ends uploaded or
// deleted). Switching auto_photo off drops every queued photo.
func TestP14_SwitchesDropWhatTheyNoLongerAllowAndCountIt(t *testing.T) {
	dv := newDevice(t, "")
	dv.cmd("accept_policy", map[string]any{"version": "v1"})
	dv.cmd("set_features", map[string]any{"auto_photo": true})
	plain := dv.queuePhoto(false)
	masked := dv.queuePhoto(true)
	dv.cmd("set_features", map[string]any{"blur_unknown_faces": true})
	ids := map[string]bool{}
	for _, m := range dv.d.outbox.List() {
		ids[m.ID] = true
	}
	if ids[plain.ID] || !ids[masked.ID] {
		t.Fatalf("after blurring on: queued %v (plain %s, masked %s)", ids, plain.ID, masked.ID)
	}
	if c := dv.day(); c.Deleted != 1 {
		t.Fatalf("day counts %+v: the dropped photo is not counted deleted", c)
	}
	dv.cmd("set_features", map[string]any{"auto_photo": false})
	if n, _ := dv.d.outbox.Summary(); n != 0 {
		t.Fatalf("%d photos still queued with auto_photo off", n)
	}
	if c := dv.day(); c.Deleted != 2 {
		t.Fatalf("day counts %+v", c)
	}
}

// The refusals the contract names, from the handlers.
func TestHandlersRefuseWithTheContractsCodes(t *testing.T) {
	dv := newDevice(t, "")
	cases := []struct {
		typ     string
		payload any
		want    string
	}{
		{"set_features", map[string]any{"auto_photo": true}, "policy_not_accepted"},
		{"set_features", map[string]any{}, "bad_request"},
		{"set_features", map[string]any{"teleport": true}, "bad_request"},
		{"select_photos", map[string]any{}, "feature_disabled"},
		{"photo_feedback", map[string]any{"artifact_id": "nope", "signal": "favorite"}, "not_found"},
		{"photo_feedback", map[string]any{"artifact_id": "nope", "signal": "love"}, "bad_request"},
		{"revoke_consent", map[string]any{"subject_id": "nobody"}, "not_found"},
		{"revoke_consent", map[string]any{"subject_id": "a/b"}, "bad_request"},
		{"grant_consent", map[string]any{"subject_id": "kid", "display_name": "K", "minor": true, "granted_by": "self", "scopes": []string{"face_recognition"}}, "guardian_required"},
		{"start_enrollment", map[string]any{"subject_id": "nobody"}, "policy_not_accepted"},
		{"cancel_enrollment", map[string]any{"subject_id": "nobody"}, "not_found"},
		{"delete_data", map[string]any{"categories": []string{"everything"}}, "bad_request"},
		{"delete_data", map[string]any{"categories": []string{}}, "bad_request"},
		{"set_region", map[string]any{"region": "Mars"}, "bad_request"},
	}
	for _, c := range cases {
		if got := dv.code(c.typ, c.payload); got != c.want {
			t.Errorf("%s %v: %s, want %s", c.typ, c.payload, got, c.want)
		}
	}
	dv.cmd("accept_policy", map[string]any{"version": "v1"})
	if got := dv.code("start_enrollment", map[string]any{"subject_id": "nobody"}); got != "feature_disabled" {
		t.Errorf("enrollment with patrol off: %s", got)
	}
	dv.cmd("set_features", map[string]any{"patrol": true})
	if got := dv.code("start_enrollment", map[string]any{"subject_id": "nobody"}); got != "consent_required" {
		t.Errorf("enrollment without consent: %s", got)
	}
	dv.cmd("set_region", map[string]any{"region": "US-IL"})
	if got := dv.code("set_features", map[string]any{"patrol": true}); got != "region_prohibited" {
		t.Errorf("patrol in Illinois: %s", got)
	}
}

// export_inventory queues an inventory artifact: counts and ids, no names.
func TestP9_ExportInventoryQueuesCountsNeverContent(t *testing.T) {
	dv := newDevice(t, "")
	dv.people()
	a := dv.cmd("export_inventory", map[string]any{})
	var r struct {
		ArtifactID string `json:"artifact_id"`
	}
	json.Unmarshal(a.Result, &r)
	var found bool
	for _, m := range dv.d.outbox.List() {
		found = found || (m.ID == r.ArtifactID && m.Kind == policy.KindInventory)
	}
	if !found {
		t.Fatalf("no inventory artifact %q queued", r.ArtifactID)
	}
	inv := func() []byte {
		var out []byte
		dv.d.st.View(func(tx *bolt.Tx) error {
			i, err := dv.d.inventory(tx)
			out, _ = json.Marshal(i)
			return err
		})
		return out
	}()
	for _, secret := range []string{"Anastasia", "04-05", "sample-1"} {
		if bytes.Contains(inv, []byte(secret)) {
			t.Errorf("the inventory holds %q", secret)
		}
	}
}

// Promise P14 with P5: a switch turned off drops the person-linked
// artifacts it no longer allows through the one erasure path: the copies
// a freed page keeps open with no key left, while what the person still
// holds stays readable under a new key.
func TestP14_ASwitchTurnedOffDropsQueuedFaceArtifactsAndReplacesTheKey(t *testing.T) {
	dv := newDevice(t, "")
	dv.people()
	before := dv.records()
	dv.cmd("set_features", map[string]any{"cloud_backup": false})
	devKeys := dv.deviceKeys()
	after := dv.records()
	for _, r := range before {
		if r.what == "queued_backup" && openWith(devKeys, r.sealed, r.aad) != nil {
			t.Errorf("%s's queued backup still opens after cloud_backup went off", r.subject)
		}
		if r.what == "queued_backup" && slicesContainsRecord(after, r.subject, r.what) {
			t.Errorf("%s's queued backup is still queued", r.subject)
		}
	}
	for _, w := range []string{"template", "sighting_new", "queued_sighting"} {
		if !slicesContainsRecord(after, "ana", w) {
			t.Errorf("ana's %s went with the backups", w)
		}
	}
}

func slicesContainsRecord(rs []record, subject, what string) bool {
	for _, r := range rs {
		if r.subject == subject && r.what == what {
			return true
		}
	}
	return false
}
