package events

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// ErrUnidentifiable is wrapped by a decoding error when the message carries
// no id to answer it by: its body is not a JSON object with a non-empty
// string "id" (structured mode) and it has no non-empty ce-id header (binary
// mode). Such a message goes to the dead-letter stream (docs/contract.md, Dead letters).
var ErrUnidentifiable = errors.New("message cannot be identified")

// Error is every decoding or validation failure. Code is invalid_event or
// invalid_data; Field names the attribute (specversion, id, time, type,
// environment, ...) or the data field (app, deployments[1].percent, ...)
// at fault, and is empty when the fault is the message as a whole.
type Error struct {
	Code    ErrorCode
	Field   string
	Message string
	// Err is the underlying cause, if any: ErrUnidentifiable when the
	// message cannot be identified.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Code))
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if errors.Is(e.Err, ErrUnidentifiable) {
		b.WriteString(" (")
		b.WriteString(ErrUnidentifiable.Error())
		b.WriteString(")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Info is the result's error for this failure (never retryable).
func (e *Error) Info() *ErrorInfo {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	return &ErrorInfo{Code: e.Code, Message: msg, Retryable: false}
}

// CodeOf returns the contract error code of a decoding error: the Code of
// an *Error in err's chain, or invalid_event for any other non-nil error.
// It returns "" for nil.
func CodeOf(err error) ErrorCode {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return CodeInvalidEvent
}

func eventError(field, msg string) *Error {
	return &Error{Code: CodeInvalidEvent, Field: field, Message: msg}
}

func dataError(field, msg string) *Error {
	return &Error{Code: CodeInvalidData, Field: field, Message: msg}
}

func unidentifiable(field, msg string) *Error {
	return &Error{Code: CodeInvalidEvent, Field: field, Message: msg, Err: ErrUnidentifiable}
}

// schemaError turns a schema validation failure into an invalid_data error
// naming one field: the first, in path order, of the failures found.
func schemaError(err error) *Error {
	ve, ok := errors.AsType[*jsonschema.ValidationError](err)
	if !ok {
		return dataError("", err.Error())
	}
	type leaf struct{ field, msg string }
	var leaves []leaf
	var walk func(*jsonschema.ValidationError)
	walk = func(v *jsonschema.ValidationError) {
		if len(v.Causes) > 0 {
			for _, c := range v.Causes {
				walk(c)
			}
			return
		}
		loc := v.InstanceLocation
		if r, ok := v.ErrorKind.(*kind.Required); ok && len(r.Missing) > 0 {
			loc = append(slices.Clip(loc), slices.Min(r.Missing))
		}
		leaves = append(leaves, leaf{fieldPath(loc), inWords(v)})
	}
	walk(ve)
	if len(leaves) == 0 {
		return dataError("", ve.Error())
	}
	first := slices.MinFunc(leaves, func(a, b leaf) int {
		if c := strings.Compare(a.field, b.field); c != 0 {
			return c
		}
		return strings.Compare(a.msg, b.msg)
	})
	return dataError(first.field, first.msg)
}

// fieldPath writes a JSON location as deployments[1].percent.
func fieldPath(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		if _, err := strconv.Atoi(t); err == nil {
			b.WriteString("[" + t + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(t)
	}
	if b.Len() == 0 {
		return "data"
	}
	return b.String()
}

// allowed says in words what each definition of common.v1.json allows, so
// that no error shows a regular expression.
var allowed = map[string]string{
	"app":         "1–128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
	"version":     "1–128 printable characters, no spaces",
	"environment": "1–64 characters of A-Z a-z 0-9 _ -",
	"percent":     "a fraction from 0 to 1, such as 0.2 for 20%",
}

// inWords says what is wrong with one value that failed its schema.
func inWords(v *jsonschema.ValidationError) string {
	def := ""
	if _, frag, ok := strings.Cut(v.SchemaURL, "#/$defs/"); ok {
		def, _, _ = strings.Cut(frag, "/")
	}
	notValid := func(got string) string {
		if words, ok := allowed[def]; ok {
			return fmt.Sprintf("%s is not a valid %s: %s", got, def, words)
		}
		return got + " is not allowed here"
	}
	switch k := v.ErrorKind.(type) {
	case *kind.Required:
		return "required"
	case *kind.Pattern:
		return notValid(strconv.Quote(k.Got))
	case *kind.MinLength:
		return notValid(fmt.Sprintf("a string of %d characters", k.Got))
	case *kind.MaxLength:
		return notValid(fmt.Sprintf("a string of %d characters", k.Got))
	case *kind.Minimum:
		return notValid(ratText(k.Got))
	case *kind.Maximum:
		return notValid(ratText(k.Got))
	case *kind.Type:
		return fmt.Sprintf("is %s, want %s", article(k.Got), orList(k.Want))
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = fmt.Sprintf("%q", w)
		}
		return fmt.Sprintf("%v is not one of %s", k.Got, strings.Join(want, ", "))
	}
	// Any other keyword: the library's own words, which name no pattern.
	msg := v.Error()
	if _, what, ok := strings.Cut(msg, "': "); ok {
		msg = what
	}
	return msg
}

func ratText(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// article writes a JSON type with its article: "a string", "an object".
func article(typ string) string {
	switch typ {
	case "object", "array", "integer":
		return "an " + typ
	case "null":
		return "null"
	}
	return "a " + typ
}

func orList(types []string) string {
	words := make([]string, len(types))
	for i, t := range types {
		words[i] = article(t)
	}
	return strings.Join(words, " or ")
}
