package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// cloud collects artifacts the device publishes and acks them.
type cloud struct {
	t     *testing.T
	a     *app
	metas *testbroker.Sub
	parts *testbroker.Sub
}

func newCloud(t *testing.T, b *testbroker.Broker, a *app) *cloud {
	c := b.Client(t)
	return &cloud{t: t, a: a, metas: c.Subscribe(t, a.topic("artifacts/+/meta")), parts: c.Subscribe(t, a.topic("artifacts/+/chunk/+"))}
}

type manifest struct {
	ArtifactID  string         `json:"artifact_id"`
	Kind        string         `json:"kind"`
	ContentType string         `json:"content_type"`
	Size        int            `json:"size"`
	SHA256      string         `json:"sha256"`
	Chunks      int            `json:"chunks"`
	SubjectID   string         `json:"subject_id"`
	Attrs       map[string]any `json:"attrs"`
}

// receive waits for the next artifact of kind, reassembles it and (when
// ack) acks it.
func (c *cloud) receive(kind string, ack bool) (manifest, []byte) {
	c.t.Helper()
	var m manifest
	c.metas.WaitFor(c.t, 15*time.Second, func(msg testbroker.Message) bool {
		return json.Unmarshal(msg.Payload, &m) == nil && m.Kind == kind
	})
	chunks := make([][]byte, m.Chunks)
	got := 0
	for got < m.Chunks {
		msg := c.parts.WaitFor(c.t, 15*time.Second, func(msg testbroker.Message) bool {
			return strings.Contains(msg.Topic, "/artifacts/"+m.ArtifactID+"/chunk/")
		})
		var n int
		parts := strings.Split(msg.Topic, "/")
		json.Unmarshal([]byte(parts[len(parts)-1]), &n)
		if n < len(chunks) && chunks[n] == nil {
			chunks[n] = msg.Payload
			got++
		}
	}
	var body []byte
	for _, ch := range chunks {
		body = append(body, ch...)
	}
	if len(body) != m.Size {
		c.t.Fatalf("artifact %s: %d bytes, manifest says %d", m.ArtifactID, len(body), m.Size)
	}
	if ack {
		c.a.c.Publish(c.t, c.a.topic("artifacts/"+m.ArtifactID+"/ack"), []byte(`{"ok":true}`), false)
	}
	return m, body
}

func eventOf(t *testing.T, a *app, typ string) map[string]any {
	t.Helper()
	var ev map[string]any
	a.events.WaitFor(t, 30*time.Second, func(m testbroker.Message) bool {
		var e map[string]any
		if json.Unmarshal(m.Payload, &e) != nil || e["type"] != typ {
			return false
		}
		ev = e
		return true
	})
	return ev
}

