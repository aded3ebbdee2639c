// Package readme checks that the Go snippets of the repository's README are
// code that compiles and runs: each snippet is the text of a function in an
// example test, which Check finds in the README word for word.
package readme

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// Check fails t unless the README at readmePath contains, verbatim, the
// source of each named top-level function of the Go file goFile.
func Check(t testing.TB, readmePath, goFile string, funcs ...string) {
	t.Helper()
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(goFile)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, goFile, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
			found[fd.Name.Name] = string(src[fset.Position(fd.Pos()).Offset:fset.Position(fd.End()).Offset])
		}
	}
	for _, name := range funcs {
		text, ok := found[name]
		if !ok {
			t.Errorf("%s has no function %s", goFile, name)
			continue
		}
		if !strings.Contains(string(readme), text) {
			t.Errorf("%s does not show %s of %s word for word; paste it in again:\n%s", readmePath, name, goFile, text)
		}
	}
}
