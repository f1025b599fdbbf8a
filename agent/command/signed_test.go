package command

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
)

func TestP16_SignedCommands(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	pub1, priv1, _ := ed25519.GenerateKey(rand.Reader)
	pub2, priv2, _ := ed25519.GenerateKey(rand.Reader)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	d, st := newDispatcher(t, Options{
		Now:          func() time.Time { return now },
		Authenticate: Verifier(map[string]ed25519.PublicKey{"k1": pub1, "k2": pub2}),
	})
	counter(t, d)
	body := func(id string, at time.Time) []byte {
		raw, _ := json.Marshal(map[string]any{"id": id, "type": "bump", "issued_at": at.Format(time.RFC3339), "payload": map[string]any{}})
		return raw
	}
	cases := []struct {
		name, id, code string
		raw            []byte
	}{
		{"unsigned", "u1", CodeUnsigned, body("u1", now)},
		{"unknown kid", "b1", CodeBadSignature, Sign("k9", priv1, body("b1", now))},
		{"stranger's key", "b2", CodeBadSignature, Sign("k1", stranger, body("b2", now))},
		{"wrong kid for key", "b3", CodeBadSignature, Sign("k2", priv1, body("b3", now))},
		{"tampered body", "b4", CodeBadSignature, tamper(Sign("k1", priv1, body("b4", now)))},
		{"too old", "e1", CodeExpired, Sign("k1", priv1, body("e1", now.Add(-6*time.Minute)))},
		{"from the future", "e2", CodeExpired, Sign("k1", priv1, body("e2", now.Add(6*time.Minute)))},
		{"no issued_at", "n1", CodeBadRequest, Sign("k1", priv1, []byte(`{"id":"n1","type":"bump"}`))},
	}
	for _, c := range cases {
		r := decodeResult(t, d.Handle(context.Background(), c.raw))
		if r.OK || r.ID != c.id || r.Error.Code != c.code {
			t.Errorf("%s: %+v, want id %s code %s", c.name, r, c.id, c.code)
		}
	}
	if readCounter(st) != 0 {
		t.Fatal("a refused signed command had an effect")
	}
	// Both rotation keys work; a refused forgery did not use up the id.
	for _, ok := range [][]byte{Sign("k1", priv1, body("b1", now)), Sign("k2", priv2, body("g2", now.Add(-4*time.Minute)))} {
		if r := decodeResult(t, d.Handle(context.Background(), ok)); !r.OK {
			t.Fatalf("good signed command refused: %+v", r)
		}
	}
	// A replay of a good command answers the stored result and acts once.
	replay := Sign("k1", priv1, body("r1", now))
	d.Handle(context.Background(), replay)
	d.Handle(context.Background(), replay)
	if readCounter(st) != 3 {
		t.Fatalf("counter %d, want 3", readCounter(st))
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
	f.Add(Sign("k1", priv, []byte(`{"id":"a","type":"b","issued_at":"2026-11-22T09:00:00Z"}`)))
	f.Add([]byte(`{"kid":"k1","body":"!!","sig":""}`))
	f.Add([]byte(`{"id":"x"}`))
	verify := Verifier(map[string]ed25519.PublicKey{"k1": pub})
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		body, id, e := verify(raw, now)
		if e == nil && body == nil {
			t.Fatal("accepted with no body")
		}
		if len(id) > 64 {
			t.Fatalf("id %q", id)
		}
	})
}
