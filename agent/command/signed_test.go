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

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
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

// TestP5_WithdrawalsAreAppliedWhateverTheirAgeOrTheClock (contract v3,
// issue 22 items 1 and 3): a withdrawal is applied whatever its age and
// also when its issued_at is ahead of the device clock (a robot whose
// clock is behind after a boot used to refuse it expired, ack it to the
// broker and lose it). Turning blur_unknown_faces off lowers a
// protection: it keeps the 5-minute window like any grant (it used to
// count as a withdrawal and was accepted 30 days late); turning it on
// withdraws.
func TestP5_WithdrawalsAreAppliedWhateverTheirAgeOrTheClock(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	retention := 30 * 24 * time.Hour
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d, _ := newDispatcher(t, Options{Now: func() time.Time { return now }, DeviceID: testDevice, IDRetention: retention,
		Authenticate: Verifier(map[string]ed25519.PublicKey{"k1": pub})})
	ran := map[string]int{}
	for _, typ := range []string{"revoke_consent", "delete_data", "cancel_enrollment", "set_features", "grant_consent", "accept_policy"} {
		d.Register(typ, func(ctx context.Context, e *Exec) (any, error) { ran[typ]++; return nil, nil })
	}
	twoHours, month, year := now.Add(-2*time.Hour), now.Add(-29*24*time.Hour), now.Add(-365*24*time.Hour)
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
		{"l5", "delete_data", now.Add(-retention - time.Minute), map[string]any{"categories": []string{"photos"}}, ""},
		{"l6", "revoke_consent", year, map[string]any{"subject_id": "p1"}, ""},
		{"l7", "set_features", month, map[string]any{"blur_unknown_faces": true}, ""},
		{"l8", "set_features", month, map[string]any{"blur_unknown_faces": true, "auto_photo": false}, ""},
		// Ahead of the device clock: the clock is behind after a boot.
		{"f1", "revoke_consent", now.Add(6 * time.Minute), map[string]any{"subject_id": "p1"}, ""},
		{"f2", "delete_data", now.Add(3 * 24 * time.Hour), map[string]any{"categories": []string{"faces"}}, ""},
		{"f3", "set_features", now.Add(400 * 24 * time.Hour), map[string]any{"patrol": false}, ""},
		// Anything that grants, enables or lowers a protection: 5 minutes.
		{"x1", "set_features", twoHours, map[string]any{"auto_photo": true}, CodeExpired},
		{"x2", "set_features", twoHours, map[string]any{"auto_photo": false, "patrol": true}, CodeExpired},
		{"x3", "set_features", twoHours, map[string]any{}, CodeExpired},
		{"x4", "set_features", twoHours, map[string]any{"auto_photo": "false"}, CodeExpired},
		{"x5", "grant_consent", twoHours, map[string]any{"subject_id": "p1"}, CodeExpired},
		{"x6", "accept_policy", twoHours, map[string]any{"version": "v1"}, CodeExpired},
		{"x7", "set_features", now.Add(-696 * time.Hour), map[string]any{"blur_unknown_faces": false}, CodeExpired},
		{"x8", "set_features", twoHours, map[string]any{"blur_unknown_faces": false, "auto_photo": false}, CodeExpired},
		{"x9", "grant_consent", now.Add(6 * time.Minute), map[string]any{"subject_id": "p1"}, CodeExpired},
		{"x10", "set_features", now.Add(6 * time.Minute), map[string]any{"blur_unknown_faces": false}, CodeExpired},
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
	if ran["set_features"] != 4 {
		t.Errorf("set_features ran %d times, want 4 (the withdrawals)", ran["set_features"])
	}
}

