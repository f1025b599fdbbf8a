package main

import (
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
	"github.com/aibo-privacy/aibo-privacyd/internal/testbroker"
)

// The end-to-end tests of what comes in from the broker: the persistent
// session, signed-command windows and device binding, strict JSON, sizes,
// and the keys refused at start-up.

// waitResult waits at most d for the result of command id.
func (a *app) waitResult(id string, d time.Duration) result {
	a.t.Helper()
	var r result
	a.results.WaitFor(a.t, d, func(m testbroker.Message) bool {
		var got result
		return json.Unmarshal(m.Payload, &got) == nil && got.ID == id && json.Unmarshal(m.Payload, &r) == nil
	})
	return r
}

// signer holds a command key pair and signs command bodies.
type signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newSigner(t *testing.T) *signer {
	pub, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{priv: priv, pub: pub}
}

func (s *signer) yaml() string {
	return "security:\n  command_keys:\n    k1: " + base64.StdEncoding.EncodeToString(s.pub) + "\n"
}

// sign signs {id, type, device_id, issued_at, payload}; device "" leaves
// device_id out.
func (s *signer) sign(id, typ, device string, at time.Time, payload any) []byte {
	m := map[string]any{"id": id, "type": typ, "issued_at": at.UTC().Format(time.RFC3339), "payload": payload}
	if device != "" {
		m["device_id"] = device
	}
	body, _ := json.Marshal(m)
	return envelope.Sign("k1", s.priv, body)
}

// TestP5_WithdrawalSentWhileTheRobotIsOffIsAppliedOnReturn: the session is
// persistent, so a revoke_consent published at QoS 1 while the daemon is
// stopped is delivered when it comes back and applied at once.
func TestP5_WithdrawalSentWhileTheRobotIsOffIsAppliedOnReturn(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "faces:\n  enrollment_samples: 3\n")
	a := newApp(t, b, r.deviceID)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	a.must("feat", "set_features", map[string]any{"patrol": true})
	a.must("g-alice", "grant_consent", map[string]any{"subject_id": "alice", "display_name": "Alice", "granted_by": "self", "scopes": []string{"face_recognition"}})
	a.must("e-alice", "start_enrollment", map[string]any{"subject_id": "alice"})
	for n := 1; n <= 3; n++ {
		img, _ := scene(orl(t, "s2", n))
		r.dropFrame("alice"+strconv.Itoa(n)+".png", encodePNG(t, img))
	}
	if ev := eventOf(t, a, "enrollment_completed"); ev["subject_id"] != "alice" {
		t.Fatalf("enrollment: %v", ev)
	}
	if n := faceRecords(t, r); n == 0 {
		t.Fatal("no face records before the withdrawal: the test would check nothing")
	}
	r.stop()

	// The owner withdraws from the app while the robot is off.
	raw, _ := json.Marshal(map[string]any{"id": "rv-offline", "type": "revoke_consent", "issued_at": time.Now().UTC().Format(time.RFC3339), "payload": map[string]any{"subject_id": "alice"}})
	a.c.Publish(t, a.topic("cmd"), raw, false)
	time.Sleep(200 * time.Millisecond)

	started := time.Now()
	r.start()
	res := a.waitResult("rv-offline", time.Second) // within 1 s of its return
	if !res.OK {
		t.Fatalf("withdrawal sent while off: %+v", res.Error)
	}
	t.Logf("result at most %s after the daemon was started", time.Since(started).Round(time.Millisecond))
	if n := faceRecords(t, r); n != 0 {
		t.Fatalf("%d face records left after the withdrawal", n)
	}
	if ev := eventOf(t, a, "erase_request"); ev["subject_id"] != "alice" {
		t.Fatalf("erase_request %v", ev)
	}
	// Status and its last will still work with the persistent session:
	// online again now, offline after a kill -9, online after the restart.
	a.status.WaitFor(t, 5*time.Second, func(m testbroker.Message) bool { return string(m.Payload) == "online" })
	r.kill()
	a.status.WaitFor(t, 5*time.Second, func(m testbroker.Message) bool { return string(m.Payload) == "offline" })
	r.start()
	a.status.WaitFor(t, 5*time.Second, func(m testbroker.Message) bool { return string(m.Payload) == "online" })
	late := b.Client(t).Subscribe(t, a.topic("status")).Next(t, 5*time.Second)
	if !late.Retained || string(late.Payload) != "online" {
		t.Fatalf("retained status after restart: %q retained=%v", late.Payload, late.Retained)
	}
	r.stop()
	if keys := keysMentioning(t, r, "alice"); len(keys) != 0 {
		t.Fatalf("the store still holds %v about alice", keys)
	}
}

