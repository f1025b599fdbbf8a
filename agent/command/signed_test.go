package command

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
)

const testDevice = "aibo-0001"

// signedBody is a command body as the cloud signs it.
func signedBody(id, typ string, at time.Time, payload any) []byte {
	if payload == nil {
		payload = map[string]any{}
	}
	raw, _ := json.Marshal(map[string]any{"id": id, "type": typ, "device_id": testDevice, "issued_at": at.Format(time.RFC3339), "payload": payload})
	return raw
}

func TestP16_SignedCommands(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	pub1, priv1, _ := ed25519.GenerateKey(rand.Reader)
	pub2, priv2, _ := ed25519.GenerateKey(rand.Reader)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	d, st := newDispatcher(t, Options{
		Now:          func() time.Time { return now },
		DeviceID:     testDevice,
		Authenticate: Verifier(map[string]ed25519.PublicKey{"k1": pub1, "k2": pub2}),
	})
	counter(t, d)
	body := func(id string, at time.Time) []byte { return signedBody(id, "bump", at, nil) }
	cases := []struct {
		name, id, code string
		raw            []byte
	}{
		{"unsigned", "u1", CodeUnsigned, body("u1", now)},
		{"unknown kid", "b1", CodeBadSignature, envelope.Sign("k9", priv1, body("b1", now))},
		{"stranger's key", "b2", CodeBadSignature, envelope.Sign("k1", stranger, body("b2", now))},
		{"wrong kid for key", "b3", CodeBadSignature, envelope.Sign("k2", priv1, body("b3", now))},
		{"tampered body", "b4", CodeBadSignature, tamper(envelope.Sign("k1", priv1, body("b4", now)))},
		{"too old", "e1", CodeExpired, envelope.Sign("k1", priv1, body("e1", now.Add(-6*time.Minute)))},
		{"from the future", "e2", CodeExpired, envelope.Sign("k1", priv1, body("e2", now.Add(6*time.Minute)))},
		{"no issued_at", "n1", CodeBadRequest, envelope.Sign("k1", priv1, []byte(`{"id":"n1","type":"bump","device_id":"`+testDevice+`"}`))},
		{"envelope member twice", "", "", []byte(`{"kid":"k1","kid":"k2","body":"e30=","sig":""}`)},
	}
	for _, c := range cases {
		out := d.Handle(context.Background(), c.raw)
		if c.id == "" {
			if out != nil {
				t.Errorf("%s: answered %s", c.name, out)
			}
			continue
		}
		r := decodeResult(t, out)
		if r.OK || r.ID != c.id || r.Error.Code != c.code {
			t.Errorf("%s: %+v, want id %s code %s", c.name, r, c.id, c.code)
		}
	}
	if readCounter(st) != 0 {
		t.Fatal("a refused signed command had an effect")
	}
	// Both rotation keys work; a refused forgery did not use up the id.
	for _, ok := range [][]byte{envelope.Sign("k1", priv1, body("b1", now)), envelope.Sign("k2", priv2, body("g2", now.Add(-4*time.Minute)))} {
		if r := decodeResult(t, d.Handle(context.Background(), ok)); !r.OK {
			t.Fatalf("good signed command refused: %+v", r)
		}
	}
	// A replay of a good command answers the stored result and acts once.
	replay := envelope.Sign("k1", priv1, body("r1", now))
	d.Handle(context.Background(), replay)
	d.Handle(context.Background(), replay)
	if readCounter(st) != 3 {
		t.Fatalf("counter %d, want 3", readCounter(st))
	}
}

// TestP16_SignedCommandsAreBoundToTheirDevice: with fleet-wide keys, a
// command captured for one robot must not run on another.
func TestP16_SignedCommandsAreBoundToTheirDevice(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d, st := newDispatcher(t, Options{Now: func() time.Time { return now }, DeviceID: testDevice,
		Authenticate: Verifier(map[string]ed25519.PublicKey{"k1": pub})})
	counter(t, d)
	at := now.Format(time.RFC3339)
	for name, body := range map[string]string{
		"other device":       `{"id":"w1","type":"bump","device_id":"aibo-0002","issued_at":"` + at + `"}`,
		"no device":          `{"id":"w2","type":"bump","issued_at":"` + at + `"}`,
		"case-folded member": `{"id":"w3","type":"bump","Device_ID":"` + testDevice + `","issued_at":"` + at + `"}`,
		"prefix of the id":   `{"id":"w4","type":"bump","device_id":"aibo-000","issued_at":"` + at + `"}`,
	} {
		r := decodeResult(t, d.Handle(context.Background(), envelope.Sign("k1", priv, []byte(body))))
		if r.OK || r.Error.Code != CodeWrongDevice {
			t.Errorf("%s: %+v, want wrong_device", name, r)
		}
	}
	// device_id given twice is a parser differential, refused as such.
	twice := `{"id":"w5","type":"bump","device_id":"aibo-0002","device_id":"` + testDevice + `","issued_at":"` + at + `"}`
	if r := decodeResult(t, d.Handle(context.Background(), envelope.Sign("k1", priv, []byte(twice)))); r.OK || r.Error.Code != CodeBadRequest || r.ID != "w5" {
		t.Errorf("device_id twice: %+v", r)
	}
	if readCounter(st) != 0 {
		t.Fatal("a command for another device had an effect")
	}
	if r := decodeResult(t, d.Handle(context.Background(), envelope.Sign("k1", priv, signedBody("w1", "bump", now, nil)))); !r.OK {
		t.Fatalf("the same id, signed for this device, was refused: %+v", r)
	}
}

