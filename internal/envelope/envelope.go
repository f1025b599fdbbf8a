// Package envelope owns the signed form of a command (contract section 5):
// {"kid", "body": base64(command bytes), "sig": base64(ed25519 over exactly
// those bytes)}, in standard base64 with padding.
//
// It wraps and unwraps; it never decides whether a key is trusted, nor
// reads what the body says. The daemon's dispatcher verifies with its
// configured keys; the signing tools (scripts/sign-command,
// scripts/sign-firmware) and the tests sign with this package alone, so
// no tool reaches into the daemon's composition to make an envelope.
package envelope

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/aibo-privacy/aibo-privacyd/internal/strictjson"
)

// wire is the envelope as decoded strictly: every member must be present.
type wire struct {
	Kid  *string `json:"kid"`
	Body *string `json:"body"`
	Sig  *string `json:"sig"`
}

// Opened is an envelope taken apart; nothing in it is verified yet.
type Opened struct {
	Kid  string
	Body []byte // the signed bytes, base64-decoded
	Sig  string // base64 as it came; Verify decodes it
}

// ErrNotEnvelope: the bytes are JSON of another shape (a plain command, say).
var ErrNotEnvelope = errors.New("not a signed envelope")

// ErrBadBody: the envelope's body is not standard base64.
var ErrBadBody = errors.New("body is not standard base64")

// Open decodes raw strictly. It returns the strict decoder's error for
// bytes that are not JSON of an object, ErrNotEnvelope for an object
// without all three members, ErrBadBody for a body that is not base64.
func Open(raw []byte) (Opened, error) {
	var w wire
	if err := strictjson.Unmarshal(raw, &w); err != nil {
		return Opened{}, err
	}
	if w.Kid == nil || w.Body == nil || w.Sig == nil {
		return Opened{}, ErrNotEnvelope
	}
	body, err := base64.StdEncoding.DecodeString(*w.Body)
	if err != nil {
		return Opened{Kid: *w.Kid, Sig: *w.Sig}, ErrBadBody
	}
	return Opened{Kid: *w.Kid, Body: body, Sig: *w.Sig}, nil
}

// Verify reports whether o.Sig is key's ed25519 signature over o.Body.
func (o Opened) Verify(key ed25519.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(o.Sig)
	return err == nil && len(sig) == ed25519.SignatureSize && len(key) == ed25519.PublicKeySize && ed25519.Verify(key, o.Body, sig)
}

// Sign wraps body in the envelope, signed by key under the name kid.
func Sign(kid string, key ed25519.PrivateKey, body []byte) []byte {
	raw, _ := json.Marshal(map[string]string{
		"kid":  kid,
		"body": base64.StdEncoding.EncodeToString(body),
		"sig":  base64.StdEncoding.EncodeToString(ed25519.Sign(key, body)),
	})
	return raw
}
