package command

import (
	"context"
	"encoding/json"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"id":"c1","type":"set_features","issued_at":"2026-11-22T09:00:00Z","payload":{"auto_photo":true}}`,
		`{"id":"c2","type":"accept_policy","payload":{"version":"2026-11"}}`,
		`{"id":"","type":"x"}`, `{"type":"x"}`, `[]`, `null`, `{"id":1}`, `{"id":"a","type":"b","payload":[]}`,
		`{"id":"a","type":"b"} trailing`, `{"kid":"k1","body":"e30=","sig":"AAAA"}`,
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
