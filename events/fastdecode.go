package events

import (
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// The fast paths of DecodeDeployRequest and DecodeStatusQuery read the
// common case, a valid structured-mode event in plain JSON, in one pass
// over the body into the typed values, with Go checks that imply every
// check of the full path (sdk-go's reader, the CloudEvents attribute
// rules, json.Valid, the data's JSON Schema and the rules beyond it).
// Whatever they are not sure of (binary mode, an escape in a string they
// read, a non-ASCII version, an unknown field that a case-insensitive
// match would take for a known one, a duplicate, any fault) they leave to
// the full path, which then decides and words the error as ever. The
// tests in fastdecode_test.go (FuzzFastDecode, FuzzFastDecodeValues,
// TestFastDecodeValues) hold the two paths to the same answers.

// maxFastDepth is the deepest nesting the fast path reads; deeper bodies
// go to the full path.
const maxFastDepth = 64

// fastDeployRequest is DecodeDeployRequest's fast path: ok reports that
// body is a valid deploy request, decoded to exactly what the full path
// decodes it to.
func fastDeployRequest(subject string, h nats.Header, body []byte) (envelope Envelope, req DeployRequest, ok bool) {
	env, ok := fastStructured(subject, TypeDeployRequest, h, body)
	if !ok {
		return Envelope{}, DeployRequest{}, false
	}
	envelope, ok = fastEnvelope(body, env, TypeDeployRequest, func(b []byte, i int) (int, bool) {
		return fastDeployData(b, i, &req)
	})
	if !ok || checkDeployRequest(req) != nil {
		return Envelope{}, DeployRequest{}, false
	}
	return envelope, req, true
}

// fastStatusQuery is DecodeStatusQuery's fast path, like
// fastDeployRequest.
func fastStatusQuery(subject string, h nats.Header, body []byte) (envelope Envelope, q StatusQuery, ok bool) {
	env, ok := fastStructured(subject, TypeStatusQuery, h, body)
	if !ok {
		return Envelope{}, StatusQuery{}, false
	}
	envelope, ok = fastEnvelope(body, env, TypeStatusQuery, func(b []byte, i int) (int, bool) {
		return fastQueryData(b, i, &q)
	})
	if !ok {
		return Envelope{}, StatusQuery{}, false
	}
	return envelope, q, true
}

// fastStructured reports whether a message on subject with headers h and
// body is one the fast path reads: structured mode, within MaxEventBytes,
// on a subject of typ whose environment is valid. It returns the
// environment.
func fastStructured(subject, typ string, h nats.Header, body []byte) (string, bool) {
	if len(body) > MaxEventBytes {
		return "", false
	}
	ct, hasID := scanHeaders(h)
	if mt := mediaType(ct); mt == ContentTypeBatch || (mt != ContentTypeStructured && hasID) {
		return "", false
	}
	env, err := EnvironmentFromSubject(subject)
	if err != nil {
		return "", false
	}
	if want := typeForSubject(subject); want != "" && want != typ {
		return "", false
	}
	return env, true
}

// attributes are the CloudEvent attributes fastEnvelope reads, the
// required ones first.
var attributes = []string{"specversion", "id", "source", "type", "data",
	"subject", "time", "datacontenttype", ExtEnvironment, ExtTraceParent}

// fastEnvelope reads a structured-mode CloudEvent of type typ received for
// environment env, its data object with data (called with the index of
// its '{', returning the index after its '}').
func fastEnvelope(body []byte, env, typ string, data func(b []byte, i int) (int, bool)) (Envelope, bool) {
	envelope := Envelope{Environment: env, Type: typ, Mode: ModeStructured}
	seen, end, ok := eachKnownField(body, skipWS(body, 0), attributes, func(name string, v int) (int, bool) {
		if name == "data" {
			if v >= len(body) || body[v] != '{' {
				return v, false
			}
			return data(body, v)
		}
		s, next, ok := plainString(body, v)
		if !ok {
			return v, false
		}
		switch name {
		case "specversion":
			ok = string(s) == event.CloudEventsVersionV1
		case "id":
			envelope.ID = string(s)
			ok = strings.TrimSpace(envelope.ID) != ""
		case "source":
			envelope.Source = string(s)
			ok = sourceKept(envelope.Source)
		case "type":
			ok = string(s) == typ
		case "subject":
			// sdk-go drops an empty subject and refuses a blank one.
			envelope.Subject = string(s)
			ok = len(s) == 0 || strings.TrimSpace(envelope.Subject) != ""
		case "time":
			if len(s) > 0 {
				var err error
				envelope.Time, err = time.Parse(time.RFC3339Nano, string(s))
				ok = err == nil
			}
		case "datacontenttype":
			ok = jsonContentType(string(s))
		case ExtEnvironment:
			ok = string(s) == env
		case ExtTraceParent:
			envelope.TraceParent = string(s)
		}
		return next, ok
	}, func(key []byte, v int) (int, bool) {
		// Another extension: sdk-go takes a string value under a
		// lower-case name; the rest (dataschema, data_base64, a number)
		// is the full path's.
		if !extensionName(key) {
			return v, false
		}
		_, next, ok := plainString(body, v)
		return next, ok
	})
	if !ok || !hasRequired(seen, 5) || skipWS(body, end) != len(body) {
		return Envelope{}, false
	}
	return envelope, true
}

// sourceKept reports whether sdk-go reads source as a non-empty URI
// reference and gives it back unchanged.
func sourceKept(source string) bool {
	if plainPath(source) {
		return true
	}
	u, err := url.Parse(source)
	return err == nil && u.String() == source && strings.TrimSpace(source) != ""
}

// plainPath reports whether s is an absolute path of unreserved
// characters, which url.Parse and URL.String give back unchanged.
func plainPath(s string) bool {
	if len(s) == 0 || s[0] != '/' || strings.HasPrefix(s, "//") {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '/', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// jsonContentType reports whether ct is a datacontenttype that sdk-go
// takes as JSON and the decoder as application/json.
func jsonContentType(ct string) bool {
	if ct == ContentTypeJSON {
		return true
	}
	if !strings.HasPrefix(ct, ContentTypeJSON+";") {
		return false
	}
	_, _, err := mime.ParseMediaType(ct)
	return err == nil
}

// extensionName reports whether sdk-go takes name as an extension as it
// is: lower-case letters and digits, not one of the names it treats apart.
func extensionName(name []byte) bool {
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	switch string(name) {
	case "schemaurl", "datacontentencoding", "dataschema":
		return false
	}
	return event.IsExtensionNameValid(string(name))
}

// The fields of the data objects the fast path reads, the required ones
// first.
var (
	deployRequestFields = []string{"app", "version", "deployments", "rollout"}
	deploymentFields    = []string{"version", "percent", "package"}
	rolloutFields       = []string{"timeout", "min_healthy"}
	queryFields         = []string{"app"}
)

// fastDeployData reads the data object at b[i] into req.
func fastDeployData(b []byte, i int, req *DeployRequest) (int, bool) {
	seen, end, ok := eachKnownField(b, i, deployRequestFields, func(name string, v int) (int, bool) {
		switch name {
		case "deployments":
			return fastDeployments(b, v, &req.Deployments)
		case "rollout":
			var next int
			var ok bool
			req.Rollout, next, ok = fastRollout(b, v)
			return next, ok
		}
		s, next, ok := plainString(b, v)
		if name == "app" {
			req.App = string(s)
			return next, ok && validApp(s)
		}
		req.Version = string(s)
		return next, ok && plainVersion(s)
	}, nil)
	return end, ok && hasRequired(seen, 2)
}

// fastQueryData reads the status query data object at b[i] into q.
func fastQueryData(b []byte, i int, q *StatusQuery) (int, bool) {
	seen, end, ok := eachKnownField(b, i, queryFields, func(_ string, v int) (int, bool) {
		s, next, ok := plainString(b, v)
		q.App = string(s)
		return next, ok && validApp(s)
	}, nil)
	return end, ok && hasRequired(seen, 1)
}

// fastDeployments reads the deployments array at b[i].
func fastDeployments(b []byte, i int, deps *[]Deployment) (int, bool) {
	out := make([]Deployment, 0, 2)
	end, ok := eachElement(b, i, func(v int) (int, bool) {
		var d Deployment
		seen, next, ok := eachKnownField(b, v, deploymentFields, func(name string, v int) (int, bool) {
			switch name {
			case "version":
				s, next, ok := plainString(b, v)
				d.Version = string(s)
				return next, ok && plainVersion(s)
			case "percent":
				var next int
				var ok bool
				d.Percent, next, ok = fastPercent(b, v)
				return next, ok
			}
			if v >= len(b) || b[v] != '{' {
				return v, false
			}
			next, ok := skipValue(b, v, 4)
			if ok {
				d.Package = append([]byte(nil), b[v:next]...)
			}
			return next, ok
		}, nil)
		if !ok || !hasRequired(seen, 2) {
			return v, false
		}
		out = append(out, d)
		return next, true
	})
	*deps = out
	return end, ok
}

// fastPercent reads a number from 0 to 1 at b[i].
func fastPercent(b []byte, i int) (float64, int, bool) {
	end, ok := scanNumber(b, i)
	if !ok {
		return 0, i, false
	}
	f, err := strconv.ParseFloat(string(b[i:end]), 64)
	if err != nil || f < 0 || f > 1 {
		return 0, i, false
	}
	return f, end, true
}

// fastRollout reads the rollout field at b[i]: false, or an object whose
// timeout is a positive duration and min_healthy a level from 0 to 100.
func fastRollout(b []byte, i int) (*Rollout, int, bool) {
	if i < len(b) && b[i] == 'f' {
		end, ok := skipValue(b, i, 2)
		return &Rollout{Off: true}, end, ok
	}
	if i >= len(b) || b[i] != '{' {
		return nil, i, false
	}
	r := &Rollout{}
	_, end, ok := eachKnownField(b, i, rolloutFields, func(name string, v int) (int, bool) {
		if name == "timeout" {
			s, next, ok := plainString(b, v)
			if !ok || !durationPattern(s) {
				return v, false
			}
			d, err := time.ParseDuration(string(s))
			r.Timeout = d
			return next, err == nil && d > 0
		}
		next, ok := scanNumber(b, v)
		if !ok || next-v > 3 || !isDigits(b[v:next]) {
			return v, false
		}
		n, _ := strconv.Atoi(string(b[v:next]))
		r.MinHealthy = &n
		return next, n <= 100
	}, nil)
	return r, end, ok
}

// validApp reports whether s matches the schema's app pattern,
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$.
func validApp(s []byte) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// plainVersion reports whether s is 1–128 printable ASCII characters other
// than space: a part of what the schema's version pattern,
// ^[^\p{C}\p{Z}]{1,128}$, allows (the rest is the full path's).
func plainVersion(s []byte) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// durationPattern reports whether s, in ASCII, matches the schema's
// rollout timeout pattern, ^([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$.
func durationPattern(s []byte) bool {
	i := 0
	digits := func() bool {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > start
	}
	for {
		if !digits() {
			return false
		}
		if i < len(s) && s[i] == '.' {
			i++
			if !digits() {
				return false
			}
		}
		switch {
		case i+1 < len(s) && (s[i] == 'n' || s[i] == 'u' || s[i] == 'm') && s[i+1] == 's':
			i += 2
		case i < len(s) && (s[i] == 's' || s[i] == 'm' || s[i] == 'h'):
			i++
		default:
			return false
		}
		if i == len(s) {
			return true
		}
	}
}

func isDigits(s []byte) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(s) > 0
}

// unknownField reports whether an object's key (as eachField gives it) is
// one that encoding/json and the schema both ignore: ASCII without escapes
// (encoding/json matches field names without regard to case, and folds
// some non-ASCII letters to ASCII ones) and not a case variant of one of
// known.
func unknownField(key []byte, known []string) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf || c == '\\' {
			return false
		}
	}
	for _, k := range known {
		if strings.EqualFold(string(key), k) {
			return false
		}
	}
	return true
}

