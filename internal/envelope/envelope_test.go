package envelope

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
)

func TestASignedBodyOpensAndVerifiesOnlyWithItsKey(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	body := []byte(`{"id":"1","type":"select_photos"}`)
	env, err := Open(Sign("k1", priv, body))
	if err != nil {
		t.Fatal(err)
	}
	if env.Kid != "k1" || string(env.Body) != string(body) {
		t.Fatalf("opened %+v", env)
	}
	if !env.Verify(pub) {
		t.Fatal("the signer's key does not verify")
	}
	if env.Verify(other) || env.Verify(nil) {
		t.Fatal("another key verifies")
	}
	env.Body = append(env.Body, ' ')
	if env.Verify(pub) {
		t.Fatal("a changed body verifies")
	}
}

func TestWhatIsNotAnEnvelopeIsToldApart(t *testing.T) {
	for raw, want := range map[string]error{
		`{"id":"1","type":"x"}`:                    ErrNotEnvelope,
		`{"kid":"k","body":"%%%","sig":"AAAA"}`:    ErrBadBody,
		`{"kid":"k","kid":"j","body":"","sig":""}`: nil, // strict decoding: an error, but not one of ours
	} {
		_, err := Open([]byte(raw))
		if want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", raw, err, want)
		}
		if want == nil && (err == nil || errors.Is(err, ErrNotEnvelope) || errors.Is(err, ErrBadBody)) {
			t.Errorf("%s: %v, want the decoder's error", raw, err)
		}
	}
}