func TestP9_P10_InventoryAndDeletion(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	enableAutoPhoto(a)
	for i, p := range photos(t, 4) {
		r.drop(name("inv", i), p)
	}
	r.waitSpoolEmpty(2 * time.Second)
	a.must("g-1", "grant_consent", map[string]any{"subject_id": "person-7", "display_name": "Wilhelmina Zanzibar",
		"birthday": "11-03", "minor": false, "granted_by": "self", "scopes": []string{"face_recognition"}})
	a.state(func(s map[string]any) bool { return num(s, "subjects") == 1 })

	// The owner asks what the device holds.
	res := a.send("inv-1", "export_inventory", map[string]any{})
	if !res.OK {
		t.Fatalf("export_inventory: %+v", res.Error)
	}
	m, body := cl.receive("inventory", true)
	var inv struct {
		Categories map[string]struct {
			Count    int    `json:"count"`
			ErasedBy string `json:"erased_by"`
		} `json:"categories"`
		Subjects []struct {
			SubjectID string   `json:"subject_id"`
			Scopes    []string `json:"scopes"`
		} `json:"subjects"`
	}
	if err := json.Unmarshal(body, &inv); err != nil {
		t.Fatalf("inventory %s: %v", body, err)
	}
	if inv.Categories["photos"].Count != 4 || inv.Categories["consents"].Count != 1 || inv.Categories["photos"].ErasedBy == "" {
		t.Fatalf("inventory categories %+v", inv.Categories)
	}
	if len(inv.Subjects) != 1 || inv.Subjects[0].SubjectID != "person-7" {
		t.Fatalf("inventory subjects %+v", inv.Subjects)
	}
	if strings.Contains(string(body), "Wilhelmina") || strings.Contains(string(body), "11-03") || m.SubjectID != "" {
		t.Fatal("the inventory carries a name, a birthday or a subject")
	}
	// The technician sees the same inventory.
	out, code := r.ctl("inventory", "--json")
	if code != 0 || !strings.Contains(out, "person-7") || strings.Contains(out, "Wilhelmina") {
		t.Fatalf("aiboctl inventory: %d %s", code, out)
	}

	// The owner erases the photos.
	res = a.send("del-1", "delete_data", map[string]any{"categories": []string{"photos"}})
	var del struct {
		Erased map[string]int `json:"erased"`
	}
	json.Unmarshal(res.Result, &del)
	if !res.OK || del.Erased["photos"] != 4 {
		t.Fatalf("delete_data photos: %s %+v", res.Result, res.Error)
	}
	ev := eventOf(t, a, "erase_request")
	if kinds, _ := ev["kinds"].([]any); len(kinds) != 1 || kinds[0] != "photo" {
		t.Fatalf("erase_request %v", ev)
	}
	if n := vaultFiles(t, r); n != 0 {
		t.Fatalf("%d photo files left after delete_data", n)
	}
	if c := r.today(); c.Deleted != 4 {
		t.Fatalf("photos_today %+v", c)
	}
	// Bad categories are refused with nothing erased.
	if res := a.send("del-2", "delete_data", map[string]any{"categories": []string{"photos", "diaries"}}); res.OK || res.Error.Code != "bad_request" {
		t.Fatalf("unknown category: %+v", res)
	}

	// Revoking consent removes the person and tells the cloud.
	a.must("rv-1", "revoke_consent", map[string]any{"subject_id": "person-7"})
	if ev := eventOf(t, a, "consent_revoked"); ev["subject_id"] != "person-7" {
		t.Fatalf("consent_revoked %v", ev)
	}
	a.state(func(s map[string]any) bool { return num(s, "subjects") == 0 })
	if res := a.send("rv-2", "revoke_consent", map[string]any{"subject_id": "person-7"}); res.OK || res.Error.Code != "not_found" {
		t.Fatalf("second revoke: %+v", res)
	}
	r.stop()
}

func TestP12_ConsentRulesThroughTheApp(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	grant := func(id string, p map[string]any) result { return a.send(id, "grant_consent", p) }
	base := func() map[string]any {
		return map[string]any{"subject_id": "kid", "display_name": "Kid", "birthday": "05-05", "minor": true, "granted_by": "self", "scopes": []string{"face_recognition"}}
	}
	if res := grant("g1", base()); res.OK || res.Error.Code != "guardian_required" {
		t.Fatalf("minor by self: %+v", res)
	}
	bad := base()
	bad["birthday"] = "02-31"
	bad["granted_by"] = "guardian"
	if res := grant("g2", bad); res.OK || res.Error.Code != "bad_request" {
		t.Fatalf("02-31: %+v", res)
	}
	good := base()
	good["granted_by"] = "guardian"
	if res := grant("g3", good); !res.OK {
		t.Fatalf("guardian consent: %+v", res.Error)
	}
	// Enrollment needs the feature on, then is allowed; a stranger is not.
	if res := a.send("e1", "start_enrollment", map[string]any{"subject_id": "kid"}); res.OK || res.Error.Code != "feature_disabled" {
		t.Fatalf("enrollment with patrol off: %+v", res)
	}
	a.must("f1", "set_features", map[string]any{"patrol": true})
	if res := a.send("e2", "start_enrollment", map[string]any{"subject_id": "stranger"}); res.OK || res.Error.Code != "consent_required" {
		t.Fatalf("enrollment without consent: %+v", res)
	}
	a.must("e3", "start_enrollment", map[string]any{"subject_id": "kid"})
	a.must("e4", "cancel_enrollment", map[string]any{"subject_id": "kid"})
	if res := a.send("e5", "cancel_enrollment", map[string]any{"subject_id": "kid"}); res.OK || res.Error.Code != "not_found" {
		t.Fatalf("cancel twice: %+v", res)
	}
	// In Illinois: face features are refused.
	a.must("r1", "set_region", map[string]any{"region": "US-IL"})
	if res := a.send("e6", "start_enrollment", map[string]any{"subject_id": "kid"}); res.OK || res.Error.Code != "region_prohibited" {
		t.Fatalf("enrollment in US-IL: %+v", res)
	}
	r.stop()
}