// A small JSON reader. Every function takes the index of a value's first
// byte and returns the index after its last; ok false means the input is
// not valid JSON or not something the fast path reads.

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// plainString reads the string at b[i] when it has no escapes and is
// valid UTF-8, returning its contents.
func plainString(b []byte, i int) (s []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s = b[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, i, false
			}
			return s, j + 1, true
		case c == '\\' || c < ' ':
			return nil, i, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, i, false
}

// skipString skips any valid JSON string at b[i].
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	for j := i + 1; j < len(b); {
		switch c := b[j]; {
		case c == '"':
			return j + 1, true
		case c < ' ':
			return i, false
		case c == '\\':
			if j+1 >= len(b) {
				return i, false
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if len(b)-j < 6 || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) || !isHex(b[j+5]) {
					return i, false
				}
				j += 6
			default:
				return i, false
			}
		default:
			j++
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// scanNumber reads a JSON number at b[i], of a size that fits a float64
// (encoding/json refuses to decode a larger one into an interface value).
func scanNumber(b []byte, i int) (int, bool) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	digits := func() int {
		start := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j - start
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		digits()
	default:
		return i, false
	}
	exact := true
	if j < len(b) && b[j] == '.' {
		j++
		if digits() == 0 {
			return i, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		exact = false
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return i, false
		}
	}
	if !exact || j-i > 300 {
		if _, err := strconv.ParseFloat(string(b[i:j]), 64); err != nil {
			return i, false
		}
	}
	return j, true
}

