package command

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/aibo-privacy/aibo-privacyd/core/store"
)

func newDispatcher(t *testing.T, opt Options) (*Dispatcher, *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return NewDispatcher(st, opt), st
}

func decodeResult(t *testing.T, raw []byte) Result {
	t.Helper()
	var r Result
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("result %q: %v", raw, err)
	}
	return r
}

// counter is a handler whose effect is a durable counter in the store, so a
// second effect would show.
func counter(t *testing.T, d *Dispatcher) {
	d.Register("bump", func(ctx context.Context, e *Exec) (any, error) {
		var p struct {
			Fail bool `json:"fail"`
		}
		if err := Decode(e.Cmd.Payload, &p); err != nil {
			return nil, err
		}
		b := e.Tx.Bucket(store.BucketPolicy)
		n := 0
		if v := b.Get([]byte("n")); v != nil {
			n = int(v[0])
		}
		if err := b.Put([]byte("n"), []byte{byte(n + 1)}); err != nil {
			return nil, err
		}
		if p.Fail {
			return nil, Errorf(CodeFeatureDisabled, "refused after writing")
		}
		return map[string]int{"n": n + 1}, nil
	})
}

func readCounter(st *store.Store) int {
	n := 0
	_ = st.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(store.BucketPolicy).Get([]byte("n")); v != nil {
			n = int(v[0])
		}
		return nil
	})
	return n
}

func TestRepeatedIDGetsTheSameResultAndNoSecondEffect(t *testing.T) {
	d, st := newDispatcher(t, Options{})
	counter(t, d)
	first := d.Handle(context.Background(), []byte(`{"id":"c1","type":"bump","payload":{}}`))
	again := d.Handle(context.Background(), []byte(`{"id":"c1","type":"bump","payload":{}}`))
	if string(first) != string(again) {
		t.Fatalf("repeat answered differently:\n%s\n%s", first, again)
	}
	if r := decodeResult(t, first); !r.OK || string(r.Result) != `{"n":1}` {
		t.Fatalf("first result %s", first)
	}
	if readCounter(st) != 1 {
		t.Fatalf("effect applied %d times", readCounter(st))
	}
}

func TestRefusedCommandHasNoEffectAndIsAnsweredTheSameAgain(t *testing.T) {
	d, st := newDispatcher(t, Options{})
	counter(t, d)
	raw := []byte(`{"id":"c2","type":"bump","payload":{"fail":true}}`)
	r := decodeResult(t, d.Handle(context.Background(), raw))
	if r.OK || r.Error.Code != CodeFeatureDisabled {
		t.Fatalf("result %+v", r)
	}
	if readCounter(st) != 0 {
		t.Fatal("a refused command left its effect behind")
	}
	r2 := decodeResult(t, d.Handle(context.Background(), []byte(`{"id":"c2","type":"bump","payload":{}}`)))
	if r2.OK || r2.Error.Code != CodeFeatureDisabled || readCounter(st) != 0 {
		t.Fatalf("repeat of a refused id acted: %+v", r2)
	}
}