// TestP5_SignedWithdrawalsMayBeLateGrantsMayNot (contract v3): with signed
// commands, a withdrawal is applied whatever its age and also when it was
// issued ahead of the device clock (a clock behind after a boot used to
// refuse it expired and lose it); it acts only on what was recorded before
// it was issued, and one older than the owner's last choice for its
// setting is superseded; switching a feature on two hours late is
// expired.
func TestP5_SignedWithdrawalsMayBeLateGrantsMayNot(t *testing.T) {
	b := testbroker.Start(t)
	s := newSigner(t)
	r := newRig(t, b, s.yaml())
	a := newApp(t, b, r.deviceID)
	r.start()
	now, old := time.Now(), time.Now().Add(-2*time.Hour)
	for _, c := range []struct {
		id, typ string
		payload any
	}{{"acc", "accept_policy", map[string]any{"version": "v1"}}, {"on", "set_features", map[string]any{"auto_photo": true}}} {
		if res := a.sendRaw(c.id, s.sign(c.id, c.typ, r.deviceID, now, c.payload)); !res.OK {
			t.Fatalf("%s: %+v", c.id, res.Error)
		}
	}
	for i, p := range photos(t, 3) {
		r.drop(name("p", i), p)
	}
	r.waitSpoolEmpty(2 * time.Second)
	if c := r.today(); c.Admitted != 3 || vaultFiles(t, r) != 3 {
		t.Fatalf("admitted %d, vault %d", c.Admitted, vaultFiles(t, r))
	}

	// Issued two hours ago, before these photos were taken: applied, and
	// they stay.
	res := a.sendRaw("del-old", s.sign("del-old", "delete_data", r.deviceID, old, map[string]any{"categories": []string{"photos"}}))
	if !res.OK {
		t.Fatalf("delete_data issued 2 h ago: %+v", res.Error)
	}
	if n := vaultFiles(t, r); n != 3 {
		t.Fatalf("%d photos left after a delete_data issued before they were taken, want 3", n)
	}
	// Issued an hour ahead of the device clock: applied, they go.
	if res := a.sendRaw("del-ahead", s.sign("del-ahead", "delete_data", r.deviceID, now.Add(time.Hour), map[string]any{"categories": []string{"photos"}})); !res.OK {
		t.Fatalf("delete_data issued 1 h ahead of the device clock: %+v", res.Error)
	}
	if n := vaultFiles(t, r); n != 0 {
		t.Fatalf("%d photos left after a delete_data issued after they were taken", n)
	}
	// Switching off with a command older than the switch-on: superseded.
	if res := a.sendRaw("off-old", s.sign("off-old", "set_features", r.deviceID, old, map[string]any{"auto_photo": false})); res.OK || res.Error.Code != "superseded" {
		t.Fatalf("switching off, issued before the switch-on: %+v, want superseded", res)
	}
	if !feature(r.status(), "auto_photo") {
		t.Fatal("a switch-off older than the switch-on took effect")
	}
	if res := a.sendRaw("off-new", s.sign("off-new", "set_features", r.deviceID, now.Add(time.Second), map[string]any{"auto_photo": false})); !res.OK {
		t.Fatalf("switching off: %+v", res.Error)
	}
	res = a.sendRaw("on-old", s.sign("on-old", "set_features", r.deviceID, old, map[string]any{"auto_photo": true}))
	if res.OK || res.Error.Code != "expired" {
		t.Fatalf("switching on, issued 2 h ago: %+v, want expired", res)
	}
	if feature(r.status(), "auto_photo") {
		t.Fatal("a late switch-on took effect")
	}
	// The late withdrawal, replayed, is answered from memory: no second effect.
	before := auditCount(t, r)
	if res := a.sendRaw("del-old", s.sign("del-old", "delete_data", r.deviceID, old, map[string]any{"categories": []string{"photos"}})); !res.OK {
		t.Fatalf("replay: %+v", res.Error)
	}
	if got := auditCount(t, r); got != before {
		t.Fatalf("the replay added %d audit records", got-before)
	}
	r.stop()
}

