package command

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"id":"c1","type":"set_features","issued_at":"2026-11-22T09:00:00Z","payload":{"auto_photo":true}}`,
		`{"id":"c2","type":"accept_policy","payload":{"version":"2026-11"}}`,
		`{"id":"","type":"x"}`, `{"type":"x"}`, `[]`, `null`, `{"id":1}`, `{"id":"a","type":"b","payload":[]}`,
		`{"id":"a","type":"b"} trailing`, `{"kid":"k1","body":"e30=","sig":"AAAA"}`,
		`{"id":"a","id":"b","type":"x"}`, `{"id":"a","type":"x","type":"y"}`, `{"ID":"a","type":"x"}`,
		`{"id":"a","type":"x","payload":{"k":1,"k":2}}`, `{"id":"a","type":"x","device_id":"d","device_id":"e"}`,
		`{"id":"a","type":"x"}`, "{\"id\":\"a\",\"type\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, id, e := Parse(raw)
		if e != nil {
			if e.Code == "" || len(id) > 64 {
				t.Fatalf("refusal %+v id %q", e, id)
			}
			return
		}
		if c.ID == "" || len(c.ID) > 64 || c.Type == "" || !json.Valid(c.Payload) || c.Payload[0] != '{' {
			t.Fatalf("accepted a bad command: %+v", c)
		}
	})
}

func FuzzHandle(f *testing.F) {
	f.Add([]byte(`{"id":"c1","type":"bump","payload":{"fail":true}}`))
	f.Add([]byte(`{"id":"c2","type":"nope"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, _ := newDispatcher(t, Options{})
		counter(t, d)
		out := d.Handle(context.Background(), raw)
		if out != nil && !json.Valid(out) {
			t.Fatalf("answer is not JSON: %q", out)
		}
	})
}

// FuzzPeekID: the bounded scan never reads an id the id rule refuses, and
// on every command Parse accepts it reads the very id Parse read (so a
// refusal is never addressed to another command than the one refused).
func FuzzPeekID(f *testing.F) {
	for _, s := range []string{
		`{"id":"c1","type":"x"}`, `{"\u0069d":"c2","type":"x"}`, `{"payload":{"id":"inner"},"id":"outer"}`,
		`{"a":[{"id":"no"}],"id":"yes"}`, `{"id":"a\"b"}`, `{"id":"\u0041"}`, `{"id" : "spaced" }`,
		`{"id":"dup","id":"other"}`, `{"x":"\\","id":"after-escape"}`, `[{"id":"in-array"}]`,
		`{"id":"` + strings.Repeat("z", 65) + `"}`, `{"p":` + strings.Repeat("[", 300) + `,"id":"deep"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		id := PeekID(raw)
		if id != "" && !idPattern.MatchString(id) {
			t.Fatalf("peeked id %q breaks the id rule", id)
		}
		if c, _, e := Parse(raw); e == nil && id != c.ID {
			t.Fatalf("Parse read id %q, PeekID %q", c.ID, id)
		}
	})
}
