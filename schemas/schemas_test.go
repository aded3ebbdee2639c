package schemas_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boreas/operator-bridge/schemas"
)

// TestExamples checks every example in testdata/<schema>/{valid,invalid}
// against its schema, so the schemas and the examples cannot drift apart.
func TestExamples(t *testing.T) {
	for _, typ := range schemas.Types() {
		stem := strings.TrimSuffix(schemas.File(typ), ".json")
		for _, kind := range []string{"valid", "invalid"} {
			files, err := filepath.Glob(filepath.Join("testdata", stem, kind, "*.json"))
			if err != nil {
				t.Fatal(err)
			}
			if len(files) == 0 {
				t.Errorf("%s: no %s examples in testdata/%s/%s", typ, kind, stem, kind)
			}
			for _, file := range files {
				t.Run(stem+"/"+kind+"/"+filepath.Base(file), func(t *testing.T) {
					b, err := os.ReadFile(file)
					if err != nil {
						t.Fatal(err)
					}
					var v any
					if err := json.Unmarshal(b, &v); err != nil {
						t.Fatalf("example is not JSON: %v", err)
					}
					err = schemas.Validate(typ, v)
					if kind == "valid" && err != nil {
						t.Errorf("valid example rejected: %v", err)
					}
					if kind == "invalid" && err == nil {
						t.Errorf("invalid example accepted")
					}
				})
			}
		}
	}
}

func TestEveryFileIsATypeOrShared(t *testing.T) {
	names, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"common.v1.json": true}
	for _, typ := range schemas.Types() {
		known[schemas.File(typ)] = true
	}
	for _, name := range names {
		if !known[name] {
			t.Errorf("%s belongs to no event type", name)
		}
		b, err := schemas.FS.ReadFile(name)
		if err != nil {
			t.Fatalf("%s not embedded: %v", name, err)
		}
		var doc struct {
			Schema string `json:"$schema"`
			ID     string `json:"$id"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if doc.Schema != "https://json-schema.org/draft/2020-12/schema" || doc.ID != schemas.BaseURL+name {
			t.Errorf("%s: $schema %q, $id %q", name, doc.Schema, doc.ID)
		}
	}
}

func TestValidateUnknownType(t *testing.T) {
	if schemas.For("io.boreas.nothing.v1") != nil {
		t.Error("For(unknown) is not nil")
	}
	if err := schemas.Validate("io.boreas.nothing.v1", map[string]any{}); err == nil {
		t.Error("Validate(unknown type) accepted")
	}
}
