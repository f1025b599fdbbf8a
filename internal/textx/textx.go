// Package textx holds the one string helper the daemon needs in several
// places: cutting what a caller sent before it is quoted in an error or a
// log line. It never allocates more than the cut.
package textx

import "unicode/utf8"

// Cut returns s cut to at most n bytes at a rune boundary, with "…" added
// when something was cut.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
