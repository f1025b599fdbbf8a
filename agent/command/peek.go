package command

import (
	"bytes"
	"encoding/json"
)

// peekLimit bounds how far PeekID reads. The link hands over at most
// about 1 MiB (the broker's max_packet_size); the bound keeps the scan
// linear and small even if a caller passes more.
const peekLimit = 2 << 20

// PeekID reads the top-level "id" of a command that could not be parsed
// (too large, malformed, nested deeper than the decoder goes, a member
// given twice), so that its refusal can be addressed. It is a single pass
// over at most peekLimit bytes with a depth counter, no recursion and no
// allocation beyond the id itself: a hostile body is scanned, never
// decoded. It only finds where to send a refusal; it never decides that a
// command is acceptable. It returns "" unless the first top-level "id"
// member is a string matching the id rule. A second "id" is not looked
// for: the command is refused either way, and anyone able to publish on
// cmd can have any id refused.
func PeekID(raw []byte) string {
	if len(raw) > peekLimit {
		raw = raw[:peekLimit]
	}
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return ""
	}
	i++
	depth, wantKey := 1, true
	for i < len(raw) {
		switch c := raw[i]; {
		case c == '"':
			end, ok := scanString(raw, i)
			if !ok {
				return ""
			}
			if depth == 1 && wantKey {
				wantKey = false
				j := skipSpace(raw, end)
				if j < len(raw) && raw[j] == ':' && isIDName(raw[i:end]) {
					k := skipSpace(raw, j+1)
					if k >= len(raw) || raw[k] != '"' {
						return ""
					}
					vend, ok := scanString(raw, k)
					if !ok {
						return ""
					}
					return idValue(raw[k:vend])
				}
			}
			i = end
			continue
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth <= 0 {
				return ""
			}
		case c == ',' && depth == 1:
			wantKey = true
		}
		i++
	}
	return ""
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index just past the string token starting at
// b[i] == '"'.
func scanString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// isIDName reports whether a quoted member name is "id", escapes decoded
// as the strict decoder decodes them ("\u0069d" is "id" to it too).
func isIDName(tok []byte) bool {
	if bytes.Equal(tok, []byte(`"id"`)) {
		return true
	}
	if len(tok) > 32 || bytes.IndexByte(tok, '\\') < 0 {
		return false
	}
	var s string
	return json.Unmarshal(tok, &s) == nil && s == "id"
}

// idValue decodes a quoted id (short tokens only) and checks the id rule.
func idValue(tok []byte) string {
	if len(tok) > 6*64+2 {
		return ""
	}
	var s string
	if json.Unmarshal(tok, &s) != nil || !idPattern.MatchString(s) {
		return ""
	}
	return s
}
