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

// MaxSkew is how far issued_at of a signed command may be from the device
// clock before it is refused as expired; a withdrawal may be older (see
// Withdraws), never further in the future.
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

// Withdraws reports whether a command only withdraws: revoke_consent,
// delete_data, cancel_enrollment, and set_features whose every value is
// false (contract section 5, v2). A signed withdrawal is accepted up to the
// command id retention after its issued_at, so one queued for a robot that
// was off is still applied when it returns; anything that grants or enables
// keeps the 5-minute window.
func Withdraws(c Command) bool {
	switch c.Type {
	case "revoke_consent", "delete_data", "cancel_enrollment":
		return true
	case "set_features":
		var fields map[string]json.RawMessage
		if strictjson.Unmarshal(c.Payload, &fields) != nil || len(fields) == 0 {
			return false
		}
		for _, raw := range fields {
			if !bytes.Equal(bytes.TrimSpace(raw), []byte("false")) {
				return false // true, null, a string, anything but false
			}
		}
		return true
	}
	return false
}

// checkSigned applies the signed-mode rules to a parsed, verified command:
// it must name this device, carry issued_at, be no more than MaxSkew in
// the future, no older than MaxSkew (or window for a withdrawal), and newer
// than every signed command whose id was forgotten before its window
// closed (floor).
func checkSigned(c Command, deviceID string, now time.Time, window time.Duration, floor time.Time) *Error {
	switch {
	case c.DeviceID == "":
		return Errorf(CodeWrongDevice, "a signed command must name its device_id")
	case c.DeviceID != deviceID:
		return Errorf(CodeWrongDevice, "signed for another device")
	case c.IssuedAt.IsZero():
		return Errorf(CodeBadRequest, "a signed command needs issued_at")
	}
	limit := MaxSkew
	if Withdraws(c) {
		limit = max(window, MaxSkew)
	}
	if d := now.Sub(c.IssuedAt); d > limit || d < -MaxSkew {
		return Errorf(CodeExpired, "issued_at is %s from the device clock", d.Round(time.Second))
	}
	if !floor.IsZero() && !c.IssuedAt.After(floor) {
		return Errorf(CodeExpired, "issued_at is not after the newest signed command this device no longer remembers")
	}
	return nil
}
