package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/capture"
	"github.com/aibo-privacy/aibo-privacyd/core/policy"
	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
)

// newSignedDevice is a device that takes signed commands only, as the
// robot does: dv.cmd and dv.try sign with the device's clock as
// issued_at, dv.signed signs with any issued_at.
func newSignedDevice(t *testing.T) *device {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dv := newDeviceWith(t, "", "security:\n  command_keys:\n    k1: "+base64.StdEncoding.EncodeToString(pub)+"\n")
	dv.signer = priv
	return dv
}

// signed is a command as the cloud signs it, issued at at.
func (dv *device) signed(id, typ string, at time.Time, payload any) []byte {
	body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "device_id": "aibo-0001", "issued_at": at.UTC().Format(time.RFC3339), "payload": payload})
	return envelope.Sign("k1", dv.signer, body)
}

// code is the outcome of an answer: "ok" or its error code.
func (a answer) code() string {
	if a.OK {
		return "ok"
	}
	return a.Error.Code
}

// admit drops n real JPEGs into the spool and runs the intake until it
// has decided them, at the device's clock.
func (dv *device) admit(n int, prefix string) {
	dv.t.Helper()
	dir := filepath.Join(filepath.Dir(dv.dataDir), "spool", "photos")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		dv.t.Fatal(err)
	}
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, 96, 64))
		for y := range 64 {
			for x := range 96 {
				img.Set(x, y, color.RGBA{uint8(x * 2), uint8(y*3 + i*17), uint8(len(prefix) * 40), 255})
			}
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, nil); err != nil {
			dv.t.Fatal(err)
		}
		name := filepath.Join(dir, fmt.Sprintf("%s-%d.jpg", prefix, i))
		if err := os.WriteFile(name+".part", buf.Bytes(), 0o644); err != nil {
			dv.t.Fatal(err)
		}
		if err := os.Rename(name+".part", name); err != nil {
			dv.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { dv.d.intake.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		left, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
		if len(left) == 0 {
			return
		}
	}
	dv.t.Fatal("the intake did not decide the photos")
}