// TestP5_LateWithdrawalsAreAcceptedAndGrantsAreNot: a withdrawal queued
// while the robot was off is applied up to the id retention after it was
// issued; anything that grants or enables keeps the 5-minute window.
func TestP5_LateWithdrawalsAreAcceptedAndGrantsAreNot(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	retention := 30 * 24 * time.Hour
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d, _ := newDispatcher(t, Options{Now: func() time.Time { return now }, DeviceID: testDevice, IDRetention: retention,
		Authenticate: Verifier(map[string]ed25519.PublicKey{"k1": pub})})
	ran := map[string]int{}
	for _, typ := range []string{"revoke_consent", "delete_data", "cancel_enrollment", "set_features", "grant_consent", "accept_policy"} {
		d.Register(typ, func(ctx context.Context, e *Exec) (any, error) { ran[typ]++; return nil, nil })
	}
	twoHours := now.Add(-2 * time.Hour)
	cases := []struct {
		id, typ string
		at      time.Time
		payload any
		code    string // "" = accepted
	}{
		{"l1", "revoke_consent", twoHours, map[string]any{"subject_id": "p1"}, ""},
		{"l2", "delete_data", twoHours, map[string]any{"categories": []string{"all"}}, ""},
		{"l3", "cancel_enrollment", twoHours, map[string]any{"subject_id": "p1"}, ""},
		{"l4", "set_features", twoHours, map[string]any{"auto_photo": false, "patrol": false}, ""},
		{"l5", "delete_data", now.Add(-retention + time.Minute), map[string]any{"categories": []string{"photos"}}, ""},
		{"x1", "set_features", twoHours, map[string]any{"auto_photo": true}, CodeExpired},
		{"x2", "set_features", twoHours, map[string]any{"auto_photo": false, "patrol": true}, CodeExpired},
		{"x3", "set_features", twoHours, map[string]any{}, CodeExpired},
		{"x4", "set_features", twoHours, map[string]any{"auto_photo": "false"}, CodeExpired},
		{"x5", "grant_consent", twoHours, map[string]any{"subject_id": "p1"}, CodeExpired},
		{"x6", "accept_policy", twoHours, map[string]any{"version": "v1"}, CodeExpired},
		{"x7", "delete_data", now.Add(-retention - time.Minute), map[string]any{"categories": []string{"all"}}, CodeExpired},
		{"x8", "revoke_consent", now.Add(6 * time.Minute), map[string]any{"subject_id": "p1"}, CodeExpired},
	}
	for _, c := range cases {
		r := decodeResult(t, d.Handle(context.Background(), envelope.Sign("k1", priv, signedBody(c.id, c.typ, c.at, c.payload))))
		if c.code == "" && !r.OK {
			t.Errorf("%s %s issued %s ago: refused %+v", c.id, c.typ, now.Sub(c.at), r.Error)
		}
		if c.code != "" && (r.OK || r.Error.Code != c.code) {
			t.Errorf("%s %s issued %s ago: %+v, want %s", c.id, c.typ, now.Sub(c.at), r, c.code)
		}
	}
	for _, typ := range []string{"grant_consent", "accept_policy"} {
		if ran[typ] != 0 {
			t.Errorf("%s ran although expired", typ)
		}
	}
	if ran["set_features"] != 1 {
		t.Errorf("set_features ran %d times, want once (the all-false one)", ran["set_features"])
	}
}

