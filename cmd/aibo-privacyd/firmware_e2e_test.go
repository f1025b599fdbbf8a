package main

import (
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// updater is the cloud's update service: it signs offers and publishes
// image chunks.
type updater struct {
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newUpdater() updater {
	pub, priv, _ := ed25519.GenerateKey(crand.Reader)
	return updater{kid: "fw1", priv: priv, pub: pub}
}

func (u updater) yaml() string {
	return "firmware:\n  version: 1.0.0\n  keys:\n    " + u.kid + ": " + base64.StdEncoding.EncodeToString(u.pub) + "\n"
}

type offer struct {
	Version       string `json:"version"`
	Size          int64  `json:"size"`
	SHA256        string `json:"sha256"`
	Chunks        int    `json:"chunks"`
	PolicyVersion string `json:"policy_version"`
	Material      bool   `json:"material_policy_change"`
}

const fwChunk = 4096

func randomImage(n int) []byte {
	b := make([]byte, n)
	crand.Read(b)
	return b
}

func (u updater) manifest(version string, img []byte, policy string, material bool) offer {
	sum := sha256.Sum256(img)
	return offer{Version: version, Size: int64(len(img)), SHA256: hex.EncodeToString(sum[:]),
		Chunks: (len(img) + fwChunk - 1) / fwChunk, PolicyVersion: policy, Material: material}
}

func (u updater) payload(m offer, key ed25519.PrivateKey) map[string]any {
	raw, _ := json.Marshal(m)
	return map[string]any{"kid": u.kid, "manifest": base64.StdEncoding.EncodeToString(raw),
		"sig": base64.StdEncoding.EncodeToString(ed25519.Sign(key, raw))}
}

// publish sends chunks in reverse order with a duplicate, as a flaky CDN would.
func publishChunks(t *testing.T, a *app, version string, img []byte, only func(n int) bool) {
	n := (len(img) + fwChunk - 1) / fwChunk
	for i := n - 1; i >= 0; i-- {
		if only != nil && !only(i) {
			continue
		}
		end := min((i+1)*fwChunk, len(img))
		a.c.Publish(t, a.topic("firmware/"+version+"/chunk/"+strconv.Itoa(i)), img[i*fwChunk:end], false)
		if i == n/2 {
			a.c.Publish(t, a.topic("firmware/"+version+"/chunk/"+strconv.Itoa(i)), img[i*fwChunk:end], false)
		}
	}
}

func firmwareEvent(t *testing.T, a *app, typ, version string) map[string]any {
	var ev map[string]any
	a.events.WaitFor(t, 10*time.Second, func(m testbroker.Message) bool {
		var e map[string]any
		if json.Unmarshal(m.Payload, &e) != nil || e["type"] != typ || e["version"] != version {
			return false
		}
		ev = e
		return true
	})
	return ev
}

// needAfterCut waits for the firmware_need the restarted device raises for
// version and fails unless it names exactly want, the chunks it never had.
// Events are durable, so a need raised before the cut (at the first
// connect, while chunks were still arriving: a slower broker makes that
// likely) may come first and name chunks received since; each such one must
// still name every chunk in want.
func needAfterCut(t *testing.T, a *app, version string, want []int) {
	t.Helper()
	for {
		ev := firmwareEvent(t, a, "firmware_need", version)
		var named []int
		for _, n := range ev["chunks"].([]any) {
			named = append(named, int(n.(float64)))
		}
		for _, n := range want {
			if !slices.Contains(named, n) {
				t.Fatalf("firmware_need %v omits chunk %d, which the device never had", named, n)
			}
		}
		if len(named) == len(want) {
			return
		}
		t.Logf("a need naming more than the missing chunks (raised before the cut, or wrong): %v", named)
	}
}

func staged(s map[string]any) string {
	fw, _ := s["firmware"].(map[string]any)
	v, _ := fw["staged"].(string)
	return v
}

func TestFirmwareOffersAreVerifiedStagedAndNeverRolledBack(t *testing.T) {
	b := testbroker.Start(t)
	u := newUpdater()
	r := newRig(t, b, u.yaml())
	a := newApp(t, b, r.deviceID)
	r.start()

	img := randomImage(5*fwChunk + 100)
	m := u.manifest("1.1.0", img, "2026-11", false)
	a.must("fw-1", "firmware_offer", u.payload(m, u.priv))
	publishChunks(t, a, "1.1.0", img, nil)
	firmwareEvent(t, a, "firmware_staged", "1.1.0")
	a.state(func(s map[string]any) bool { return staged(s) == "1.1.0" })
	got, err := os.ReadFile(filepath.Join(r.dataDir, "firmware", "staged.img"))
	if err != nil || string(got) != string(img) {
		t.Fatalf("staged image differs from the offer (%v)", err)
	}

	_, stranger, _ := ed25519.GenerateKey(crand.Reader)
	cases := []struct {
		name, id, reason, code string
		payload                map[string]any
	}{
		{"bad signature", "fw-2", "signature", "bad_signature", u.payload(u.manifest("1.2.0", img, "2026-11", false), stranger)},
		{"same version", "fw-3", "rollback", "bad_request", u.payload(u.manifest("1.1.0", img, "2026-11", false), u.priv)},
		{"older than installed", "fw-4", "rollback", "bad_request", u.payload(u.manifest("0.9.0", img, "2026-11", false), u.priv)},
	}
	for _, c := range cases {
		res := a.send(c.id, "firmware_offer", c.payload)
		if res.OK || res.Error.Code != c.code {
			t.Errorf("%s: %+v", c.name, res)
		}
		var m offer
		raw, _ := base64.StdEncoding.DecodeString(c.payload["manifest"].(string))
		json.Unmarshal(raw, &m)
		ev := firmwareEvent(t, a, "firmware_rejected", m.Version)
		if ev["reason"] != c.reason {
			t.Errorf("%s: event %v", c.name, ev)
		}
	}

	// Wrong digest: the image that arrives is not the one signed for.
	bad := u.manifest("1.3.0", img, "2026-11", false)
	bad.SHA256 = hex.EncodeToString(make([]byte, 32))
	a.must("fw-5", "firmware_offer", u.payload(bad, u.priv))
	publishChunks(t, a, "1.3.0", img, nil)
	if ev := firmwareEvent(t, a, "firmware_rejected", "1.3.0"); ev["reason"] != "digest" {
		t.Fatalf("wrong digest: %v", ev)
	}
	// Wrong size: a chunk beyond the manifest is refused, and an image
	// shorter than the manifest never completes; either way nothing new is staged.
	short := u.manifest("1.4.0", img, "2026-11", false)
	short.Size += fwChunk
	short.Chunks++
	a.must("fw-6", "firmware_offer", u.payload(short, u.priv))
	publishChunks(t, a, "1.4.0", append(img, randomImage(10)...), nil)
	if ev := firmwareEvent(t, a, "firmware_rejected", "1.4.0"); ev["reason"] != "size" {
		t.Fatalf("wrong size: %v", ev)
	}
	if s := r.status(); staged(s) != "1.1.0" {
		t.Fatalf("a rejected image was staged: %v", s["firmware"])
	}
	r.stop()
}

func TestFirmwareDownloadResumesAfterRestart(t *testing.T) {
	b := testbroker.Start(t)
	u := newUpdater()
	r := newRig(t, b, u.yaml())
	a := newApp(t, b, r.deviceID)
	r.start()
	img := randomImage(8*fwChunk + 7)
	m := u.manifest("2.0.0", img, "2026-11", false)
	a.must("fw-1", "firmware_offer", u.payload(m, u.priv))
	publishChunks(t, a, "2.0.0", img, func(n int) bool { return n%2 == 0 })
	// Wait until the daemon has the even chunks, then power-cut it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		upd, _ := r.status()["firmware_update"].(map[string]any)
		dl, _ := upd["download"].(map[string]any)
		if dl != nil && num(map[string]any{"x": dl["received"]}, "x") >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("download progress never showed: %v", upd)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.kill()
	r.start()
	// The device asks for what it lacks (contract v2, firmware_need); the
	// cloud sends just that.
	odd := []int{1, 3, 5, 7}
	needAfterCut(t, a, "2.0.0", odd)
	publishChunks(t, a, "2.0.0", img, func(n int) bool { return slices.Contains(odd, n) })
	firmwareEvent(t, a, "firmware_staged", "2.0.0")
	if s := r.status(); staged(s) != "2.0.0" {
		t.Fatalf("after resume: %v", s["firmware"])
	}
	r.stop()
}

func TestP15_MaterialPolicyChangePausesFeaturesUntilAccepted(t *testing.T) {
	b := testbroker.Start(t)
	u := newUpdater()
	r := newRig(t, b, u.yaml()+"photos:\n  keep_per_day: 1\n  min_score: 0\nmqtt:\n  ack_timeout: 1s\n")
	a := newApp(t, b, r.deviceID)
	r.start()
	enableAutoPhoto(a)
	// An upload that nobody acks yet: it must wait out the pause, not be dropped.
	r.drop("before.jpg", photos(t, 1)[0])
	r.waitSpoolEmpty(2 * time.Second)
	a.must("sel", "select_photos", map[string]any{})
	a.state(func(s map[string]any) bool { return num(s, "outbox", "pending") == 1 })
	img := randomImage(3 * fwChunk)
	a.must("fw-1", "firmware_offer", u.payload(u.manifest("1.5.0", img, "2027-01", true), u.priv))
	publishChunks(t, a, "1.5.0", img, nil)
	firmwareEvent(t, a, "firmware_staged", "1.5.0")
	a.state(func(s map[string]any) bool { return s["paused_for_policy"] == "2027-01" })

	// Photos are refused while paused, though the switch stays on.
	r.drop("paused.jpg", photos(t, 1)[0])
	r.waitSpoolEmpty(2 * time.Second)
	if c := r.today(); c.Refused != 1 || c.Admitted != 1 {
		t.Fatalf("photo while paused: %+v", c)
	}
	// Accepting another version does not lift it; the named one does.
	a.must("p-old", "accept_policy", map[string]any{"version": "2026-11"})
	if s := r.status(); s["paused_for_policy"] != "2027-01" {
		t.Fatalf("pause lifted by the wrong version: %v", s["paused_for_policy"])
	}
	time.Sleep(2 * time.Second) // several resend attempts while paused
	if st := r.status(); num(st, "outbox", "pending") != 1 {
		t.Fatalf("the queued upload did not wait out the pause: %v", st["outbox"])
	}
	a.must("p-new", "accept_policy", map[string]any{"version": "2027-01"})
	a.state(func(s map[string]any) bool { return s["paused_for_policy"] == "" && s["policy_version"] == "2027-01" })
	newCloud(t, b, a).receive("photo", true)
	a.state(func(s map[string]any) bool { return num(s, "outbox", "pending") == 0 })
	r.drop("resumed.jpg", photos(t, 1)[0])
	r.waitSpoolEmpty(2 * time.Second)
	if c := r.today(); c.Admitted != 2 {
		t.Fatalf("photo after accepting: %+v", c)
	}
	out, _ := r.ctl("audit", "-limit", "100", "--json")
	for _, typ := range []string{"firmware_staged", "paused_for_policy", "policy_accepted"} {
		if !json.Valid([]byte(out)) || !contains(out, typ) {
			t.Errorf("audit lacks %s", typ)
		}
	}
	r.stop()
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
