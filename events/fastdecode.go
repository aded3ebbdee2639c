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

// The fast path of DecodeDeployRequest (and DecodeStatusQuery) reads the common case, a valid
// structured-mode request in plain JSON, in one pass over the body into
// the typed values, with Go checks that imply every check of the full path
// (sdk-go's reader, the CloudEvents attribute rules, json.Valid, the data's
// JSON Schema and the rules beyond it). Whatever it is not sure of (binary
// mode, an escape in a string it reads, a non-ASCII version, an unknown
// field that a case-insensitive match would take for a known one, a
// duplicate, any fault) it leaves to the full path, which then decides and
// words the error as ever. FuzzFastDecode holds the two paths to the same
// answers.

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

// Bits of the attributes fastEnvelope has seen.
const (
	seenSpecVersion = 1 << iota
	seenID
	seenSource
	seenType
	seenSubject
	seenTime
	seenDataContentType
	seenData
	seenEnvironment
	seenTraceParent
)

// fastEnvelope reads a structured-mode CloudEvent of type typ received for
// environment env, its data object with data (called with the index of
// its '{', returning the index after its '}').
func fastEnvelope(body []byte, env, typ string, data func(b []byte, i int) (int, bool)) (Envelope, bool) {
	envelope := Envelope{Environment: env, Type: typ, Mode: ModeStructured}
	var seen uint
	end, ok := eachField(body, skipWS(body, 0), func(key []byte, v int) (int, bool) {
		var bit uint
		var s []byte
		next := v
		ok := true
		switch string(key) {
		case "data":
			bit = seenData
			if v >= len(body) || body[v] != '{' {
				return v, false
			}
			next, ok = data(body, v)
		case "specversion":
			bit = seenSpecVersion
			s, next, ok = plainString(body, v)
			ok = ok && string(s) == event.CloudEventsVersionV1
		case "id":
			bit = seenID
			s, next, ok = plainString(body, v)
			envelope.ID = string(s)
			ok = ok && strings.TrimSpace(envelope.ID) != ""
		case "source":
			bit = seenSource
			s, next, ok = plainString(body, v)
			envelope.Source = string(s)
			ok = ok && sourceKept(envelope.Source)
		case "type":
			bit = seenType
			s, next, ok = plainString(body, v)
			ok = ok && string(s) == typ
		case "subject":
			bit = seenSubject
			s, next, ok = plainString(body, v)
			envelope.Subject = string(s)
			// sdk-go drops an empty subject and refuses a blank one.
			ok = ok && (len(s) == 0 || strings.TrimSpace(envelope.Subject) != "")
		case "time":
			bit = seenTime
			s, next, ok = plainString(body, v)
			if ok && len(s) > 0 {
				var err error
				envelope.Time, err = time.Parse(time.RFC3339Nano, string(s))
				ok = err == nil
			}
		case "datacontenttype":
			bit = seenDataContentType
			s, next, ok = plainString(body, v)
			ok = ok && jsonContentType(string(s))
		case ExtEnvironment:
			bit = seenEnvironment
			s, next, ok = plainString(body, v)
			ok = ok && string(s) == env
		case ExtTraceParent:
			bit = seenTraceParent
			s, next, ok = plainString(body, v)
			envelope.TraceParent = string(s)
		default:
			// Another extension: sdk-go takes a string value under a
			// lower-case name; the rest (dataschema, data_base64, a number)
			// is the full path's.
			if !extensionName(key) {
				return v, false
			}
			_, next, ok = plainString(body, v)
			return next, ok
		}
		if !ok || seen&bit != 0 {
			return v, false
		}
		seen |= bit
		return next, true
	})
	const required = seenSpecVersion | seenID | seenSource | seenType | seenData
	if !ok || seen&required != required || skipWS(body, end) != len(body) {
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

// Bits of the fields fastDeployData has seen.
const (
	seenApp = 1 << iota
	seenVersion
	seenDeployments
	seenRollout
	seenPercent
	seenPackage
	seenTimeout
	seenMinHealthy
)

var (
	deployRequestFields = []string{"app", "version", "deployments", "rollout"}
	deploymentFields    = []string{"version", "percent", "package"}
	rolloutFields       = []string{"timeout", "min_healthy"}
)

// fastDeployData reads the data object at b[i] into req.
func fastDeployData(b []byte, i int, req *DeployRequest) (int, bool) {
	var seen uint
	end, ok := eachField(b, i, func(key []byte, v int) (int, bool) {
		var bit uint
		var s []byte
		next := v
		ok := true
		switch string(key) {
		case "app":
			bit = seenApp
			s, next, ok = plainString(b, v)
			ok = ok && validApp(s)
			req.App = string(s)
		case "version":
			bit = seenVersion
			s, next, ok = plainString(b, v)
			ok = ok && plainVersion(s)
			req.Version = string(s)
		case "deployments":
			bit = seenDeployments
			next, ok = fastDeployments(b, v, &req.Deployments)
		case "rollout":
			bit = seenRollout
			req.Rollout, next, ok = fastRollout(b, v)
		default:
			if !unknownField(key, deployRequestFields) {
				return v, false
			}
			return skipValue(b, v, 2)
		}
		if !ok || seen&bit != 0 {
			return v, false
		}
		seen |= bit
		return next, true
	})
	return end, ok && seen&(seenApp|seenVersion) == seenApp|seenVersion
}

var queryFields = []string{"app"}

// fastQueryData reads the status query data object at b[i] into q.
func fastQueryData(b []byte, i int, q *StatusQuery) (int, bool) {
	seen := false
	end, ok := eachField(b, i, func(key []byte, v int) (int, bool) {
		if string(key) != "app" {
			if !unknownField(key, queryFields) {
				return v, false
			}
			return skipValue(b, v, 2)
		}
		s, next, ok := plainString(b, v)
		if !ok || seen || !validApp(s) {
			return v, false
		}
		seen = true
		q.App = string(s)
		return next, true
	})
	return end, ok && seen
}

// fastDeployments reads the deployments array at b[i].
func fastDeployments(b []byte, i int, deps *[]Deployment) (int, bool) {
	out := make([]Deployment, 0, 2)
	end, ok := eachElement(b, i, func(v int) (int, bool) {
		var d Deployment
		var seen uint
		next, ok := eachField(b, v, func(key []byte, v int) (int, bool) {
			var bit uint
			var s []byte
			next := v
			ok := true
			switch string(key) {
			case "version":
				bit = seenVersion
				s, next, ok = plainString(b, v)
				ok = ok && plainVersion(s)
				d.Version = string(s)
			case "percent":
				bit = seenPercent
				d.Percent, next, ok = fastPercent(b, v)
			case "package":
				bit = seenPackage
				if v >= len(b) || b[v] != '{' {
					return v, false
				}
				next, ok = skipValue(b, v, 4)
				if ok {
					d.Package = append([]byte(nil), b[v:next]...)
				}
			default:
				if !unknownField(key, deploymentFields) {
					return v, false
				}
				return skipValue(b, v, 4)
			}
			if !ok || seen&bit != 0 {
				return v, false
			}
			seen |= bit
			return next, true
		})
		if !ok || seen&(seenVersion|seenPercent) != seenVersion|seenPercent {
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
	var seen uint
	end, ok := eachField(b, i, func(key []byte, v int) (int, bool) {
		var bit uint
		next := v
		ok := true
		switch string(key) {
		case "timeout":
			bit = seenTimeout
			var s []byte
			s, next, ok = plainString(b, v)
			if ok = ok && durationPattern(s); ok {
				d, err := time.ParseDuration(string(s))
				ok = err == nil && d > 0
				r.Timeout = d
			}
		case "min_healthy":
			bit = seenMinHealthy
			next, ok = scanNumber(b, v)
			if ok = ok && next-v <= 3 && isDigits(b[v:next]); ok {
				n, _ := strconv.Atoi(string(b[v:next]))
				ok = n <= 100
				r.MinHealthy = &n
			}
		default:
			if !unknownField(key, rolloutFields) {
				return v, false
			}
			return skipValue(b, v, 3)
		}
		if !ok || seen&bit != 0 {
			return v, false
		}
		seen |= bit
		return next, true
	})
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

// unknownField reports whether an object's key is one that encoding/json
// and the schema both ignore: ASCII (encoding/json matches field names
// without regard to case, and folds some non-ASCII letters to ASCII ones)
// and not a case variant of one of known.
func unknownField(key []byte, known []string) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
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
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = skipString(b, i); !ok {
				return i, false
			}
			if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
				return i, false
			}
			if i, ok = skipValue(b, skipWS(b, i+1), depth+1); !ok {
				return i, false
			}
			if i = skipWS(b, i); i >= len(b) {
				return i, false
			}
			switch b[i] {
			case ',':
				i = skipWS(b, i+1)
			case '}':
				return i + 1, true
			default:
				return i, false
			}
		}
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

// eachField reads the object at b[i], calling field with each key (which
// must be a plain string) and the index of its value.
func eachField(b []byte, i int, field func(key []byte, v int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		key, next, ok := plainString(b, i)
		if !ok {
			return i, false
		}
		if i = skipWS(b, next); i >= len(b) || b[i] != ':' {
			return i, false
		}
		if i, ok = field(key, skipWS(b, i+1)); !ok {
			return i, false
		}
		if i = skipWS(b, i); i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// eachElement reads the array at b[i], calling elem with the index of
// each element.
func eachElement(b []byte, i int, elem func(v int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != '[' {
		return i, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = elem(i); !ok {
			return i, false
		}
		if i = skipWS(b, i); i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return i + 1, true
		default:
			return i, false
		}
	}
}
