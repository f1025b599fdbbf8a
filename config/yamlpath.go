package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// A decoding error names the key as the file writes it (photos.daily_cap),
// never a Go type (config.Photos): yaml.v3 reports a line and Go types, so
// each of its messages is mapped back to the key at that line.

// lineError is a value a custom decoder refused, with its line.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

var (
	reUnknown   = regexp.MustCompile(`^line (\d+): field (.+) not found in type \S+$`)
	reTwice     = regexp.MustCompile(`^line (\d+): mapping key "(.*)" already defined at line (\d+)$`)
	reWrongType = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
)

// keyedError rewrites a decoding error of the document root with the
// dotted path of each key it is about.
func keyedError(root *yaml.Node, err error) error {
	var le *lineError
	if errors.As(err, &le) {
		return errors.New(withPath(root, le.line, valueAt(le.line, "", ""), le.msg))
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(oneLine(err.Error()))
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		msgs = append(msgs, rewrite(root, m))
	}
	return errors.New(strings.Join(msgs, "; "))
}

func rewrite(root *yaml.Node, m string) string {
	if g := reUnknown.FindStringSubmatch(m); g != nil {
		return withPath(root, atoi(g[1]), keyAt(atoi(g[1]), g[2]), "unknown key")
	}
	if g := reTwice.FindStringSubmatch(m); g != nil {
		return withPath(root, atoi(g[1]), keyAt(atoi(g[1]), g[2]), "given twice (first at line "+g[3]+")")
	}
	if g := reWrongType.FindStringSubmatch(m); g != nil {
		got := map[string]string{"seq": "a list", "map": "a map", "str": "a string", "int": "an integer",
			"float": "a number", "bool": "true or false", "null": "empty"}[g[2]]
		if got == "" {
			got = "!!" + g[2]
		}
		if g[3] != "" {
			got += " (" + strconv.Quote(g[3]) + ")"
		}
		return withPath(root, atoi(g[1]), valueAt(atoi(g[1]), g[2], g[3]), "must be "+want(g[4])+", not "+got)
	}
	return oneLine(m)
}

// want names what a Go type takes, in YAML words.
func want(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a map"
	case strings.HasPrefix(goType, "uint"):
		return "an integer of at least 0"
	case strings.HasPrefix(goType, "int"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "config."):
		return "a section of keys"
	}
	return goType
}

// withPath prefixes msg with the path of the first node match accepts,
// and says the line.
func withPath(root *yaml.Node, line int, match func(k, v *yaml.Node) bool, msg string) string {
	if p := keyPath(root, match); p != "" {
		return fmt.Sprintf("%s: %s (line %d)", p, msg, line)
	}
	return fmt.Sprintf("line %d: %s", line, msg)
}

// keyPath returns the dotted path (photos.daily_cap,
// policy.prohibited_regions[1]) of the innermost first value that match
// accepts with its key (nil for a list item); "" when none.
func keyPath(n *yaml.Node, match func(k, v *yaml.Node) bool) string {
	var walk func(k, v *yaml.Node, path string) string
	walk = func(k, v *yaml.Node, path string) string {
		switch v.Kind {
		case yaml.DocumentNode:
			for _, c := range v.Content {
				if p := walk(nil, c, path); p != "" {
					return p
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(v.Content); i += 2 {
				p := v.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				if p := walk(v.Content[i], v.Content[i+1], p); p != "" {
					return p
				}
			}
		case yaml.SequenceNode:
			for i, c := range v.Content {
				if p := walk(nil, c, path+"["+strconv.Itoa(i)+"]"); p != "" {
					return p
				}
			}
		}
		if path != "" && match(k, v) {
			return path
		}
		return ""
	}
	return walk(nil, n, "")
}

// keyAt matches the key named name at line.
func keyAt(line int, name string) func(k, v *yaml.Node) bool {
	return func(k, _ *yaml.Node) bool { return k != nil && k.Line == line && k.Value == name }
}

// valueAt matches a value at line: of the YAML tag !!tag, and the text
// value when it is not ""; with no tag, the first scalar.
func valueAt(line int, tag, value string) func(k, v *yaml.Node) bool {
	return func(_, v *yaml.Node) bool {
		if tag == "" {
			return v.Line == line && v.Kind == yaml.ScalarNode
		}
		return v.Line == line && v.ShortTag() == "!!"+tag && (value == "" || v.Value == value)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