// skipValue skips any valid JSON value at b[i], nested at depth.
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch b[i] {
	case '{':
		if depth >= maxFastDepth {
			return i, false
		}
		return eachField(b, i, func(_ []byte, v int) (int, bool) { return skipValue(b, v, depth+1) })
	case '[':
		if depth >= maxFastDepth {
			return i, false
		}
		return eachElement(b, i, func(v int) (int, bool) { return skipValue(b, v, depth+1) })
	case '"':
		return skipString(b, i)
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	}
	return scanNumber(b, i)
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// eachField reads the object at b[i], calling field with each key, as it
// is between its quotes (escapes and all), and the index of its value.
func eachField(b []byte, i int, field func(key []byte, v int) (int, bool)) (int, bool) {
	return eachMember(b, i, '{', '}', func(m int) (int, bool) {
		next, ok := skipString(b, m)
		if !ok {
			return m, false
		}
		key := b[m+1 : next-1]
		if next = skipWS(b, next); next >= len(b) || b[next] != ':' {
			return next, false
		}
		return field(key, skipWS(b, next+1))
	})
}

// eachKnownField reads the object at b[i] whose fields of interest are
// known (at most 32): field reads the value at index v of each of them,
// a known field given twice is refused, and any other field goes to other;
// a nil other skips the fields that encoding/json and the schema both
// ignore (unknownField). It returns the known fields seen as bits, 1<<k
// for known[k].
func eachKnownField(b []byte, i int, known []string, field func(name string, v int) (int, bool), other func(key []byte, v int) (int, bool)) (uint32, int, bool) {
	var seen uint32
	end, ok := eachField(b, i, func(key []byte, v int) (int, bool) {
		for k, name := range known {
			if string(key) != name {
				continue
			}
			if seen&(1<<k) != 0 {
				return v, false
			}
			seen |= 1 << k
			return field(name, v)
		}
		if other != nil {
			return other(key, v)
		}
		if !unknownField(key, known) {
			return v, false
		}
		return skipValue(b, v, 4)
	})
	return seen, end, ok
}

// hasRequired reports whether eachKnownField saw the first n known fields.
func hasRequired(seen uint32, n int) bool {
	return seen&(1<<n-1) == 1<<n-1
}

// eachElement reads the array at b[i], calling elem with the index of
// each element.
func eachElement(b []byte, i int, elem func(v int) (int, bool)) (int, bool) {
	return eachMember(b, i, '[', ']', elem)
}

// eachMember reads the object or array that open and close delimit at
// b[i], calling member with the index of each of its members (a field or
// an element).
func eachMember(b []byte, i int, open, close byte, member func(m int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != open {
		return i, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == close {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = member(i); !ok {
			return i, false
		}
		if i = skipWS(b, i); i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case close:
			return i + 1, true
		default:
			return i, false
		}
	}
}