func TestBadCommandsGetClearErrors(t *testing.T) {
	d, _ := newDispatcher(t, Options{})
	counter(t, d)
	cases := []struct {
		name, raw, id, code string
	}{
		{"not json", `{"id":"x1", "type": `, "x1", CodeBadRequest},
		{"not json, no id", `{"i":"x1", "type": `, "", ""},
		{"id twice", `{"id":"x10","type":"bump","id":"x11"}`, "x10", CodeBadRequest},
		{"type twice", `{"id":"x12","type":"bump","type":"make_coffee"}`, "x12", CodeBadRequest},
		{"case-folded id", `{"ID":"x13","type":"bump"}`, "", ""},
		{"case-folded type", `{"id":"x14","Type":"bump"}`, "x14", CodeBadRequest},
		{"payload member twice", `{"id":"x15","type":"bump","payload":{"fail":true,"fail":false}}`, "x15", CodeBadRequest},
		{"case-folded payload member", `{"id":"x16","type":"bump","payload":{"Fail":false}}`, "x16", CodeBadRequest},
		{"nested 20,000 deep", `{"id":"x17","type":"bump","payload":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`, "x17", CodeBadRequest},
		{"nested 20,000 deep, id last", `{"type":"bump","payload":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `},"id":"x18"}`, "x18", CodeBadRequest},
		{"oversized, id last", `{"type":"bump","payload":{"pad":"` + strings.Repeat("p", MaxEnvelope) + `"},"id":"x19"}`, "x19", CodeBadRequest},
		{"no id", `{"type":"bump"}`, "", ""},
		{"empty id", `{"id":"","type":"bump"}`, "", ""},
		{"id too long", `{"id":"` + strings.Repeat("a", 65) + `","type":"bump"}`, strings.Repeat("a", 64), CodeBadRequest},
		{"no type", `{"id":"x2"}`, "x2", CodeBadRequest},
		{"unknown type", `{"id":"x3","type":"make_coffee"}`, "x3", CodeUnknownType},
		{"payload not object", `{"id":"x4","type":"bump","payload":[1]}`, "x4", CodeBadRequest},
		{"unknown payload field", `{"id":"x5","type":"bump","payload":{"fial":true}}`, "x5", CodeBadRequest},
		{"wrong payload type", `{"id":"x6","type":"bump","payload":{"fail":"yes"}}`, "x6", CodeBadRequest},
		{"bad issued_at", `{"id":"x7","type":"bump","issued_at":"yesterday"}`, "x7", CodeBadRequest},
		{"trailing garbage", `{"id":"x8","type":"bump"} {}`, "x8", CodeBadRequest},
		{"oversized", `{"id":"x9","type":"bump","payload":{"pad":"` + strings.Repeat("p", MaxPayload) + `"}}`, "x9", CodeBadRequest},
		{"array", `[1,2]`, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := d.Handle(context.Background(), []byte(c.raw))
			if c.id == "" {
				if out != nil {
					t.Fatalf("answered a command with no readable id: %s", out)
				}
				return
			}
			r := decodeResult(t, out)
			if r.OK || r.ID != c.id || r.Error == nil || r.Error.Code != c.code {
				t.Fatalf("got %s, want id %q code %s", out, c.id, c.code)
			}
		})
	}
	// The dispatcher still works.
	if r := decodeResult(t, d.Handle(context.Background(), []byte(`{"id":"ok1","type":"bump"}`))); !r.OK {
		t.Fatalf("valid command after bad ones: %+v", r)
	}
}

func TestRememberedIDsAreBounded(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	d, st := newDispatcher(t, Options{MaxIDs: 5, Now: func() time.Time { return now }})
	counter(t, d)
	for i := 0; i < 12; i++ {
		d.Handle(context.Background(), []byte(`{"id":"b`+string(rune('a'+i))+`","type":"bump"}`))
	}
	var n int
	_ = st.View(func(tx *bolt.Tx) error { n = ids(tx).Stats().KeyN; return nil })
	if n != 5 {
		t.Fatalf("%d ids remembered, want 5", n)
	}
	// The newest ids are the ones kept.
	if _, ok := d.lookup("bl"); !ok {
		t.Fatal("newest id forgotten")
	}
	if _, ok := d.lookup("ba"); ok {
		t.Fatal("oldest id kept beyond the bound")
	}
	// Past the retention, ids go too.
	now = now.Add(31 * 24 * time.Hour)
	d.Handle(context.Background(), []byte(`{"id":"late","type":"bump"}`))
	_ = st.View(func(tx *bolt.Tx) error { n = ids(tx).Stats().KeyN; return nil })
	if n != 1 {
		t.Fatalf("%d ids after retention, want 1", n)
	}
}

func TestInternalErrorsAreNotRemembered(t *testing.T) {
	d, _ := newDispatcher(t, Options{})
	calls := 0
	d.Register("flaky", func(ctx context.Context, e *Exec) (any, error) {
		calls++
		if calls == 1 {
			return nil, errors.New("disk hiccup")
		}
		return nil, nil
	})
	r := decodeResult(t, d.Handle(context.Background(), []byte(`{"id":"f1","type":"flaky"}`)))
	if r.OK || r.Error.Code != CodeInternal || strings.Contains(r.Error.Message, "disk") {
		t.Fatalf("internal error result %+v", r)
	}
	if r := decodeResult(t, d.Handle(context.Background(), []byte(`{"id":"f1","type":"flaky"}`))); !r.OK {
		t.Fatalf("retry after an internal error: %+v", r)
	}
}

func TestAfterCommitRunsOnlyOnSuccess(t *testing.T) {
	d, _ := newDispatcher(t, Options{})
	ran := 0
	d.Register("act", func(ctx context.Context, e *Exec) (any, error) {
		e.OnCommit(func() { ran++ })
		var p struct{ Fail bool }
		Decode(e.Cmd.Payload, &p)
		if p.Fail {
			return nil, Errorf(CodeBadRequest, "no")
		}
		return nil, nil
	})
	d.Handle(context.Background(), []byte(`{"id":"a1","type":"act","payload":{"Fail":true}}`))
	if ran != 0 {
		t.Fatal("after-commit hook ran for a refused command")
	}
	d.Handle(context.Background(), []byte(`{"id":"a2","type":"act"}`))
	if ran != 1 {
		t.Fatalf("after-commit hook ran %d times", ran)
	}
}
