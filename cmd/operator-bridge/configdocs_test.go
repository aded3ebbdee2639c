package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// configDocs is the page that explains every configuration variable.
const configDocs = "../../docs/configuration.md"

// TestEveryVariableDocumented checks that every configuration variable the
// code reads (the env tags of this command's non-test files, and the
// operator settings and their MASTER_OPERATOR_ aliases in
// operator/settings.go) appears in docs/configuration.md and in
// serve --help.
func TestEveryVariableDocumented(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, "_test.go") })
	files = append(files, "../../operator/settings.go")
	var vars []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := variablesIn(f, src)
		if err != nil {
			t.Fatal(err)
		}
		vars = append(vars, v...)
	}
	slices.Sort(vars)
	vars = slices.Compact(vars)
	// The scan must find what is known to be there, or it checks nothing.
	for _, known := range []string{envPrefix + "NATS_URL", envPrefix + "OPERATOR_TOKEN", "MASTER_OPERATOR_USE_MOCK"} {
		if !slices.Contains(vars, known) {
			t.Fatalf("the scan found %v, without %s", vars, known)
		}
	}

	docs, err := os.ReadFile(configDocs)
	if err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, "serve", "--help")
	wantCode(t, r, 0)
	for _, p := range missingVariables(vars, map[string]string{
		"docs/configuration.md": string(docs),
		"serve --help":          r.stdout,
	}) {
		t.Error(p)
	}
}

func TestVariablesIn(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"prefixed tags as they are", "package p\ntype c struct {\n\tA string `envconfig:\"OPERATOR_BRIDGE_A\" default:\"x\"`\n\tB int `envconfig:\"OPERATOR_BRIDGE_B_C\"`\n}\n",
			[]string{"OPERATOR_BRIDGE_A", "OPERATOR_BRIDGE_B_C"}},
		{"env tags", "package p\ntype c struct {\n\tA string `env:\"OPERATOR_BRIDGE_A\" file:\"a.b\"`\n}\n",
			[]string{"OPERATOR_BRIDGE_A"}},
		{"settings tags get the prefix", "package p\ntype s struct {\n\tURL string `envconfig:\"K8S_OPERATOR_URL\"`\n\tD int `json:\"d\"`\n}\n",
			[]string{"OPERATOR_BRIDGE_K8S_OPERATOR_URL"}},
		{"aliases are string literals", "package p\nvar v = []string{\"MASTER_OPERATOR_USE_MOCK\", \"OTHER\"}\n",
			[]string{"MASTER_OPERATOR_USE_MOCK"}},
		{"comments are not code", "package p\n// envconfig:\"OPERATOR_BRIDGE_OLD\" MASTER_OPERATOR_OLD\ntype c struct{}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := variablesIn("x.go", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("variables (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMissingVariables(t *testing.T) {
	vars := []string{"OPERATOR_BRIDGE_ROLLOUT", "OPERATOR_BRIDGE_NATS_URL", "MASTER_OPERATOR_USE_MOCK"}
	tests := []struct {
		name  string
		texts map[string]string
		want  []string
	}{
		{"all there", map[string]string{"doc": "`OPERATOR_BRIDGE_ROLLOUT`, OPERATOR_BRIDGE_NATS_URL; alias MASTER_OPERATOR_USE_MOCK."}, nil},
		{"a longer name is not the name", map[string]string{"doc": "OPERATOR_BRIDGE_ROLLOUT_POLL OPERATOR_BRIDGE_NATS_URL MASTER_OPERATOR_USE_MOCK"},
			[]string{"OPERATOR_BRIDGE_ROLLOUT is not in doc"}},
		{"missing from one text", map[string]string{
			"doc":  "OPERATOR_BRIDGE_ROLLOUT OPERATOR_BRIDGE_NATS_URL MASTER_OPERATOR_USE_MOCK",
			"help": "OPERATOR_BRIDGE_ROLLOUT OPERATOR_BRIDGE_NATS_URL"},
			[]string{"MASTER_OPERATOR_USE_MOCK is not in help"}},
		{"a part of a name is not the name", map[string]string{"doc": "NATS_URL ROLLOUT USE_MOCK"},
			[]string{"MASTER_OPERATOR_USE_MOCK is not in doc", "OPERATOR_BRIDGE_NATS_URL is not in doc", "OPERATOR_BRIDGE_ROLLOUT is not in doc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, missingVariables(vars, tt.texts)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// variablesIn returns the configuration variables a Go source file names:
// the values of its env (serveConfig) and envconfig (operator.Settings)
// struct tags (OPERATOR_BRIDGE_ added where a tag lacks it, as
// operator.LoadSettings does) and its string constants
// that are MASTER_OPERATOR_ aliases, sorted.
func variablesIn(name string, src []byte) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var vars []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		tag := reflect.StructTag(s)
		v := tag.Get("env")
		if v == "" {
			v = tag.Get("envconfig")
		}
		if v != "" {
			if !strings.HasPrefix(v, envPrefix) {
				v = envPrefix + v
			}
			vars = append(vars, v)
		} else if strings.HasPrefix(s, "MASTER_OPERATOR_") && variableName.MatchString(s) {
			vars = append(vars, s)
		}
		return true
	})
	slices.Sort(vars)
	return slices.Compact(vars), nil
}

var variableName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// missingVariables returns, sorted, a line for each variable that some
// text (by name) does not mention as a whole name.
func missingVariables(vars []string, texts map[string]string) []string {
	var problems []string
	for textName, text := range texts {
		for _, v := range vars {
			if !regexp.MustCompile(`(^|[^A-Z0-9_])` + regexp.QuoteMeta(v) + `($|[^A-Z0-9_])`).MatchString(text) {
				problems = append(problems, v+" is not in "+textName)
			}
		}
	}
	slices.Sort(problems)
	return problems
}