// TestP16_SignedCommandsNameTheirDevice: a command signed with the fleet's
// key for another robot, or for none, is refused wrong_device and has no
// effect.
func TestP16_SignedCommandsNameTheirDevice(t *testing.T) {
	b := testbroker.Start(t)
	s := newSigner(t)
	r := newRig(t, b, s.yaml())
	a := newApp(t, b, r.deviceID)
	r.start()
	now := time.Now()
	for id, device := range map[string]string{"other": "aibo-9999", "none": ""} {
		res := a.sendRaw(id, s.sign(id, "accept_policy", device, now, map[string]any{"version": "v1"}))
		if res.OK || res.Error.Code != "wrong_device" {
			t.Fatalf("signed for %q: %+v, want wrong_device", device, res)
		}
	}
	if v, _ := r.status()["policy_version"].(string); v != "" {
		t.Fatalf("a command for another device was applied: policy_version %q", v)
	}
	// The same id signed for this device still works: refusals use up nothing.
	if res := a.sendRaw("other", s.sign("other", "accept_policy", r.deviceID, now, map[string]any{"version": "v1"})); !res.OK {
		t.Fatalf("%+v", res.Error)
	}
	r.stop()
}

// TestP16_CommandJSONIsStrict: a member given twice, a name in another
// case, at the top or in the payload, is refused, never "the last one
// wins" or "close enough".
func TestP16_CommandJSONIsStrict(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	a.must("acc", "accept_policy", map[string]any{"version": "v1"})
	for _, c := range []struct{ id, raw string }{
		{"two-types", `{"id":"two-types","type":"select_photos","type":"set_features","payload":{"auto_photo":true}}`},
		{"two-ids", `{"id":"two-ids","id":"other","type":"set_features","payload":{"auto_photo":true}}`},
		{"dup-payload", `{"id":"dup-payload","type":"set_features","payload":{"auto_photo":false,"auto_photo":true}}`},
		{"case-payload", `{"id":"case-payload","type":"set_features","payload":{"Auto_Photo":true}}`},
		{"case-type", `{"id":"case-type","Type":"set_features","payload":{"auto_photo":true}}`},
	} {
		res := a.sendRaw(c.id, []byte(c.raw))
		if res.OK || res.Error.Code != "bad_request" {
			t.Errorf("%s: %+v, want bad_request", c.id, res)
		}
	}
	if feature(r.status(), "auto_photo") {
		t.Fatal("a loose command switched auto_photo on")
	}
	// A case-folded id is no id: nothing to answer, a log line.
	a.c.Publish(t, a.topic("cmd"), []byte(`{"ID":"folded","type":"set_features","payload":{"auto_photo":true}}`), false)
	a.must("after", "set_features", map[string]any{"auto_photo": false})
	for _, m := range a.results.All() {
		if strings.Contains(string(m.Payload), "folded") {
			t.Fatalf("answered a command whose id was case-folded: %s", m.Payload)
		}
	}
	r.stop()
}

