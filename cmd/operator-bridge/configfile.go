package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The configuration file is YAML: sections of settings, two levels deep.
// Its operator section is the original operator client's (k8s_operator_url,
// pm_operator_url, use_mock); the keys are the file tags of serveConfig:
//
//	operator:
//	  k8s_operator_url: http://k8s-operator:8081
//	  use_mock: false
//	nats:
//	  url: nats://nats:4222
//
// A key with no value leaves the setting alone. An unknown section or key,
// a key given twice, or a list where a value belongs is an error naming
// the file, the line and the key.

// fileValue is a setting's text in the file and its line.
type fileValue struct {
	value string
	line  int
}

// configFileError lists the problems of a configuration file, one per line.
type configFileError []string

func (e configFileError) Error() string { return strings.Join(e, "; ") }

// readConfigFile reads the configuration file at path: the settings it
// sets, by key ("section.key"). With a configFileError it also returns the
// settings it could read.
func readConfigFile(path string, fields []configField) (map[string]fileValue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	return parseConfigFile(data, path, fields)
}

// parseConfigFile parses a configuration file's data; path names it in
// errors.
func parseConfigFile(data []byte, path string, fields []configField) (map[string]fileValue, error) {
	sections := map[string][]string{} // section -> its keys
	for _, f := range fields {
		section, key, _ := strings.Cut(f.key, ".")
		sections[section] = append(sections[section], key)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, configFileError{fmt.Sprintf("%s: not YAML: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	out := map[string]fileValue{}
	if len(doc.Content) == 0 { // an empty file sets nothing
		return out, nil
	}
	var problems configFileError
	at := func(n *yaml.Node, key, format string, args ...any) {
		msg := fmt.Sprintf("%s:%d: ", path, n.Line)
		if key != "" {
			msg += key + ": "
		}
		problems = append(problems, msg+fmt.Sprintf(format, args...))
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		if root.Tag != "!!null" {
			at(root, "", "want sections (operator:, nats:, ...), not %s", kindName(root))
		}
		return out, problems.orNil()
	}
	known := slices.Sorted(maps.Keys(sections))
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		kn, vn := root.Content[i], root.Content[i+1]
		section := kn.Value
		keys, ok := sections[section]
		switch {
		case !ok:
			at(kn, section, "unknown section (known: %s)", strings.Join(known, ", "))
			continue
		case seen[section] != 0:
			at(kn, section, "section given twice (first on line %d)", seen[section])
			continue
		}
		seen[section] = kn.Line
		if vn.Kind != yaml.MappingNode {
			if vn.Tag != "!!null" {
				at(vn, section, "want the section's keys (%s), not %s", strings.Join(keys, ", "), kindName(vn))
			}
			continue
		}
		for j := 0; j+1 < len(vn.Content); j += 2 {
			k, v := vn.Content[j], vn.Content[j+1]
			full := section + "." + k.Value
			switch {
			case !slices.Contains(keys, k.Value):
				at(k, full, "unknown key (%s has %s)", section, strings.Join(keys, ", "))
			case seen[full] != 0:
				at(k, full, "key given twice (first on line %d)", seen[full])
			case v.Kind != yaml.ScalarNode:
				at(v, full, "want a single value, not %s", kindName(v))
			case v.Tag == "!!null":
				seen[full] = k.Line // no value: the setting keeps its default
			default:
				seen[full] = k.Line
				out[full] = fileValue{value: v.Value, line: v.Line}
			}
		}
	}
	return out, problems.orNil()
}

// orNil returns e, or nil when it lists nothing.
func (e configFileError) orNil() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// kindName names what a YAML node is, for errors.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("the value %q", n.Value)
}
