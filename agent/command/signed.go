package command

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/envelope"
	"github.com/aibo-privacy/aibo-privacyd/internal/strictjson"
)

// MaxSkew is how far issued_at of a signed command that is not a
// withdrawal may be from the device clock before it is refused as expired.
// A withdrawal has no such limit (see Withdraws).
const MaxSkew = 5 * time.Minute

// Verified is what Authenticate hands on to the dispatcher.
type Verified struct {
	Body   []byte // the command bytes to parse
	Signed bool   // verified with a configured key: the signed-mode rules apply
}

// Verifier returns an Options.Authenticate for the signed form. With no
// keys, plain commands are accepted (and an envelope is unwrapped without
// checking, which gives it no more than a plain command has). With keys,
// only a body signed by one of them goes on, marked Signed; the dispatcher
// then checks its device_id and issued_at. A refusal carries the command's
// id whenever one can be read, even from a body whose signature failed.
func Verifier(keys map[string]ed25519.PublicKey) func(raw []byte, now time.Time) (Verified, string, *Error) {
	return func(raw []byte, now time.Time) (Verified, string, *Error) {
		if len(raw) > MaxEnvelope {
			return Verified{}, PeekID(raw), Errorf(CodeBadRequest, "command of %d bytes exceeds %d", len(raw), MaxEnvelope)
		}
		env, err := envelope.Open(raw)
		isEnvelope := err == nil || errors.Is(err, envelope.ErrBadBody)
		switch {
		case len(keys) == 0 && !isEnvelope:
			return Verified{Body: raw}, "", nil // Parse refuses what the decoder refused, the same way
		case len(keys) != 0 && err != nil && !isEnvelope && !errors.Is(err, envelope.ErrNotEnvelope):
			return Verified{}, PeekID(raw), Errorf(CodeBadRequest, "command is not a JSON object of the contract's shape: %s", err)
		case len(keys) != 0 && errors.Is(err, envelope.ErrNotEnvelope):
			return Verified{}, PeekID(raw), Errorf(CodeUnsigned, "this device accepts signed commands only")
		case errors.Is(err, envelope.ErrBadBody):
			return Verified{}, "", Errorf(CodeBadRequest, "body is not standard base64")
		case len(keys) == 0:
			return Verified{Body: env.Body}, "", nil
		}
		id := PeekID(env.Body)
		if key, known := keys[env.Kid]; !known || !env.Verify(key) {
			return Verified{}, id, Errorf(CodeBadSignature, "signature does not verify with a known key")
		}
		return Verified{Body: env.Body, Signed: true}, id, nil
	}
}

// ProtectiveFeature is the one feature whose true withdraws: turning
// blur_unknown_faces on only removes what leaves the house, turning it off
// lowers a protection (contract section 5, v3).
const ProtectiveFeature = "blur_unknown_faces"

// Withdraws reports whether a command only reduces what is kept, used or
// sent (contract section 5, v3): revoke_consent, delete_data,
// cancel_enrollment, and set_features where every named feature is turned
// off, except blur_unknown_faces, which withdraws when turned on. A signed
// withdrawal is applied whatever its age and also when its issued_at is
// ahead of the device clock (a robot whose clock is behind after a boot
// must not drop it); the per-setting order (Exec.Claim) keeps an old one
// from undoing the owner's later choice. Anything else keeps the 5-minute
// window.
func Withdraws(c Command) bool {
	switch c.Type {
	case "revoke_consent", "delete_data", "cancel_enrollment":
		return true
	case "set_features":
		var fields map[string]json.RawMessage
		if strictjson.Unmarshal(c.Payload, &fields) != nil || len(fields) == 0 {
			return false
		}
		for name, raw := range fields {
			want := []byte("false")
			if name == ProtectiveFeature {
				want = []byte("true")
			}
			if !bytes.Equal(bytes.TrimSpace(raw), want) {
				return false // the other value, null, a string: not a withdrawal
			}
		}
		return true
	}
	return false
}

// checkSigned applies the signed-mode rules to a parsed, verified command:
// it must name this device and carry issued_at; a withdrawal is then
// accepted whatever its issued_at; anything else must be within MaxSkew of
// the device clock and newer than every such command whose id was
// forgotten (floor), so that it cannot be replayed.
func checkSigned(c Command, deviceID string, now time.Time, floor time.Time) *Error {
	switch {
	case c.DeviceID == "":
		return Errorf(CodeWrongDevice, "a signed command must name its device_id")
	case c.DeviceID != deviceID:
		return Errorf(CodeWrongDevice, "signed for another device")
	case c.IssuedAt.IsZero():
		return Errorf(CodeBadRequest, "a signed command needs issued_at")
	case Withdraws(c):
		return nil
	}
	if d := now.Sub(c.IssuedAt); d > MaxSkew || d < -MaxSkew {
		return Errorf(CodeExpired, "issued_at is %s from the device clock", d.Round(time.Second))
	}
	if !floor.IsZero() && !c.IssuedAt.After(floor) {
		return Errorf(CodeExpired, "issued_at is not after the newest signed command this device no longer remembers")
	}
	return nil
}
