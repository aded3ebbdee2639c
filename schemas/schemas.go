// Package schemas holds the JSON Schemas (draft 2020-12) of the data of every
// operator-bridge event type, as files and compiled.
//
// The files are the published contract (docs/contract.md says the same in
// prose): schemas.FS serves them to anyone who
// wants to validate with another tool, and [For] gives the compiled schema of
// an event type for validating in Go. Package events validates every event it
// decodes against them.
package schemas

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FS holds the schema files: one per event type, named after the type
// without its "io.boreas." prefix (deploy.request.v1.json ...), and
// common.v1.json with the definitions they share.
//
//go:embed *.json
var FS embed.FS

// BaseURL is the prefix of every schema's $id; a schema's $id is BaseURL
// followed by its file name.
const BaseURL = "https://schemas.boreas.io/operator-bridge/"

// The event types that have a schema, with the file that describes their data.
var files = map[string]string{
	"io.boreas.deploy.request.v1":  "deploy.request.v1.json",
	"io.boreas.deploy.result.v1":   "deploy.result.v1.json",
	"io.boreas.status.query.v1":    "status.query.v1.json",
	"io.boreas.status.result.v1":   "status.result.v1.json",
	"io.boreas.operator.health.v1": "operator.health.v1.json",
}

// Types lists the CloudEvent types that have a schema, sorted.
func Types() []string {
	types := make([]string, 0, len(files))
	for t := range files {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

// File names the schema file of an event type's data ("" when none).
func File(eventType string) string { return files[eventType] }

var compiled = sync.OnceValues(compile)

// For returns the compiled schema of an event type's data, or nil when the
// type has none. The schemas are compiled once, on first use.
func For(eventType string) *jsonschema.Schema {
	all, err := compiled()
	if err != nil {
		// The files are embedded and tested: a compile error is a bug in
		// this package, not something a caller can handle.
		panic(err)
	}
	return all[eventType]
}

// Validate checks v (a value as decoded by encoding/json into any) against
// the schema of eventType. The error is a *jsonschema.ValidationError when v
// breaks the schema.
func Validate(eventType string, v any) error {
	s := For(eventType)
	if s == nil {
		return fmt.Errorf("schemas: no schema for event type %q", eventType)
	}
	return s.Validate(v)
}

func compile() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	names, err := fs.Glob(FS, "*.json")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		b, err := FS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", name, err)
		}
		if err := c.AddResource(BaseURL+name, doc); err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", name, err)
		}
	}
	out := make(map[string]*jsonschema.Schema, len(files))
	for typ, name := range files {
		s, err := c.Compile(BaseURL + name)
		if err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", name, err)
		}
		out[typ] = s
	}
	return out, nil
}
