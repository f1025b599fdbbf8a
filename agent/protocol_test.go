package agent

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aibo-privacy/aibo-privacyd/agent/command"
)

// docTable returns the first column of the table in doc whose header row's
// first cell is head (backticks dropped).
func docTable(t *testing.T, doc, head string) []string {
	t.Helper()
	var out []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if in {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		first := strings.TrimSpace(cells[0])
		switch {
		case !in && first == head:
			in = true
		case in && strings.HasPrefix(first, "---"):
		case in:
			out = append(out, strings.Trim(first, "`"))
		}
	}
	if !in {
		t.Fatalf("docs/PROTOCOL.md has no table headed %q", head)
	}
	return out
}

// sameSet reports what one list has that the other lacks, and repeats in
// the first.
func sameSet(t *testing.T, what, aName string, a []string, bName string, b []string) {
	t.Helper()
	for _, x := range a {
		if !slices.Contains(b, x) {
			t.Errorf("%s has %s %q, %s does not", aName, what, x, bName)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			t.Errorf("%s has %s %q, %s does not", bName, what, x, aName)
		}
	}
	sorted := slices.Clone(a)
	sort.Strings(sorted)
	if len(slices.Compact(sorted)) != len(a) {
		t.Errorf("%s lists a %s twice: %v", aName, what, a)
	}
}

// TestProtocolReferenceIsTrueToTheCode (issue 18, item 8): the protocol
// reference's tables of command types, error codes and events list
// exactly what the daemon knows, each kept in one place in the code.
func TestProtocolReferenceIsTrueToTheCode(t *testing.T) {
	raw, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	var types []string
	for typ := range (&Daemon{}).commands() {
		types = append(types, typ)
	}
	const ref = "docs/PROTOCOL.md"
	sameSet(t, "command type", ref, docTable(t, doc, "type"), "the daemon (Daemon.commands)", types)
	sameSet(t, "error code", ref, docTable(t, doc, "code"), "the daemon (command.Codes)", command.Codes)
	sameSet(t, "event", ref, docTable(t, doc, "event"), "the daemon (eventTypes)", eventTypes)
}

// TestEveryEventRaisedIsListed: eventTypes is the one list of events, so
// every event the code builds (a map literal with a "type" member) must
// be in it, and nothing may be listed that the code never raises.
func TestEveryEventRaisedIsListed(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	var raised []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			if k, ok := kv.Key.(*ast.BasicLit); !ok || k.Value != `"type"` {
				return true
			}
			v, ok := kv.Value.(*ast.BasicLit)
			if !ok || v.Kind != token.STRING {
				t.Errorf("%s: an event whose type is not a string literal", name)
				return true
			}
			typ, _ := strconv.Unquote(v.Value)
			if !slices.Contains(raised, typ) {
				raised = append(raised, typ)
			}
			return true
		})
	}
	sameSet(t, "event", "eventTypes", eventTypes, "the code (a map literal's \"type\")", raised)
}
