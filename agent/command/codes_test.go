package command

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCodesListsEveryCode: Codes is the one list of error codes (the
// metrics and docs/PROTOCOL.md follow it), so every Code constant of the
// package must be in it, once.
func TestCodesListsEveryCode(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	seen := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				for i, name := range spec.(*ast.ValueSpec).Names {
					if !strings.HasPrefix(name.Name, "Code") {
						continue
					}
					lit, ok := spec.(*ast.ValueSpec).Values[i].(*ast.BasicLit)
					if !ok {
						t.Errorf("%s is not a string literal", name.Name)
						continue
					}
					seen++
					if code := strings.Trim(lit.Value, `"`); !slices.Contains(Codes, code) {
						t.Errorf("%s (%q) is not in Codes", name.Name, code)
					}
				}
			}
		}
	}
	if seen != len(Codes) {
		t.Errorf("%d Code constants, %d entries in Codes", seen, len(Codes))
	}
}