// photos are the undecided photos' admission times.
func (dv *device) photos() []time.Time {
	var out []time.Time
	dv.d.st.View(func(tx *bolt.Tx) error {
		ps, err := capture.Photos(tx)
		for _, p := range ps {
			out = append(out, p.AdmittedAt)
		}
		return err
	})
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// Contract v3, issue 22 item 1: a withdrawal that names no single setting
// acts only on what was recorded before its issued_at. The owner deleted
// everything at T1, then granted bob at T2; the network held the deletion
// back and delivers it after. Ana (granted before T1) is forgotten whole,
// with every copy of her data; bob's consent and what followed it stay;
// photos admitted before T1 go, the one after stays; the cloud is asked to
// erase only what it got before T1; and ana's own grant, held back as
// well, can no longer bring her back.
func TestP10_ADeletionHeldBackSparesWhatTheOwnerGrantedSince(t *testing.T) {
	dv := newSignedDevice(t)
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	dv.setNow(t0)
	dv.cmd("accept_policy", map[string]any{"version": "v1"})
	dv.cmd("set_features", map[string]any{"patrol": true, "auto_photo": true})
	grantAna := dv.signed("grant-ana", "grant_consent", t0, map[string]any{"subject_id": "ana", "display_name": "Anastasia Quux", "granted_by": "self", "scopes": []string{"face_recognition"}})
	if a := dv.send(grantAna); !a.OK {
		t.Fatalf("%+v", a.Error)
	}
	dv.faceData("ana", t0.Add(30*time.Second))
	dv.setNow(t0.Add(time.Minute))
	dv.admit(2, "before")

	t1 := t0.Add(2 * time.Minute) // delete_data all issued; held back
	deletion := dv.signed("delete-all", "delete_data", t1, map[string]any{"categories": []string{"all"}})

	t2 := t0.Add(3 * time.Minute)
	dv.setNow(t2)
	if a := dv.send(dv.signed("grant-bob", "grant_consent", t2, map[string]any{"subject_id": "bob", "display_name": "Bob", "granted_by": "self", "scopes": []string{"face_recognition"}})); !a.OK {
		t.Fatalf("%+v", a.Error)
	}
	dv.faceData("bob", t2.Add(10*time.Second))
	dv.setNow(t2.Add(30 * time.Second))
	dv.admit(1, "after")
	if got := len(dv.photos()); got != 3 {
		t.Fatalf("set-up: %d photos admitted", got)
	}

	a := dv.send(deletion)
	if !a.OK {
		t.Fatalf("the held-back deletion was refused: %+v", a.Error)
	}
	var res struct {
		Erased         map[string]int `json:"erased"`
		RecordedBefore string         `json:"recorded_before"`
	}
	json.Unmarshal(a.Result, &res)
	if res.Erased["people"] != 1 || res.Erased["photos"] != 2 || res.RecordedBefore != t1.Format(time.RFC3339) {
		t.Errorf("result %s", a.Result)
	}
	if ps := dv.photos(); len(ps) != 1 || ps[0].Before(t1) {
		t.Errorf("photos left %v, want only the one admitted after %s", ps, t1)
	}
	var inv Inventory
	dv.d.st.View(func(tx *bolt.Tx) (err error) { inv, err = dv.d.inventory(tx); return })
	if len(inv.Subjects) != 1 || inv.Subjects[0].SubjectID != "bob" || !inv.Subjects[0].Consent ||
		inv.Subjects[0].Templates != 1 || inv.Subjects[0].Sightings != 1 || inv.Subjects[0].QueuedArtifacts != 1 {
		t.Errorf("held after the deletion: %+v, want bob alone, with his template, sighting and queued sighting", inv.Subjects)
	}
	devKeys := dv.deviceKeys()
	for _, r := range dv.records() {
		if r.subject == "ana" || r.what == "queued_unreadable" {
			t.Errorf("%s of %q is still in the store", r.what, r.subject)
		}
		if r.subject == "bob" && openWith(devKeys, r.sealed, r.aad) == nil {
			t.Errorf("bob's %s no longer opens", r.what)
		}
	}
	reqs := dv.eraseRequests()
	if len(reqs) != 1 || reqs[0]["before"] != t1.Format(time.RFC3339) {
		t.Errorf("erase requests %v, want one asking for what was recorded before %s", reqs, t1)
	}
	// Ana's grant, issued before the deletion and replayed now (within
	// its 5 minutes), is superseded: she stays forgotten.
	again := dv.signed("grant-ana-2", "grant_consent", t0.Add(time.Minute), map[string]any{"subject_id": "ana", "display_name": "A", "granted_by": "self", "scopes": []string{"face_recognition"}})
	if a := dv.send(again); a.code() != "superseded" {
		t.Errorf("a grant older than delete_data all: %s", a.code())
	}
}

// faceData records subject's template (enrolled at the device clock) and
// a sighting at seen, with its queued sighting artifact.
func (dv *device) faceData(subject string, seen time.Time) {
	dv.t.Helper()
	err := dv.d.st.Update(func(tx *bolt.Tx) error {
		slot, err := dv.d.faces.StoreTemplatesTx(tx, subject, [][]byte{[]byte("sample-" + subject)})
		if err != nil {
			return err
		}
		if _, err := dv.d.faces.RecordSightingTx(tx, subject, seen, 0.9); err != nil {
			return err
		}
		return dv.d.sightingTx(tx, subject, slot, seen, 0.9)
	})
	if err != nil {
		dv.t.Fatal(err)
	}
}

// Contract v3, issue 22 item 1: the newest signed command per setting
// wins. Each case is a pair the owner sent in one order and the network
// delivered in the other; the older one arrives last and must change
// nothing.
func TestP14_AHeldBackCommandDoesNotUndoTheOwnersLaterChoice(t *testing.T) {
	dv := newSignedDevice(t)
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	dv.setNow(now)
	dv.cmd("accept_policy", map[string]any{"version": "v1"})
	dv.cmd("set_features", map[string]any{"patrol": true})
	grant := map[string]any{"subject_id": "ana", "display_name": "A", "granted_by": "self", "scopes": []string{"face_recognition"}}
	older, newer := now.Add(-3*time.Minute), now.Add(-time.Minute)
	feature := func(name string) bool {
		var on bool
		dv.d.st.View(func(tx *bolt.Tx) error { st, err := dv.d.pol.Read(tx); on = st.On(policy.Feature(name)); return err })
		return on
	}
	// auto_photo: on at T2, off at T1 < T2 delivered after.
	if a := dv.send(dv.signed("on", "set_features", newer, map[string]any{"auto_photo": true})); !a.OK {
		t.Fatalf("%+v", a.Error)
	}
	if a := dv.send(dv.signed("off", "set_features", older, map[string]any{"auto_photo": false})); a.code() != "superseded" || !feature("auto_photo") {
		t.Errorf("auto_photo off, held back: %s, auto_photo on %v", a.code(), feature("auto_photo"))
	}
	// Blurring: switched on late (a withdrawal: any age) after a newer off.
	if a := dv.send(dv.signed("blur-off", "set_features", newer, map[string]any{"blur_unknown_faces": false})); !a.OK {
		t.Fatalf("%+v", a.Error)
	}
	if a := dv.send(dv.signed("blur-on", "set_features", older, map[string]any{"blur_unknown_faces": true})); a.code() != "superseded" || feature("blur_unknown_faces") {
		t.Errorf("blur on, held back: %s", a.code())
	}
	// Turning blurring off 29 days late is refused: it lowers a protection.
	dv.cmd("set_features", map[string]any{"blur_unknown_faces": true})
	if a := dv.send(dv.signed("blur-late", "set_features", now.Add(-696*time.Hour), map[string]any{"blur_unknown_faces": false})); a.code() != "expired" || !feature("blur_unknown_faces") {
		t.Errorf("blur off 696h late: %s", a.code())
	}
	// A person's consent: granted at T2, revoked at T1 delivered after.
	if a := dv.send(dv.signed("grant", "grant_consent", newer, grant)); !a.OK {
		t.Fatalf("%+v", a.Error)
	}
	dv.faceData("ana", now)
	if a := dv.send(dv.signed("revoke", "revoke_consent", older, map[string]any{"subject_id": "ana"})); a.code() != "superseded" {
		t.Errorf("revocation held back: %s", a.code())
	}
	if n := countWhat(dv.records(), "ana"); n != 4 { // consent, template, sighting, queued sighting
		t.Errorf("ana's records after a superseded revocation: %d, want 4", n)
	}
	// An enrollment window opened at T2; a cancel issued at T1 is older.
	if a := dv.send(dv.signed("start", "start_enrollment", newer, map[string]any{"subject_id": "ana"})); !a.OK {
		t.Fatalf("%+v", a.Error)
	}
	if a := dv.send(dv.signed("cancel", "cancel_enrollment", older, map[string]any{"subject_id": "ana"})); a.code() != "superseded" {
		t.Errorf("cancel issued before the window opened: %s", a.code())
	}
	if a := dv.send(dv.signed("cancel2", "cancel_enrollment", now, map[string]any{"subject_id": "ana"})); !a.OK {
		t.Errorf("cancel issued after the window opened: %+v", a.Error)
	}
	// The region and the accepted policy are settings too.
	if a := dv.send(dv.signed("region", "set_region", newer, map[string]any{"region": "US-NY"})); !a.OK {
		t.Fatalf("%+v", a.Error)
	}
	if a := dv.send(dv.signed("region-old", "set_region", older, map[string]any{"region": "US-IL"})); a.code() != "superseded" {
		t.Errorf("region held back: %s", a.code())
	}
	if a := dv.send(dv.signed("policy-old", "accept_policy", now.Add(-4*time.Minute), map[string]any{"version": "v0"})); a.code() != "superseded" {
		t.Errorf("accept_policy held back: %s", a.code())
	}
}

func countWhat(rs []record, subject string) int {
	n := 0
	for _, r := range rs {
		if r.subject == subject {
			n++
		}
	}
	return n
}