func TestP17_P18_UsageOnlyWithConsentAndWithoutPeople(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	a.must("g", "grant_consent", map[string]any{"subject_id": "p-1", "display_name": "Somebody", "granted_by": "self", "scopes": []string{"face_recognition"}})
	// Off by default: a restart runs the janitor, and nothing is sent.
	r.stop()
	r.start()
	time.Sleep(500 * time.Millisecond)
	if n := len(cl.metas.All()); n != 0 {
		t.Fatalf("%d artifacts sent with analytics off", n)
	}
	a.must("u", "set_features", map[string]any{"usage_analytics": true})
	r.stop()
	r.start()
	m, body := cl.receive("usage", true)
	if m.SubjectID != "" || strings.Contains(string(body), "p-1") || strings.Contains(string(body), "Somebody") {
		t.Fatalf("usage artifact identifies a person: %+v %s", m, body)
	}
	r.stop()
}

// Promise P10: delete_data photos forgets the photos the device uploaded,
// what their scores were made of included. The breakdown of each uploaded
// photo (faces, smile, eyes open, the time it was taken) is kept 90 days
// for photo_feedback; it used to outlive delete_data photos and all, and
// feedback on a deleted photo still answered with its score.
func TestP10_DeleteDataPhotosForgetsWhatTheUploadedPhotosScoredOn(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "photos:\n  keep_per_day: 2\n  min_score: 0.05\n")
	a := newApp(t, b, r.deviceID)
	cl := newCloud(t, b, a)
	r.start()
	enableAutoPhoto(a)
	for i, p := range photos(t, 3) {
		r.drop(name("fb", i), p)
	}
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel", "select_photos", map[string]any{})
	eventOf(t, a, "selection_done")
	var uploaded []string
	for range 2 {
		m, _ := cl.receive("photo", true)
		uploaded = append(uploaded, m.ArtifactID)
	}
	a.state(func(s map[string]any) bool { return num(s, "outbox", "pending") == 0 })
	if res := a.send("fb-1", "photo_feedback", map[string]any{"artifact_id": uploaded[0], "signal": "favorite"}); !res.OK {
		t.Fatalf("feedback before the deletion: %+v", res.Error)
	}
	scores := func() int {
		out, code := r.ctl("inventory", "--json")
		var inv struct {
			Categories map[string]struct {
				Count int `json:"count"`
			} `json:"categories"`
		}
		if err := json.Unmarshal([]byte(out), &inv); code != 0 || err != nil {
			t.Fatalf("inventory: exit %d %v\n%s", code, err, out)
		}
		c, ok := inv.Categories["photo_scores"]
		if !ok {
			t.Fatalf("the inventory hides the scores kept for feedback:\n%s", out)
		}
		return c.Count
	}
	if n := scores(); n != 2 {
		t.Errorf("the inventory lists %d photo scores, want the 2 uploaded", n)
	}
	a.must("del", "delete_data", map[string]any{"categories": []string{"photos"}})
	if n := scores(); n != 0 {
		t.Errorf("the inventory lists %d photo scores after delete_data photos", n)
	}
	for i, id := range uploaded {
		res := a.send("fb-after-"+itoa(i), "photo_feedback", map[string]any{"artifact_id": id, "signal": "favorite"})
		if res.OK || res.Error.Code != "not_found" {
			t.Errorf("feedback on uploaded photo %s after delete_data photos: ok=%v %s %+v, want not_found", id, res.OK, res.Result, res.Error)
		}
	}
	r.stop()
}
