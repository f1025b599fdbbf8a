package logx

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// An operator reads "retry_in":"913ms", never "retry_in":913239337.
func TestDurationsAreStrings(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelDebug)
	log.Warn("mqtt connect failed", "retry_in", 913239337*time.Nanosecond, slog.Group("g", "took", 90*time.Second+400*time.Millisecond))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if got, ok := line["retry_in"].(string); !ok || got != "913ms" {
		t.Fatalf("retry_in = %#v, want \"913ms\" (%s)", line["retry_in"], buf.String())
	}
	if got := line["g"].(map[string]any)["took"]; got != "1m30s" {
		t.Fatalf("grouped duration = %#v, want \"1m30s\"", got)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) accepted")
	}
}
