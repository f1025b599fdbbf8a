// Package command owns the owner's commands as they arrive from the cloud:
// parsing untrusted bytes, the error codes of the contract, when a signed
// command counts (its time, and the newest signed command per setting:
// Exec.Claim), and exactly-once effect per command id (results are stored
// durably, in the same bbolt transaction as the command's effect, and
// answered again on a repeat). It never decides what a command may do:
// handlers registered by the daemon do, and name the settings they change.
// It never logs payloads, which may carry names and birthdays; "command
// done" carries the handler's result, which the contract keeps to ids,
// counts, versions and flags.
package command

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/strictjson"
	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
)

// MaxPayload is the largest command accepted, in bytes.
const MaxPayload = 256 << 10

// MaxEnvelope is the largest signed envelope accepted (its body is base64,
// a third larger than the command it carries). Anything larger is refused
// bad_request with the id a bounded scan can read.
const MaxEnvelope = 2 * MaxPayload

// Error codes of contract section 5.
const (
	CodeBadRequest        = "bad_request"
	CodeUnknownType       = "unknown_type"
	CodeUnsigned          = "unsigned"
	CodeBadSignature      = "bad_signature"
	CodeExpired           = "expired"
	CodeWrongDevice       = "wrong_device"
	CodeSuperseded        = "superseded" // v3: a newer signed command for a setting it names was applied
	CodePolicyNotAccepted = "policy_not_accepted"
	CodeFeatureDisabled   = "feature_disabled"
	CodeConsentRequired   = "consent_required"
	CodeGuardianRequired  = "guardian_required"
	CodeRegionProhibited  = "region_prohibited"
	CodeNotFound          = "not_found"
	CodeBusy              = "busy"
	CodeInternal          = "internal"
)

// Codes lists every error code a result may carry: the one list of them
// (docs/PROTOCOL.md follows it; a test checks that every Code constant
// is here).
var Codes = []string{CodeBadRequest, CodeUnknownType, CodeUnsigned, CodeBadSignature, CodeExpired, CodeWrongDevice, CodeSuperseded,
	CodePolicyNotAccepted, CodeFeatureDisabled, CodeConsentRequired, CodeGuardianRequired, CodeRegionProhibited,
	CodeNotFound, CodeBusy, CodeInternal}

// Error is a refusal with a contract error code. Its message must never
// carry personal data: it goes to the cloud and to logs.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Command is a parsed command.
type Command struct {
	ID       string
	Type     string
	IssuedAt time.Time // zero when the command did not say
	DeviceID string    // the device a signed body names; "" when absent
	Payload  json.RawMessage
	// Signed is true when the command came in the signed envelope and
	// verified with a configured key (then the signed-mode rules applied).
	Signed bool
}

// Result is what goes back on cmd/result.
type Result struct {
	ID     string          `json:"id"`
	OK     bool            `json:"ok"`
	Error  *Error          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

var idPattern = regexp.MustCompile(`^[\x21-\x7e]{1,64}$`)

// wire is the JSON shape; pointers tell a missing field from an empty one.
// It is decoded strictly (internal/strictjson): exact member names, no
// duplicate anywhere in the command, payload included; unknown top-level
// members are ignored.
type wire struct {
	ID       *string         `json:"id"`
	Type     *string         `json:"type"`
	IssuedAt *string         `json:"issued_at"`
	DeviceID *string         `json:"device_id"`
	Payload  json.RawMessage `json:"payload"`
}

// Parse reads one command. On failure it returns the id when one could be
// read (so the error can be answered) and the refusal. The id of a command
// that does not parse (too large, malformed, nested too deep, a member
// given twice) is read by PeekID's bounded scan, never by decoding it.
func Parse(raw []byte) (Command, string, *Error) {
	if len(raw) > MaxPayload {
		return Command{}, PeekID(raw), Errorf(CodeBadRequest, "command of %d bytes exceeds %d", len(raw), MaxPayload)
	}
	var w wire
	if err := strictjson.Unmarshal(raw, &w); err != nil {
		return Command{}, PeekID(raw), Errorf(CodeBadRequest, "command is not a JSON object of the contract's shape: %s", err)
	}
	if w.ID == nil || *w.ID == "" {
		return Command{}, "", Errorf(CodeBadRequest, "command has no id")
	}
	id := *w.ID
	if !idPattern.MatchString(id) {
		if len(id) > 64 {
			id = id[:64]
		}
		return Command{}, id, Errorf(CodeBadRequest, "id must be 1..64 printable characters")
	}
	if w.Type == nil || *w.Type == "" {
		return Command{}, id, Errorf(CodeBadRequest, "command has no type")
	}
	c := Command{ID: id, Type: *w.Type, Payload: w.Payload}
	if w.DeviceID != nil {
		c.DeviceID = *w.DeviceID
	}
	if w.IssuedAt != nil {
		t, err := time.Parse(time.RFC3339, *w.IssuedAt)
		if err != nil {
			return Command{}, id, Errorf(CodeBadRequest, "issued_at is not RFC3339")
		}
		c.IssuedAt = t
	}
	if len(c.Payload) == 0 || string(c.Payload) == "null" {
		c.Payload = json.RawMessage("{}")
	}
	if c.Payload[0] != '{' {
		return Command{}, id, Errorf(CodeBadRequest, "payload must be a JSON object")
	}
	return c, id, nil
}

// Decode reads a payload strictly into v: exact member names, no
// duplicates; unknown members and wrong types are bad requests.
func Decode(payload json.RawMessage, v any) error {
	if err := strictjson.UnmarshalKnown(payload, v); err != nil {
		return Errorf(CodeBadRequest, "payload: %s", scrub(err))
	}
	return nil
}

// scrub keeps decoder errors that name fields (safe) and drops those that
// might quote values.
func scrub(err error) string {
	msg := err.Error()
	if len(msg) > 120 {
		return "malformed payload"
	}
	return msg
}

// ErrorResult is the JSON of an error result.
func ErrorResult(id string, e *Error) []byte {
	raw, _ := json.Marshal(Result{ID: id, OK: false, Error: e})
	return raw
}

// logRefusal logs a refused command at level: WARN for one refused before
// its handler (unsigned, forged, expired, malformed: someone or something
// is wrong), INFO for a refusal of the handler (a rule said no).
func logRefusal(log *slog.Logger, level slog.Level, id, typ string, e *Error) {
	log.Log(context.Background(), level, "command refused", "id", id, "type", logType(typ), "code", e.Code, "reason", textx.Cut(e.Message, 120))
}

// peekType reads the type of a command that was refused before parsing,
// from a plain command or a signed envelope's body, for the log line: at
// most 40 bytes, "" when none can be read. It is never trusted for
// anything else.
func peekType(raw []byte) string {
	if len(raw) > 2*MaxPayload {
		return ""
	}
	var w struct {
		Type string  `json:"type"`
		Body *string `json:"body"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return ""
	}
	if w.Type == "" && w.Body != nil {
		if body, err := base64.StdEncoding.DecodeString(*w.Body); err == nil {
			var b struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(body, &b) == nil {
				w.Type = b.Type
			}
		}
	}
	return textx.Cut(w.Type, 40)
}

// maxLoggedType bounds a command type quoted in a log line or a message:
// an unknown type is whatever the sender wrote, up to the size of a command.
const maxLoggedType = 64

func logType(typ string) string { return textx.Cut(typ, maxLoggedType) }
