// Package strictjson is the one way the daemon decodes JSON that crosses a
// trust boundary: commands (plain, the signed envelope and the signed
// body), artifact acks and firmware manifests. It exists so that every
// reader of the same bytes sees the same value: a signer and this device
// must never disagree on what a command says.
//
// Compared with encoding/json it refuses what encoding/json lets through
// silently: a member name that matches a field only when case is ignored
// ({"OK":true} is not {"ok":true}), a name given twice at any depth
// ({"ok":false,"ok":true} is not "the last one wins"), invalid UTF-8, and
// anything after the one value. Unknown members are ignored by Unmarshal
// and refused by UnmarshalKnown.
//
// The decoding itself is github.com/go-json-experiment/json, the prototype
// of Go's encoding/json/v2 (in Go 1.26 still behind GOEXPERIMENT=jsonv2),
// whose defaults are exactly these rules; this package pins the options and
// turns its errors into short messages that quote at most a cut member name
// and never a value. It never logs and never reads beyond the bytes given.
package strictjson

import (
	"errors"
	"fmt"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/aibo-privacy/aibo-privacyd/internal/textx"
)

// MaxDepth is the deepest nesting the decoder follows; deeper input is an
// error (the decoder's own limit, stated here so callers can test it).
const MaxDepth = 10000

// Error is a decoding failure. Its message names at most a JSON pointer
// and a member name, each cut short, never a value.
type Error struct {
	msg string
	err error
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the decoder's own error.
func (e *Error) Unwrap() error { return e.err }

var strict = json.JoinOptions(
	json.MatchCaseInsensitiveNames(false),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

var strictKnown = json.JoinOptions(strict, json.RejectUnknownMembers(true))

// Unmarshal decodes exactly one JSON value from data into v. Member names
// match exactly, a duplicate name anywhere is an error, unknown members are
// ignored.
func Unmarshal(data []byte, v any) error {
	return wrap(json.Unmarshal(data, v, strict))
}

// UnmarshalKnown is Unmarshal that also refuses a member v has no field for.
func UnmarshalKnown(data []byte, v any) error {
	return wrap(json.Unmarshal(data, v, strictKnown))
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return &Error{msg: describe(err), err: err}
}

func describe(err error) string {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	switch {
	case errors.As(err, &syn):
		switch {
		case errors.Is(syn.Err, jsontext.ErrDuplicateName):
			return fmt.Sprintf("duplicate member %q%s", cut(syn.JSONPointer.LastToken()), within(syn.JSONPointer.Parent()))
		case syn.Err != nil && syn.Err.Error() == "exceeded max depth":
			return fmt.Sprintf("nested deeper than %d levels", MaxDepth)
		}
		return fmt.Sprintf("not valid JSON at byte %d", syn.ByteOffset)
	case errors.As(err, &sem):
		if errors.Is(sem.Err, json.ErrUnknownName) {
			return fmt.Sprintf("unknown member %q%s", cut(sem.JSONPointer.LastToken()), within(sem.JSONPointer.Parent()))
		}
		var inner *jsontext.SyntacticError
		if errors.As(sem.Err, &inner) {
			return describe(inner)
		}
		if sem.JSONPointer == "" {
			return fmt.Sprintf("a JSON %s cannot be decoded here", kind(sem.JSONKind))
		}
		return fmt.Sprintf("member %q has the wrong type (JSON %s)", cut(string(sem.JSONPointer)), kind(sem.JSONKind))
	}
	return "not valid JSON"
}

func within(p jsontext.Pointer) string {
	if p == "" {
		return ""
	}
	return " within " + cut(string(p))
}

func cut(s string) string { return textx.Cut(s, 48) }

func kind(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "boolean"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "value"
}
