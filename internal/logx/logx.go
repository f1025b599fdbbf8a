// Package logx builds the one log handler every binary of the agent uses:
// JSON lines with durations written as Go duration strings ("1.5s"), never
// as nanosecond integers an operator has to divide. It owns formatting only
// and must never add content: what a line carries is its caller's choice
// (and never names, birthdays, image bytes or templates).
package logx

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// ParseLevel reads "debug", "info", "warn" or "error" (any case); "" is
// info.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if strings.TrimSpace(s) == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// New returns a JSON logger writing to w at level and above.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: Replace}))
}

// Replace is the handler's ReplaceAttr: a time.Duration becomes its
// string, rounded to a readable precision.
func Replace(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, Duration(a.Value.Duration()))
	}
	return a
}

// Duration formats d for an operator: milliseconds under a second,
// whole milliseconds under a minute, whole seconds above.
func Duration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond && d > -time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Minute && d > -time.Minute:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
