// Package command owns the owner's commands as they arrive from the cloud:
// parsing untrusted bytes, the error codes of the contract, and exactly-once
// effect per command id (results are stored durably, in the same bbolt
// transaction as the command's effect, and answered again on a repeat). It
// never decides what a command may do: handlers registered by the daemon do.
// It never logs payloads, which may carry names and birthdays; "command
// done" carries the handler's result, which the contract keeps to ids,
// counts, versions and flags.
package command

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
)

// MaxPayload is the largest command accepted, in bytes.
const MaxPayload = 256 << 10

// Error codes of contract section 5.
const (
	CodeBadRequest        = "bad_request"
	CodeUnknownType       = "unknown_type"
	CodeUnsigned          = "unsigned"
	CodeBadSignature      = "bad_signature"
	CodeExpired           = "expired"
	CodePolicyNotAccepted = "policy_not_accepted"
	CodeFeatureDisabled   = "feature_disabled"
	CodeConsentRequired   = "consent_required"
	CodeGuardianRequired  = "guardian_required"
	CodeRegionProhibited  = "region_prohibited"
	CodeNotFound          = "not_found"
	CodeBusy              = "busy"
	CodeInternal          = "internal"
)

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
	Payload  json.RawMessage
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
type wire struct {
	ID       *string         `json:"id"`
	Type     *string         `json:"type"`
	IssuedAt *string         `json:"issued_at"`
	Payload  json.RawMessage `json:"payload"`
}

// Parse reads one command. On failure it returns the id when one could be
// read (so the error can be answered) and the refusal.
func Parse(raw []byte) (Command, string, *Error) {
	if len(raw) > MaxPayload {
		return Command{}, peekID(raw), Errorf(CodeBadRequest, "command of %d bytes exceeds %d", len(raw), MaxPayload)
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&w); err != nil {
		return Command{}, peekID(raw), Errorf(CodeBadRequest, "command is not a JSON object")
	}
	if dec.More() {
		return Command{}, peekID(raw), Errorf(CodeBadRequest, "trailing data after the command")
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

// peekID pulls a usable id out of bytes that failed to parse as a command,
// reading no further than a bounded prefix.
func peekID(raw []byte) string {
	var w struct {
		ID string `json:"id"`
	}
	if len(raw) > 2*MaxPayload {
		return ""
	}
	if json.NewDecoder(bytes.NewReader(raw)).Decode(&w) != nil || !idPattern.MatchString(w.ID) {
		return ""
	}
	return w.ID
}

// Decode reads a payload strictly into v: unknown fields and wrong types
// are bad requests.
func Decode(payload json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return Errorf(CodeBadRequest, "payload field %q has the wrong type", ute.Field)
		}
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
	log.Log(context.Background(), level, "command refused", "id", id, "type", typ, "code", e.Code, "reason", textx.Cut(e.Message, 120))
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
