package operator

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// A JSON document of environments is checked once with json.Valid, then
// walked by the functions below, which take its syntax as given: a file of
// 100,000 records decodes several times faster this way than through
// encoding/json's maps of json.RawMessage, with a fraction of the
// allocations. They read it as encoding/json would: for a key given more
// than once, the last counts; keys are unescaped.

// jsonRecord is one element of a list: an object's members as written, or
// not an object.
type jsonRecord struct {
	object  bool
	members []jsonMember
}

// jsonMember is a member of an object: its key, unescaped, and its value as
// written.
type jsonMember struct {
	key, value []byte
}

// get returns the value of key (the last, when given more than once).
func (r jsonRecord) get(key string) ([]byte, bool) {
	for i := len(r.members) - 1; i >= 0; i-- {
		if string(r.members[i].key) == key {
			return r.members[i].value, true
		}
	}
	return nil, false
}

// syntaxError is the *json.SyntaxError of data, which json.Valid rejected.
func syntaxError(data []byte) error {
	var v json.RawMessage
	return json.Unmarshal(data, &v)
}

// skipSpace returns where the JSON white space from data[i] on ends.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns where the string that starts at data[i] ends.
func stringEnd(data []byte, i int) int {
	for i++; data[i] != '"'; i++ {
		if data[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// valueEnd returns where the value that starts at data[i] ends.
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for {
			switch data[i] {
			case '"':
				i = stringEnd(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(data) { // a number, true, false or null
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
		i++
	}
	return i
}

// members appends the members of the object that starts at data[i] to ms,
// and returns them and where the object ends.
func members(data []byte, i int, ms []jsonMember) ([]jsonMember, int) {
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return ms, i + 1
	}
	for {
		end := stringEnd(data, i)
		key := unquote(data[i:end])
		i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		end = valueEnd(data, i)
		ms = append(ms, jsonMember{key: key, value: data[i:end]})
		i = skipSpace(data, end)
		if data[i] == '}' {
			return ms, i + 1
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

// records returns the elements of the array that starts at data[i]. The
// members of many objects share one allocation.
func records(data []byte, i int) []jsonRecord {
	var out []jsonRecord
	var chunk []jsonMember
	i = skipSpace(data, i+1)
	for data[i] != ']' {
		if data[i] == '{' {
			if cap(chunk)-len(chunk) < 8 {
				chunk = make([]jsonMember, 0, 1024)
			}
			start := len(chunk)
			chunk, i = members(data, i, chunk) // a long object may move to an array of its own
			out = append(out, jsonRecord{object: true, members: chunk[start:len(chunk):len(chunk)]})
		} else {
			i = valueEnd(data, i)
			out = append(out, jsonRecord{})
		}
		i = skipSpace(data, i)
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return out
}

// unquote returns the content of the string raw, unescaped; without
// escapes, as it is.
func unquote(raw []byte) []byte {
	if body := raw[1 : len(raw)-1]; bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return body
	}
	var s string
	_ = json.Unmarshal(raw, &s) // raw is a valid string
	return []byte(s)
}

// jsonString decodes raw, a valid JSON value, as a string; false when it is
// not one.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	return string(unquote(raw)), true
}
