package strictjson

import (
	"encoding/json"
	"strings"
	"testing"
)

type ack struct {
	OK     *bool  `json:"ok"`
	Reason string `json:"reason"`
}

type cmd struct {
	ID      *string         `json:"id"`
	Type    *string         `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// TestP16_LooseJSONIsRefused: what encoding/json accepts by ignoring case or
// keeping the last duplicate is an error here, at any depth.
func TestP16_LooseJSONIsRefused(t *testing.T) {
	refused := map[string]string{
		"case-folded name":         `{"OK":true}`,
		"duplicate name":           `{"ok":false,"ok":true}`,
		"duplicate through escape": `{"ok":false,"\u006fk":true}`,
		"trailing value":           `{"ok":true} {"ok":false}`,
		"invalid utf-8":            "{\"ok\":true,\"reason\":\"\xff\"}",
		"not json":                 `{"ok":tru`,
		"wrong type":               `{"ok":"true"}`,
	}
	for name, in := range refused {
		var a ack
		err := Unmarshal([]byte(in), &a)
		if name == "case-folded name" {
			// An unknown member is ignored, but it does not set ok.
			if err != nil || a.OK != nil {
				t.Errorf("%s: err %v, ok %v: a case-folded name set the field", name, err, a.OK)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: %q accepted as %+v", name, in, a)
		}
	}
	// encoding/json, for the record, takes both loose forms as success.
	var v1 ack
	if json.Unmarshal([]byte(`{"ok":false,"ok":true}`), &v1) != nil || v1.OK == nil || !*v1.OK {
		t.Fatal("encoding/json changed: this test no longer shows the difference")
	}

	nested := []string{
		`{"id":"a","type":"t","payload":{"x":1,"x":2}}`,
		`{"id":"a","type":"t","payload":{"list":[{"k":1,"k":1}]}}`,
		`{"id":"a","id":"b","type":"t"}`,
		`{"id":"a","type":"t","type":"u"}`,
	}
	for _, in := range nested {
		var c cmd
		if err := Unmarshal([]byte(in), &c); err == nil || !strings.Contains(err.Error(), "duplicate member") {
			t.Errorf("%s: err %v, want a duplicate member error", in, err)
		}
	}
}

func TestUnknownMembers(t *testing.T) {
	var a ack
	if err := Unmarshal([]byte(`{"ok":true,"extra":1}`), &a); err != nil || a.OK == nil || !*a.OK {
		t.Fatalf("Unmarshal: %v %+v", err, a)
	}
	err := UnmarshalKnown([]byte(`{"ok":true,"extra":1}`), &a)
	if err == nil || !strings.Contains(err.Error(), `unknown member "extra"`) {
		t.Fatalf("UnmarshalKnown: %v", err)
	}
}

func TestErrorsQuoteNoValueAndStayShort(t *testing.T) {
	secret := "Alice Example, born 03-14"
	long := strings.Repeat("n", 5000)
	for _, in := range []string{
		`{"reason":"` + secret + `","ok":"` + secret + `"}`,
		`{"` + long + `":1,"` + long + `":2}`,
		`{"ok":` + strings.Repeat("[", MaxDepth+10) + strings.Repeat("]", MaxDepth+10) + `}`,
	} {
		var a ack
		err := UnmarshalKnown([]byte(in), &a)
		if err == nil {
			t.Fatalf("accepted %.40q", in)
		}
		if strings.Contains(err.Error(), "Alice") || len(err.Error()) > 200 {
			t.Errorf("error %q quotes a value or is long", err)
		}
	}
	var c cmd
	err := Unmarshal([]byte(`{"id":"a","payload":`+strings.Repeat("[", 20000)+`}`), &c)
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep nesting: %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"ok":true}`, `{"ok":false,"ok":true}`, `{"OK":true}`, `{"id":"a","payload":{"x":[1,{"y":null}]}}`, `[`, `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var c cmd
		err := Unmarshal(in, &c)
		if err != nil {
			if len(err.Error()) > 200 {
				t.Fatalf("long error %q", err)
			}
			return
		}
		// Whatever is accepted here is valid JSON to encoding/json too.
		var v1 cmd
		if err := json.Unmarshal(in, &v1); err != nil {
			t.Fatalf("accepted here, refused by encoding/json: %v", err)
		}
	})
}