// TestP5_PendingWithdrawalsSurviveForgottenIDs (issue 22 item 3): a clock
// moved forward past the id retention, or the id cap, forgets remembered
// ids and raises the replay floor; a withdrawal still waiting in the
// broker must be applied all the same (it used to be refused expired for
// good). The floor still stops the replay of a forgotten grant.
func TestP5_PendingWithdrawalsSurviveForgottenIDs(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	retention := 48 * time.Hour
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d, st := newDispatcher(t, Options{Now: func() time.Time { return now }, DeviceID: testDevice, IDRetention: retention, MaxIDs: 3,
		Authenticate: Verifier(map[string]ed25519.PublicKey{"k1": pub})})
	counter(t, d)
	d.Register("delete_data", d.handlers["bump"])
	send := func(raw []byte) Result { return decodeResult(t, d.Handle(context.Background(), raw)) }

	grant := envelope.Sign("k1", priv, signedBody("grant", "bump", now, nil))
	if r := send(grant); !r.OK {
		t.Fatalf("%+v", r)
	}
	pending := envelope.Sign("k1", priv, signedBody("pending", "delete_data", now.Add(time.Minute), nil))
	// The wall clock jumps a week forward: the next command prunes every
	// id (and raises the floor to the grant's issued_at).
	now = now.Add(7 * 24 * time.Hour)
	if r := send(envelope.Sign("k1", priv, signedBody("after-jump", "bump", now, nil))); !r.OK {
		t.Fatalf("%+v", r)
	}
	if _, known := d.lookup("grant"); known {
		t.Fatal("the jump forgot no id: the test checks nothing")
	}
	before := readCounter(st)
	if r := send(pending); !r.OK || readCounter(st) != before+1 {
		t.Fatalf("pending withdrawal after the jump: %+v, counter %d -> %d", r, before, readCounter(st))
	}
	// The replay of the forgotten grant is refused: the floor.
	if r := send(grant); r.OK || r.Error.Code != CodeExpired {
		t.Fatalf("replay of a forgotten grant: %+v", r)
	}
	// The id cap (3) pushes ids out early: a withdrawal delivered after it
	// is applied too.
	for i := range 4 {
		if r := send(envelope.Sign("k1", priv, signedBody("fresh-"+string(rune('a'+i)), "bump", now.Add(time.Duration(i+1)*time.Second), nil))); !r.OK {
			t.Fatalf("%+v", r)
		}
	}
	late := envelope.Sign("k1", priv, signedBody("late", "delete_data", now.Add(-time.Hour), nil))
	if r := send(late); !r.OK {
		t.Fatalf("withdrawal after the cap pushed ids out: %+v", r)
	}
}

