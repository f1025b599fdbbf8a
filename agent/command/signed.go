package command

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"time"
)

// MaxSkew is how far issued_at of a signed command may be from the device
// clock before it is refused as expired.
const MaxSkew = 5 * time.Minute

// envelope is the signed form of contract section 5.
type envelope struct {
	Kid  *string `json:"kid"`
	Body *string `json:"body"`
	Sig  *string `json:"sig"`
}

// Verifier returns an Options.Authenticate for the signed form. With no
// keys, plain commands are accepted (and an envelope is unwrapped without
// checking, which gives it no more than a plain command has). With keys,
// only a command signed by one of them, issued within MaxSkew of now, goes
// on. A refusal carries the command's id whenever one can be read, even
// from a body whose signature failed.
func Verifier(keys map[string]ed25519.PublicKey) func(raw []byte, now time.Time) ([]byte, string, *Error) {
	return func(raw []byte, now time.Time) ([]byte, string, *Error) {
		if len(raw) > MaxPayload*2 {
			return nil, "", Errorf(CodeBadRequest, "command of %d bytes exceeds %d", len(raw), MaxPayload)
		}
		var env envelope
		isEnvelope := json.NewDecoder(bytes.NewReader(raw)).Decode(&env) == nil && env.Kid != nil && env.Body != nil && env.Sig != nil
		if len(keys) == 0 {
			if !isEnvelope {
				return raw, "", nil
			}
			body, err := base64.StdEncoding.DecodeString(*env.Body)
			if err != nil {
				return nil, "", Errorf(CodeBadRequest, "body is not standard base64")
			}
			return body, "", nil
		}
		if !isEnvelope {
			return nil, peekID(raw), Errorf(CodeUnsigned, "this device accepts signed commands only")
		}
		body, err := base64.StdEncoding.DecodeString(*env.Body)
		if err != nil {
			return nil, "", Errorf(CodeBadRequest, "body is not standard base64")
		}
		id := peekID(body)
		sig, err := base64.StdEncoding.DecodeString(*env.Sig)
		key, known := keys[*env.Kid]
		if err != nil || !known || len(sig) != ed25519.SignatureSize || !ed25519.Verify(key, body, sig) {
			return nil, id, Errorf(CodeBadSignature, "signature does not verify with a known key")
		}
		var w struct {
			IssuedAt *string `json:"issued_at"`
		}
		if json.NewDecoder(bytes.NewReader(body)).Decode(&w) != nil || w.IssuedAt == nil {
			return nil, id, Errorf(CodeBadRequest, "a signed command needs issued_at")
		}
		at, err := time.Parse(time.RFC3339, *w.IssuedAt)
		if err != nil {
			return nil, id, Errorf(CodeBadRequest, "issued_at is not RFC3339")
		}
		if d := now.Sub(at); d > MaxSkew || d < -MaxSkew {
			return nil, id, Errorf(CodeExpired, "issued_at is %s from the device clock", d.Round(time.Second))
		}
		return body, id, nil
	}
}

// Sign wraps command bytes in the signed envelope (for tools and tests).
func Sign(kid string, key ed25519.PrivateKey, body []byte) []byte {
	raw, _ := json.Marshal(map[string]string{
		"kid":  kid,
		"body": base64.StdEncoding.EncodeToString(body),
		"sig":  base64.StdEncoding.EncodeToString(ed25519.Sign(key, body)),
	})
	return raw
}