// TestP16_OversizedAndDeepCommandsAreAnswered: commands of 512 KiB and
// more, or nested 20,000 levels, are refused bad_request with their id (read
// by a bounded scan), an unknown type is logged cut short, a packet over
// the broker's max_packet_size never reaches the daemon, and the daemon
// keeps working. Behind a broker that bounds no packet (RabbitMQ 3.10's
// MQTT plugin has no such setting) the same 1 MiB packet does reach the
// daemon, which must then answer it bad_request like any oversized
// command: the assertion follows the broker, it is never skipped.
func TestP16_OversizedAndDeepCommandsAreAnswered(t *testing.T) {
	b := testbroker.Start(t)
	r := newRig(t, b, "")
	a := newApp(t, b, r.deviceID)
	r.start()
	pad := strings.Repeat("x", 600<<10)
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for _, c := range []struct{ id, raw, code string }{
		{"big-first", `{"id":"big-first","type":"accept_policy","payload":{"version":"` + pad + `"}}`, "bad_request"},
		{"big-last", `{"type":"accept_policy","payload":{"version":"` + pad + `"},"id":"big-last"}`, "bad_request"},
		{"big-512", `{"id":"big-512","type":"x","p":"` + strings.Repeat("y", 512<<10) + `"}`, "bad_request"},
		{"deep-first", `{"id":"deep-first","type":"accept_policy","payload":{"v":` + deep + `}}`, "bad_request"},
		{"deep-last", `{"type":"accept_policy","payload":{"v":` + deep + `},"id":"deep-last"}`, "bad_request"},
		{"long-type", `{"id":"long-type","type":"` + strings.Repeat("t", 200<<10) + `"}`, "unknown_type"},
	} {
		res := a.sendRaw(c.id, []byte(c.raw))
		if res.OK || res.Error == nil || res.Error.Code != c.code {
			t.Errorf("%s: %+v, want %s", c.id, res, c.code)
		}
	}
	huge := []byte(`{"id":"huge","type":"x","p":"` + strings.Repeat("z", testbroker.MaxPacketSize) + `"}`)
	if b.PacketBound > 0 {
		// Over the broker's bound: the publisher is dropped, nothing arrives.
		if len(huge) <= b.PacketBound {
			t.Fatalf("the test packet (%d bytes) is within the broker's bound %d", len(huge), b.PacketBound)
		}
		if err := b.Client(t).TryPublish(a.topic("cmd"), huge, false); err == nil {
			t.Fatal("the broker took a packet over max_packet_size")
		}
		a.must("after", "accept_policy", map[string]any{"version": "v1"})
		for _, m := range a.results.All() {
			if strings.Contains(string(m.Payload), `"huge"`) {
				t.Fatal("a packet over max_packet_size reached the daemon")
			}
		}
	} else {
		// No bound at the broker: the daemon's own bound answers it.
		if res := a.sendRaw("huge", huge); res.OK || res.Error == nil || res.Error.Code != "bad_request" {
			t.Errorf("huge, through a broker that bounds no packet: %+v, want bad_request", res)
		}
		a.must("after", "accept_policy", map[string]any{"version": "v1"})
	}
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if len(line) > 4<<10 {
			t.Fatalf("a log line of %d bytes: %.200s…", len(line), line)
		}
	}
	r.waitHealthy(10 * time.Second)
	r.stop()
}

// TestP16_KeysAnyoneCanSignForStopTheStart: a small-order or all-zero key
// in security.command_keys or firmware.keys, or the production example's
// placeholders, end the process at start with exit 1 and one line.
func TestP16_KeysAnyoneCanSignForStopTheStart(t *testing.T) {
	identity, _ := hex.DecodeString("0100000000000000000000000000000000000000000000000000000000000000")
	order8, _ := hex.DecodeString("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	for name, extra := range map[string]string{
		"identity command key": "security:\n  command_keys:\n    k1: " + base64.StdEncoding.EncodeToString(identity) + "\n",
		"all-zero command key": "security:\n  command_keys:\n    k1: " + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n",
		"order-8 firmware key": "firmware:\n  keys:\n    f1: " + base64.StdEncoding.EncodeToString(order8) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, nil, extra)
			out, code := runOnce(t, "-config", r.config)
			if code != 1 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.HasPrefix(out, "aibo-privacyd: ") || !strings.Contains(out, "keys") {
				t.Fatalf("exit %d, %q: want exit 1 and one line naming the key", code, out)
			}
		})
	}
	out, code := runOnce(t, "-config", "../../configs/production.example.yaml")
	if code != 1 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "REPLACE") && !strings.Contains(out, "key") {
		t.Fatalf("production example: exit %d %q", code, out)
	}
}