// TestP16_ALateWithdrawalIsNeverReplayed: the withdrawal window and the id
// memory agree, so a replay is either recognised or expired, never run
// again: after the retention, after the id cap pushed the id out, and for
// a command issued (within the skew) in the future.
func TestP16_ALateWithdrawalIsNeverReplayed(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	retention := 48 * time.Hour
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d, st := newDispatcher(t, Options{Now: func() time.Time { return now }, DeviceID: testDevice, IDRetention: retention, MaxIDs: 3,
		Authenticate: Verifier(map[string]ed25519.PublicKey{"k1": pub})})
	counter(t, d)
	d.Register("delete_data", d.handlers["bump"])
	send := func(raw []byte) Result { return decodeResult(t, d.Handle(context.Background(), raw)) }

	early := envelope.Sign("k1", priv, signedBody("del-future", "delete_data", now.Add(4*time.Minute), nil))
	old := envelope.Sign("k1", priv, signedBody("del-old", "delete_data", now.Add(-47*time.Hour), nil))
	for _, raw := range [][]byte{early, old} {
		if r := send(raw); !r.OK {
			t.Fatalf("withdrawal refused: %+v", r)
		}
	}
	if readCounter(st) != 2 {
		t.Fatalf("counter %d", readCounter(st))
	}
	// Just before the future one's window closes, its id is still known,
	// even after a new record pruned what had passed its retention.
	now = now.Add(4*time.Minute + retention - time.Second)
	if r := send(envelope.Sign("k1", priv, signedBody("prune", "bump", now, nil))); !r.OK {
		t.Fatalf("%+v", r)
	}
	if r := send(early); !r.OK || readCounter(st) != 3 {
		t.Fatalf("replay inside the window: %+v, counter %d", r, readCounter(st))
	}
	if r := send(old); r.OK || r.Error.Code != CodeExpired {
		t.Fatalf("replay after the window: %+v", r)
	}
	// The id cap (3) pushes both out with fresh commands; a replay of the
	// forgotten one inside its window is expired, not run again.
	now = now.Add(time.Hour)
	late := envelope.Sign("k1", priv, signedBody("del-late", "delete_data", now.Add(-time.Hour), nil))
	if r := send(late); !r.OK {
		t.Fatalf("%+v", r)
	}
	for i := range 3 {
		if r := send(envelope.Sign("k1", priv, signedBody("fresh-"+string(rune('a'+i)), "bump", now, nil))); !r.OK {
			t.Fatalf("%+v", r)
		}
	}
	if _, known := d.lookup("del-late"); known {
		t.Fatal("the cap did not push the id out: the test checks nothing")
	}
	before := readCounter(st)
	if r := send(late); r.OK || r.Error.Code != CodeExpired || readCounter(st) != before {
		t.Fatalf("replay of a forgotten id: %+v, counter %d -> %d", r, before, readCounter(st))
	}
	// A newer withdrawal still goes through.
	if r := send(envelope.Sign("k1", priv, signedBody("del-new", "delete_data", now.Add(-time.Minute), nil))); !r.OK {
		t.Fatalf("newer withdrawal refused: %+v", r)
	}
}

func TestWithdraws(t *testing.T) {
	for payload, want := range map[string]bool{
		`{"auto_photo":false}`:                   true,
		`{"auto_photo":false,"patrol":false}`:    true,
		`{"auto_photo":false,"patrol":true}`:     false,
		`{}`:                                     false,
		`{"auto_photo":null}`:                    false,
		`{"auto_photo":0}`:                       false,
		`{"auto_photo":false,"auto_photo":true}`: false,
	} {
		if got := Withdraws(Command{Type: "set_features", Payload: json.RawMessage(payload)}); got != want {
			t.Errorf("set_features %s: %v, want %v", payload, got, want)
		}
	}
	for typ, want := range map[string]bool{"revoke_consent": true, "delete_data": true, "cancel_enrollment": true,
		"grant_consent": false, "start_enrollment": false, "accept_policy": false, "firmware_offer": false, "export_inventory": false} {
		if got := Withdraws(Command{Type: typ, Payload: json.RawMessage(`{}`)}); got != want {
			t.Errorf("%s: %v, want %v", typ, got, want)
		}
	}
}

// tamper changes the signed body (the command type) but keeps it readable.
func tamper(env []byte) []byte {
	var m map[string]string
	json.Unmarshal(env, &m)
	body, _ := base64.StdEncoding.DecodeString(m["body"])
	m["body"] = base64.StdEncoding.EncodeToString(bytes.Replace(body, []byte("bump"), []byte("bumq"), 1))
	out, _ := json.Marshal(m)
	return out
}

func FuzzVerifier(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	f.Add(envelope.Sign("k1", priv, []byte(`{"id":"a","type":"b","device_id":"aibo-0001","issued_at":"2026-11-22T09:00:00Z"}`)))
	f.Add(envelope.Sign("k1", priv, []byte(`{"id":"a","type":"b","device_id":"aibo-0001","device_id":"x","issued_at":"2026-11-22T09:00:00Z"}`)))
	f.Add([]byte(`{"kid":"k1","body":"!!","sig":""}`))
	f.Add([]byte(`{"kid":"k1","kid":"k1","body":"e30=","sig":""}`))
	f.Add([]byte(`{"id":"x"}`))
	verify := Verifier(map[string]ed25519.PublicKey{"k1": pub})
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, id, e := verify(raw, now)
		if e == nil && (v.Body == nil || !v.Signed) {
			t.Fatal("accepted without a verified body")
		}
		if len(id) > 64 || strings.ContainsAny(id, " \n") {
			t.Fatalf("id %q", id)
		}
	})
}
