package operator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Environment maps an environment ID to an operator (docs/operators.md,
// Environments). Its zero value's flags mean an active environment, as an
// absent "active" does in a file or a bucket entry.
type Environment struct {
	ID          string `json:"id"`           // 1–64 chars of A-Z a-z 0-9 _ -
	Name        string `json:"name"`         // for people
	Type        Kind   `json:"type"`         // canonical kind after parsing
	OperatorURL string `json:"operator_url"` // empty: the default of its type (see Factory)
	// Inactive is "active": false in a record: requests to an inactive
	// environment are rejected, and its operator is not health-checked.
	Inactive bool `json:"-"`
}

// MarshalJSON writes e as a record that ParseEnvironment reads back, with
// "active" as files and buckets spell it.
func (e Environment) MarshalJSON() ([]byte, error) {
	type record struct {
		ID          string `json:"id"`
		Name        string `json:"name,omitempty"`
		Type        Kind   `json:"type"`
		OperatorURL string `json:"operator_url,omitempty"`
		Active      bool   `json:"active"`
	}
	return json.Marshal(record{ID: e.ID, Name: e.Name, Type: e.Type, OperatorURL: e.OperatorURL, Active: !e.Inactive})
}

// EnvironmentError is a problem with one environment record.
type EnvironmentError struct {
	Source  string // file name; "" for a single record
	Index   int    // position in the list, -1 for a single record
	ID      string // the record's id, when it has a readable one
	Field   string // "id", "type", "operator_url", ...; "" for the whole record
	Message string
}

func (e *EnvironmentError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Index >= 0 {
		fmt.Fprintf(&b, "environments[%d]", e.Index)
		if e.ID != "" {
			fmt.Fprintf(&b, " (id %q)", e.ID)
		}
	} else {
		b.WriteString("environment")
		if e.ID != "" {
			fmt.Fprintf(&b, " %q", e.ID)
		}
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

// MaxEnvironmentIDLen is the longest environment ID.
const MaxEnvironmentIDLen = 64

// validEnvironmentID reports whether id is 1–64 chars of A-Z a-z 0-9 _ -.
func validEnvironmentID(id string) bool {
	if len(id) == 0 || len(id) > MaxEnvironmentIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// UnmarshalJSON decodes and validates one environment record: it accepts
// the type aliases ("k8s", "pm"); "active" defaults to true.
func (e *Environment) UnmarshalJSON(data []byte) error {
	env, errs := decodeEnvironment(data, "", -1)
	if len(errs) > 0 {
		return joinEnvErrors(errs)
	}
	*e = env
	return nil
}

// ParseEnvironment decodes and validates one JSON environment record, such
// as a value of the environments key-value bucket.
func ParseEnvironment(data []byte) (Environment, error) {
	env, errs := decodeEnvironment(data, "", -1)
	if len(errs) > 0 {
		return Environment{}, joinEnvErrors(errs)
	}
	return env, nil
}

// LoadEnvironmentsFile reads and parses an environments file (see
// ParseEnvironments).
func LoadEnvironmentsFile(path string) ([]Environment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("environments file: %w", err)
	}
	return ParseEnvironments(data, path)
}

// ParseEnvironments parses environment records, YAML or JSON, either a list
// or an object {"environments": [...]}. source names the data in errors. The
// error reports every bad record (an errors.Join of *EnvironmentError), each
// naming the source, the record and the field: duplicate IDs, bad ID
// characters, unknown types, bad operator URLs, unknown fields. A document
// that is neither YAML nor JSON is named with the line and column where it
// stops making sense.
//
// A document that starts with "[" or "{" is read as JSON directly (the YAML
// parser would take tens of times longer over a large file); when it is not
// valid JSON, it is read as YAML, whose flow style starts the same way.
func ParseEnvironments(data []byte, source string) ([]Environment, error) {
	var notJSON *json.SyntaxError
	if looksLikeJSON(data) {
		envs, err := parseEnvironmentsJSON(data, source)
		if !errors.As(err, &notJSON) {
			return envs, err
		}
		// Perhaps YAML's flow style: [{id: env-1, type: k8s}].
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		if notJSON != nil {
			line, col := position(data, notJSON.Offset-1) // the last byte read
			return nil, fmt.Errorf("%s: neither YAML nor JSON: line %d, column %d: %w", source, line, col, notJSON)
		}
		return nil, fmt.Errorf("%s: neither YAML nor JSON: %w", source, err)
	}
	envs, err := parseEnvironmentsJSON(js, source)
	if errors.As(err, new(*json.SyntaxError)) { // not expected of YAMLToJSON's output
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return envs, err
}

// looksLikeJSON reports whether data's first byte after white space opens a
// JSON array or object.
func looksLikeJSON(data []byte) bool {
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && (data[0] == '[' || data[0] == '{')
}

// position is the line and column (1-based; the column in bytes) of
// data[offset].
func position(data []byte, offset int64) (line, col int) {
	before := data[:min(max(offset, 0), int64(len(data)))]
	return bytes.Count(before, []byte{'\n'}) + 1, len(before) - bytes.LastIndexByte(before, '\n')
}

// parseEnvironmentsJSON is ParseEnvironments of a JSON document; a document
// that is not valid JSON gives its *json.SyntaxError as it is.
func parseEnvironmentsJSON(js []byte, source string) ([]Environment, error) {
	trimmed := bytes.TrimSpace(js)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return []Environment{}, nil
	}
	if !json.Valid(js) {
		return nil, syntaxError(js) // its offset is in js
	}
	var list []byte
	switch trimmed[0] {
	case '[':
		list = trimmed
	case '{':
		top, _ := members(trimmed, 0, nil)
		found := false
		for _, m := range top {
			if string(m.key) != "environments" {
				return nil, fmt.Errorf("%s: unknown top-level field %q (want a list, or an object with an \"environments\" list)", source, m.key)
			}
			list, found = m.value, true
		}
		if !found {
			return nil, fmt.Errorf("%s: no \"environments\" list", source)
		}
		if string(list) == "null" {
			return []Environment{}, nil
		}
		if list[0] != '[' {
			return nil, fmt.Errorf("%s: \"environments\" is not a list", source)
		}
	default:
		return nil, fmt.Errorf("%s: want a list of environments, or an object with an \"environments\" list", source)
	}
	records := records(list, 0)

	envs := make([]Environment, 0, len(records))
	var errs []*EnvironmentError
	seen := make(map[string]int, len(records))
	urls := urlChecks{}
	for i, r := range records {
		env, eerrs := decodeFields(r, source, i, urls)
		if len(eerrs) > 0 {
			errs = append(errs, eerrs...)
			continue
		}
		if first, dup := seen[env.ID]; dup {
			errs = append(errs, &EnvironmentError{Source: source, Index: i, ID: env.ID, Field: "id",
				Message: fmt.Sprintf("duplicate id, already used by environments[%d]", first)})
			continue
		}
		seen[env.ID] = i
		envs = append(envs, env)
	}
	if len(errs) > 0 {
		return nil, joinEnvErrors(errs)
	}
	return envs, nil
}

func joinEnvErrors(errs []*EnvironmentError) error {
	if len(errs) == 1 {
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// decodeEnvironment decodes and validates one record, reporting every bad field.
func decodeEnvironment(data []byte, source string, index int) (Environment, []*EnvironmentError) {
	var r jsonRecord
	if i := skipSpace(data, 0); json.Valid(data) && data[i] == '{' {
		r.object = true
		r.members, _ = members(data, i, make([]jsonMember, 0, 8))
	}
	return decodeFields(r, source, index, nil)
}

// decodeFields validates one record, reporting every bad field. urls, when
// not nil, keeps the checks of operator URLs across records.
func decodeFields(r jsonRecord, source string, index int, urls urlChecks) (Environment, []*EnvironmentError) {
	if !r.object {
		return Environment{}, []*EnvironmentError{{Source: source, Index: index, Message: "not a JSON object"}}
	}
	var env Environment
	var errs []*EnvironmentError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &EnvironmentError{Source: source, Index: index, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	str := func(field string) (string, bool) {
		raw, ok := r.get(field)
		if !ok || string(raw) == "null" {
			return "", false
		}
		s, ok := jsonString(raw)
		if !ok {
			bad(field, "must be a string, not %s", snippet(raw))
		}
		return s, ok
	}

	id, idOK := str("id")
	if !idOK {
		if raw, present := r.get("id"); !present || string(raw) == "null" {
			bad("id", "required")
		}
	} else if !validEnvironmentID(id) {
		bad("id", "%q is not 1–64 characters of A-Z a-z 0-9 _ -", id)
	} else {
		env.ID = id
	}
	if name, ok := str("name"); ok {
		env.Name = name
	}
	if typ, ok := str("type"); ok {
		k, err := ParseKind(typ)
		if err != nil {
			bad("type", "%v", err)
		}
		env.Type = k
	} else if raw, present := r.get("type"); !present || string(raw) == "null" {
		bad("type", "required")
	}
	if u, ok := str("operator_url"); ok && strings.TrimSpace(u) != "" {
		if err := urls.check(u); err != nil {
			bad("operator_url", "%v", err)
		}
		env.OperatorURL = strings.TrimSpace(u)
	}
	if raw, ok := r.get("active"); ok && string(raw) != "null" {
		switch string(raw) {
		case "true":
		case "false":
			env.Inactive = true
		default:
			bad("active", "must be true or false, not %s", snippet(raw))
		}
	}
	var unknown []string
	for _, m := range r.members {
		switch string(m.key) {
		case "id", "name", "type", "operator_url", "active":
		default:
			unknown = append(unknown, string(m.key))
		}
	}
	slices.Sort(unknown)
	for _, k := range slices.Compact(unknown) {
		bad(k, "unknown field")
	}
	label := id
	if len(label) > 2*MaxEnvironmentIDLen {
		label = label[:2*MaxEnvironmentIDLen] + "…"
	}
	for _, e := range errs {
		e.ID = label
	}
	return env, errs
}

// urlChecks remembers the check of each operator URL: the many
// environments of a file share a few operators.
type urlChecks map[string]error

// check checks raw as parseOperatorURL does; c may be nil.
func (c urlChecks) check(raw string) error {
	if err, ok := c[raw]; ok {
		return err
	}
	_, err := parseOperatorURL(raw)
	if c != nil {
		c[raw] = err
	}
	return err
}