func TestWithdraws(t *testing.T) {
	for payload, want := range map[string]bool{
		`{"auto_photo":false}`:                               true,
		`{"auto_photo":false,"patrol":false}`:                true,
		`{"auto_photo":false,"patrol":true}`:                 false,
		`{}`:                                                 false,
		`{"auto_photo":null}`:                                false,
		`{"auto_photo":0}`:                                   false,
		`{"auto_photo":false,"auto_photo":true}`:             false,
		`{"blur_unknown_faces":true}`:                        true,
		`{"blur_unknown_faces":false}`:                       false,
		`{"blur_unknown_faces":true,"cloud_backup":false}`:   true,
		`{"blur_unknown_faces":false,"cloud_backup":false}`:  false,
		`{"blur_unknown_faces":true,"usage_analytics":true}`: false,
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

// TestP5_P14_TheNewestSignedCommandPerSettingWins (contract v3, issue 22
// item 1): a signed command older than the last one applied to a setting
// it names is refused superseded and changes nothing, a command naming
// several settings is applied or refused whole, a family floor stands for
// every setting of the family, and unsigned commands are not ordered.
func TestP5_P14_TheNewestSignedCommandPerSettingWins(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d, st := newDispatcher(t, Options{Now: func() time.Time { return now }, DeviceID: testDevice,
		Authenticate: Verifier(map[string]ed25519.PublicKey{"k1": pub})})
	counter(t, d)
	bump := d.handlers["bump"]
	claim := func(ctx context.Context, e *Exec) (any, error) {
		var p struct {
			Settings []string `json:"settings"`
			Floor    string   `json:"floor"`
		}
		if err := Decode(e.Cmd.Payload, &p); err != nil {
			return nil, err
		}
		if err := e.Claim(p.Settings...); err != nil {
			return nil, err
		}
		if p.Floor != "" {
			if err := e.RaiseFloor(p.Floor); err != nil {
				return nil, err
			}
		}
		e.Cmd.Payload = json.RawMessage(`{}`)
		return bump(ctx, e)
	}
	d.Register("revoke_consent", claim) // a withdrawal: accepted whatever its age
	d.Register("grant_consent", claim)  // 5 minutes
	send := func(id, typ string, at time.Time, settings []string, floor string) Result {
		return decodeResult(t, d.Handle(context.Background(), envelope.Sign("k1", priv,
			signedBody(id, typ, at, map[string]any{"settings": settings, "floor": floor}))))
	}
	// The owner revoked at T1, then granted at T2; the network delivers
	// the grant first. The held-back revocation changes nothing.
	t1, t2 := now.Add(-4*time.Minute), now.Add(-time.Minute)
	if r := send("grant", "grant_consent", t2, []string{"consent/ana"}, ""); !r.OK {
		t.Fatalf("%+v", r)
	}
	n := readCounter(st)
	if r := send("revoke", "revoke_consent", t1, []string{"consent/ana"}, ""); r.OK || r.Error.Code != CodeSuperseded || readCounter(st) != n {
		t.Fatalf("held-back revocation: %+v, counter %d -> %d", r, n, readCounter(st))
	}
	// A later revocation of the same person is applied; a grant replayed
	// late (issued before it) is then superseded too.
	if r := send("revoke2", "revoke_consent", now, []string{"consent/ana"}, ""); !r.OK {
		t.Fatalf("%+v", r)
	}
	if r := send("grant-late", "grant_consent", t2.Add(time.Second), []string{"consent/ana"}, ""); r.OK || r.Error.Code != CodeSuperseded {
		t.Fatalf("late grant after a newer revocation: %+v", r)
	}
	// Two settings, one of them newer: refused whole, the other unchanged.
	n = readCounter(st)
	if r := send("both", "revoke_consent", t2, []string{"consent/bob", "consent/ana"}, ""); r.OK || r.Error.Code != CodeSuperseded || readCounter(st) != n {
		t.Fatalf("a command naming a newer setting: %+v", r)
	}
	if r := send("bob-older", "revoke_consent", t1, []string{"consent/bob"}, ""); !r.OK {
		t.Fatalf("bob's setting was recorded by a refused command: %+v", r)
	}
	// A floor for the family: every consent older than it is superseded,
	// a newer one goes on, and the settings it covers are dropped.
	if r := send("forget-all", "revoke_consent", now.Add(time.Second), nil, "consent/*"); !r.OK {
		t.Fatalf("%+v", r)
	}
	if r := send("carl", "grant_consent", now, []string{"consent/carl"}, ""); r.OK || r.Error.Code != CodeSuperseded {
		t.Fatalf("a grant older than the family floor: %+v", r)
	}
	if r := send("carl2", "grant_consent", now.Add(2*time.Second), []string{"consent/carl"}, ""); !r.OK {
		t.Fatalf("a grant newer than the floor: %+v", r)
	}
	var keys []string
	st.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketCommands).ForEach(func(k, v []byte) error {
			if v != nil && strings.HasPrefix(string(k), settingPrefix) {
				keys = append(keys, string(k))
			}
			return nil
		})
	})
	if strings.Join(keys, " ") != "setting/consent/* setting/consent/carl" {
		t.Fatalf("settings kept: %v", keys)
	}
	// A repeat of a superseded id gets the same answer.
	if r := send("revoke", "revoke_consent", t1, []string{"consent/ana"}, ""); r.OK || r.Error.Code != CodeSuperseded {
		t.Fatalf("repeat: %+v", r)
	}
}

// Unsigned commands carry no trusted time: they are neither ordered nor
// recorded (there are no command keys, so no signed command either).
func TestUnsignedCommandsAreNotOrdered(t *testing.T) {
	d, st := newDispatcher(t, Options{})
	counter(t, d)
	bump := d.handlers["bump"]
	d.Register("set", func(ctx context.Context, e *Exec) (any, error) {
		if err := e.Claim("feature/x"); err != nil {
			return nil, err
		}
		return bump(ctx, e)
	})
	for i, at := range []string{"2026-11-22T09:00:00Z", "2026-11-22T08:00:00Z"} {
		raw := `{"id":"u` + string(rune('0'+i)) + `","type":"set","issued_at":"` + at + `","payload":{}}`
		if r := decodeResult(t, d.Handle(context.Background(), []byte(raw))); !r.OK {
			t.Fatalf("%s: %+v", raw, r)
		}
	}
	if readCounter(st) != 2 {
		t.Fatal("an unsigned command was ordered")
	}
}
