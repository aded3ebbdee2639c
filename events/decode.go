package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/schemas"
)

// MaxEventBytes is the largest message the decoders accept: body plus, in
// binary mode, the ce- headers.
const MaxEventBytes = 256 << 10

// Content modes of a decoded message (Envelope.Mode).
const (
	ModeStructured = "structured"
	ModeBinary     = "binary"
	// ModeData is a bare status.query data object sent to the request/reply
	// endpoint (DecodeStatusQueryOrData); it has no CloudEvent attributes.
	ModeData = "data"
)

// percentTolerance is how far above 1 the percents of a request may add up.
const percentTolerance = 0.001

// Envelope is what a decoder learned of a message's CloudEvent attributes,
// filled as far as the message allowed even when decoding failed: a request
// with an ID can be answered.
type Envelope struct {
	ID          string    // "" when unidentifiable
	Environment string    // from the NATS subject
	Type        string    // CloudEvent type
	Source      string    // CloudEvent source
	Subject     string    // CloudEvent subject attribute
	Time        time.Time // CloudEvent time; zero when absent
	TraceParent string    // traceparent extension, copied to the result
	Mode        string    // ModeStructured, ModeBinary or ModeData
}

// DecodeDeployRequest decodes and validates a deploy request received on
// subject (deploy.request.<env>), in either content mode (docs/contract.md, CloudEvents on NATS).
//
// Errors are *Error: invalid_event when the message is not a valid
// CloudEvent 1.0, is over MaxEventBytes, has another type than
// io.boreas.deploy.request.v1, or its environment extension disagrees with
// the subject; invalid_data when datacontenttype is not application/json,
// data is missing or not an object, breaks the schema, its percents add up
// to more than 1 (± 0.001) or version is not among non-empty deployments.
// The Envelope is filled as far as the message allowed; when its ID is ""
// the error wraps ErrUnidentifiable. On invalid_data the request holds what
// could be read of it (its app and version, say), so an answer can echo them.
//
// The time-ahead rule (docs/contract.md, Request time) needs the stored time of the message and
// is the caller's to check, with Envelope.Time.
func DecodeDeployRequest(subject string, h nats.Header, body []byte) (Envelope, DeployRequest, error) {
	if env, req, ok := fastDeployRequest(subject, h, body); ok {
		return env, req, nil
	}
	return decodeDeployRequest(subject, h, body)
}

// decodeDeployRequest is DecodeDeployRequest without its fast path
// (fastdecode.go): the reference the fast path is held to, and the path of
// every message the fast path leaves to it.
func decodeDeployRequest(subject string, h nats.Header, body []byte) (Envelope, DeployRequest, error) {
	var req DeployRequest
	env, err := decodeTyped(subject, TypeDeployRequest, h, body, &req)
	if err != nil {
		return env, req, err
	}
	if err := checkDeployRequest(req); err != nil {
		return env, req, err
	}
	return env, req, nil
}

// DecodeStatusQuery decodes and validates a status query received on
// subject (status.query.<env> or operator-bridge.status.<env>), in either
// content mode, with the errors of DecodeDeployRequest.
func DecodeStatusQuery(subject string, h nats.Header, body []byte) (Envelope, StatusQuery, error) {
	if env, q, ok := fastStatusQuery(subject, h, body); ok {
		return env, q, nil
	}
	return decodeStatusQuery(subject, h, body)
}

// decodeStatusQuery is DecodeStatusQuery without its fast path.
func decodeStatusQuery(subject string, h nats.Header, body []byte) (Envelope, StatusQuery, error) {
	var q StatusQuery
	env, err := decodeTyped(subject, TypeStatusQuery, h, body, &q)
	return env, q, err
}

// DecodeStatusQueryOrData is DecodeStatusQuery for the request/reply
// endpoint, which also takes the bare data ({"app": "my-app"}): a message
// with no Content-Type, no ce-id header and no "specversion" in its body is
// data, decoded with Envelope.Mode ModeData and Envelope.ID "". Errors of
// bare data are invalid_data and do not wrap ErrUnidentifiable: the reply
// goes to the requester whatever the id.
func DecodeStatusQueryOrData(subject string, h nats.Header, body []byte) (Envelope, StatusQuery, error) {
	ct, hasID := scanHeaders(h)
	if ct != "" || hasID || bytes.Contains(body, []byte(`"specversion"`)) {
		return DecodeStatusQuery(subject, h, body)
	}
	envelope := Envelope{Type: TypeStatusQuery, Mode: ModeData}
	envelope.Environment = lastToken(subject)
	if _, err := EnvironmentFromSubject(subject); err != nil {
		return envelope, StatusQuery{}, eventError("subject", err.Error())
	}
	if len(body) > MaxEventBytes {
		return envelope, StatusQuery{}, dataError("", fmt.Sprintf("query is %d bytes, over the limit of %d", len(body), MaxEventBytes))
	}
	var q StatusQuery
	if err := decodeData(TypeStatusQuery, body, &q); err != nil {
		return envelope, StatusQuery{}, err
	}
	return envelope, q, nil
}

// Decode decodes a message in either content mode into a CloudEvent and
// checks that it is a valid CloudEvent 1.0 of at most MaxEventBytes. It does
// not look at its type or data: see the typed decoders for that. Errors are
// as for DecodeDeployRequest.
func Decode(h nats.Header, body []byte) (event.Event, error) {
	_, e, err := decodeEvent(h, body)
	return e, err
}

// DecodeDeployResult decodes a deploy result event and validates its data
// against the schema.
func DecodeDeployResult(h nats.Header, body []byte) (event.Event, DeployResult, error) {
	var r DeployResult
	e, err := decodeOf(TypeDeployResult, h, body, &r)
	return e, r, err
}

// DecodeStatusResult decodes a status result event and validates its data
// against the schema.
func DecodeStatusResult(h nats.Header, body []byte) (event.Event, StatusResult, error) {
	var r StatusResult
	e, err := decodeOf(TypeStatusResult, h, body, &r)
	return e, r, err
}

// DecodeHealth decodes an operator health event and validates its data
// against the schema.
func DecodeHealth(h nats.Header, body []byte) (event.Event, Health, error) {
	var r Health
	e, err := decodeOf(TypeHealth, h, body, &r)
	return e, r, err
}

// decodeOf decodes an event of type typ with no subject to check against.
func decodeOf(typ string, h nats.Header, body []byte, data any) (event.Event, error) {
	envelope, e, err := decodeEvent(h, body)
	if err != nil {
		return e, err
	}
	if envelope.Type != typ {
		return e, eventError("type", fmt.Sprintf("%q, want %q", envelope.Type, typ))
	}
	if err := checkData(&e); err != nil {
		return e, err
	}
	if err := decodeData(typ, e.Data(), data); err != nil {
		return e, err
	}
	return e, nil
}

// decodeTyped decodes an event received on subject that must have type
// typ, and its data into data.
func decodeTyped(subject, typ string, h nats.Header, body []byte, data any) (Envelope, error) {
	envelope, e, err := decodeEvent(h, body)
	envelope.Environment = lastToken(subject)
	if err != nil {
		return envelope, err
	}
	if _, err := EnvironmentFromSubject(subject); err != nil {
		return envelope, eventError("subject", err.Error())
	}
	if want := typeForSubject(subject); want != "" && want != typ {
		return envelope, eventError("subject", fmt.Sprintf("%q does not carry %s events", subject, typ))
	}
	if envelope.Type != typ {
		return envelope, eventError("type", fmt.Sprintf("%q does not fit subject %q: want %q", envelope.Type, subject, typ))
	}
	if v, ok := e.Extensions()[ExtEnvironment]; ok {
		s, isString := v.(string)
		if !isString {
			return envelope, eventError(ExtEnvironment, fmt.Sprintf("extension is %T, want a string", v))
		}
		if s != envelope.Environment {
			return envelope, eventError(ExtEnvironment, fmt.Sprintf("%q disagrees with the subject's environment %q", s, envelope.Environment))
		}
	}
	if err := checkData(&e); err != nil {
		return envelope, err
	}
	return envelope, decodeData(typ, e.Data(), data)
}

// checkData checks datacontenttype and that data is a JSON object.
func checkData(e *event.Event) error {
	if ct := e.DataContentType(); ct != "" && mediaType(ct) != ContentTypeJSON {
		return dataError("datacontenttype", fmt.Sprintf("%q, want %s", ct, ContentTypeJSON))
	}
	data := bytes.TrimLeft(e.Data(), " \t\r\n")
	if len(data) == 0 {
		return dataError("data", "missing")
	}
	if data[0] != '{' {
		return dataError("data", "not a JSON object")
	}
	return nil
}

// decodeData validates a data object against typ's schema and decodes it.
func decodeData(typ string, data []byte, into any) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return dataError("data", "not JSON: "+err.Error())
	}
	if _, ok := v.(map[string]any); !ok {
		return dataError("data", "not a JSON object")
	}
	if err := schemas.Validate(typ, v); err != nil {
		// Fill what can be read, so that the answer can echo the request's
		// app and version.
		_ = json.Unmarshal(data, into)
		return schemaError(err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		if ee, ok := errors.AsType[*Error](err); ok {
			return ee // a field's own check (rollout.timeout, say)
		}
		// The schema admits only what the type can hold; this is a bug
		// in one of them, reported as the data's fault all the same.
		return dataError("data", err.Error())
	}
	return nil
}

// Validate checks r as the bridge does when it receives it (the schema, and
// the rules beyond it), so that a publisher can catch a bad request before
// sending it. The error is an *Error with the code invalid_data, naming the
// field and saying in words what it allows.
func (r DeployRequest) Validate() error {
	data, err := json.Marshal(r)
	if err != nil {
		return dataError("data", err.Error())
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return dataError("data", err.Error())
	}
	if err := schemas.Validate(TypeDeployRequest, v); err != nil {
		return schemaError(err)
	}
	return checkDeployRequest(r)
}

// checkDeployRequest checks the rules of docs/contract.md, Deploy request, that the schema cannot
// express.
func checkDeployRequest(r DeployRequest) error {
	if len(r.Deployments) == 0 {
		return nil
	}
	var sum float64
	found := false
	for _, d := range r.Deployments {
		sum += d.Percent
		if d.Version == r.Version {
			found = true
		}
	}
	if sum > 1+percentTolerance {
		return dataError("deployments", fmt.Sprintf("percents add up to %s, more than 1", trimFloat(sum)))
	}
	if !found {
		return dataError("version", fmt.Sprintf("%q is not among the deployments", r.Version))
	}
	return nil
}

func trimFloat(f float64) string {
	return fmt.Sprint(math.Round(f*1e6) / 1e6)
}

// decodeEvent decodes a message in the content mode its headers call for
// and checks that it is a valid CloudEvent 1.0.
func decodeEvent(h nats.Header, body []byte) (Envelope, event.Event, error) {
	ct, hasID := scanHeaders(h)
	mt := mediaType(ct)
	switch {
	case mt == ContentTypeBatch:
		return Envelope{}, event.Event{}, unidentifiable("Content-Type", "batches ("+ContentTypeBatch+") are not accepted")
	case mt == ContentTypeStructured:
		return decodeStructured(body)
	case hasID:
		return decodeBinary(h, ct, body)
	default:
		return decodeStructured(body)
	}
}

// scanHeaders finds the Content-Type header and whether a ce-id header is
// present, both matched without regard to case.
func scanHeaders(h nats.Header) (contentType string, hasID bool) {
	for k, v := range h {
		switch {
		case strings.EqualFold(k, HeaderContentType):
			if len(v) > 0 {
				contentType = v[0]
			}
		case strings.EqualFold(k, "ce-id"):
			hasID = true
		}
	}
	return contentType, hasID
}

// mediaType returns the lower-case media type of a Content-Type value,
// without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	for i := 0; i < len(ct); i++ {
		if c := ct[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(ct)
		}
	}
	return ct
}

func lastToken(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

func tooBig(size int) string {
	return fmt.Sprintf("message is %d bytes, over the limit of %d", size, MaxEventBytes)
}

// decodeStructured decodes a structured-mode body with sdk-go's JSON format.
func decodeStructured(body []byte) (Envelope, event.Event, error) {
	envelope := Envelope{Mode: ModeStructured}
	if len(body) > MaxEventBytes {
		envelope.ID = topLevelID(body)
		if envelope.ID == "" {
			return envelope, event.Event{}, unidentifiable("", tooBig(len(body)))
		}
		return envelope, event.Event{}, eventError("", tooBig(len(body)))
	}
	var e event.Event
	if err := e.UnmarshalJSON(body); err != nil || !json.Valid(body) {
		if err == nil {
			err = fmt.Errorf("not valid JSON")
		}
		return diagnoseStructured(body, err)
	}
	fillEnvelope(&envelope, &e)
	return envelope, e, checkEvent(&envelope, &e)
}

// diagnoseStructured explains why sdk-go could not read a structured body,
// naming the attribute at fault, and identifies it if it can.
func diagnoseStructured(body []byte, cause error) (Envelope, event.Event, error) {
	envelope := Envelope{Mode: ModeStructured}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return envelope, event.Event{}, unidentifiable("", "body is not a JSON object")
	}
	str := func(name string) (string, bool) {
		raw, ok := m[name]
		if !ok {
			return "", false
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	envelope.ID, _ = str("id")
	envelope.Type, _ = str("type")
	envelope.Source, _ = str("source")
	envelope.Subject, _ = str("subject")
	envelope.TraceParent, _ = str(ExtTraceParent)
	if t, ok := str("time"); ok {
		envelope.Time, _ = time.Parse(time.RFC3339Nano, t)
	}
	fail := eventError
	if envelope.ID == "" {
		fail = unidentifiable
	}
	if _, ok := m["id"]; !ok {
		return envelope, event.Event{}, fail("id", "missing")
	}
	for _, attr := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data_base64"} {
		raw, present := m[attr]
		if !present {
			continue
		}
		if _, ok := str(attr); !ok {
			return envelope, event.Event{}, fail(attr, "not a string: "+string(raw))
		}
	}
	if sv, _ := str("specversion"); sv != "1.0" {
		return envelope, event.Event{}, fail("specversion", fmt.Sprintf("%q, want \"1.0\"", sv))
	}
	if t, ok := str("time"); ok {
		if _, err := time.Parse(time.RFC3339Nano, t); err != nil {
			return envelope, event.Event{}, fail("time", fmt.Sprintf("%q is not an RFC 3339 time", t))
		}
	}
	if ct, ok := str("datacontenttype"); ok && mediaType(ct) != ContentTypeJSON && envelope.ID != "" {
		return envelope, event.Event{}, dataError("datacontenttype", fmt.Sprintf("%q, want %s", ct, ContentTypeJSON))
	}
	// In name order, so that a body with several faults gets the same
	// answer every time.
	for _, name := range sortedKeys(m) {
		raw := m[name]
		if isContextAttribute(name) || name == "data" || name == "data_base64" {
			continue
		}
		if !event.IsExtensionNameValid(name) || strings.ToLower(name) != name {
			return envelope, event.Event{}, fail(name, "not a valid extension attribute name (lower-case letters and digits only)")
		}
		if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[' || raw[0] == 'n') {
			return envelope, event.Event{}, fail(name, "extension value must be a string, number or boolean")
		}
	}
	return envelope, event.Event{}, fail("", "not a valid CloudEvent: "+cause.Error())
}

func isContextAttribute(name string) bool {
	switch name {
	case "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema":
		return true
	}
	return false
}

// topLevelID finds the top-level "id" string of a JSON object body without
// decoding the rest; "" when there is none.
func topLevelID(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := tok.(string)
		if key == "id" {
			var id string
			if dec.Decode(&id) != nil {
				return ""
			}
			return id
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}

// decodeBinary decodes a binary-mode message: attributes in ce- headers,
// percent-decoded; Content-Type is datacontenttype; the body is data.
func decodeBinary(h nats.Header, contentType string, body []byte) (Envelope, event.Event, error) {
	envelope := Envelope{Mode: ModeBinary}
	size := len(body)
	attrs := make(map[string]string, 8)
	var badName string
	for k, v := range h {
		if len(k) < 3 || !strings.EqualFold(k[:3], "ce-") || len(v) == 0 {
			continue
		}
		name := strings.ToLower(k[3:])
		if _, dup := attrs[name]; dup {
			// The same attribute twice, in different cases.
			badName = name
		}
		attrs[name] = v[0]
		size += len(k) + len(v[0])
	}
	envelope.ID = decodeHeaderValue(attrs["id"])
	fail := eventError
	if envelope.ID == "" {
		fail = unidentifiable
	}
	if size > MaxEventBytes {
		return envelope, event.Event{}, fail("", tooBig(size))
	}
	if badName != "" {
		return envelope, event.Event{}, fail(badName, "given twice")
	}
	// Decode every value first, so the Envelope is as full as it can be,
	// in name order, so that a message with several faults gets the same
	// answer every time.
	names := sortedKeys(attrs)
	for _, name := range names {
		raw := attrs[name]
		v, err := url.PathUnescape(raw)
		if err != nil || !utf8.ValidString(v) {
			return envelope, event.Event{}, fail(name, fmt.Sprintf("%q is not a percent-encoded UTF-8 value", raw))
		}
		attrs[name] = v
	}
	envelope.Type = attrs["type"]
	envelope.Source = attrs["source"]
	envelope.Subject = attrs["subject"]
	envelope.TraceParent = attrs[ExtTraceParent]
	if envelope.ID == "" {
		return envelope, event.Event{}, fail("id", "missing")
	}
	if sv := attrs["specversion"]; sv != "1.0" {
		return envelope, event.Event{}, fail("specversion", fmt.Sprintf("%q, want \"1.0\"", sv))
	}
	e := event.New(event.CloudEventsVersionV1)
	for _, name := range names {
		v := attrs[name]
		switch name {
		case "specversion":
		case "id":
			e.SetID(v)
		case "source":
			e.SetSource(v)
		case "type":
			e.SetType(v)
		case "subject":
			e.SetSubject(v)
		case "dataschema":
			e.SetDataSchema(v)
		case "datacontenttype":
			// Content-Type carries it in binary mode; a header of its own
			// is only taken when Content-Type is absent.
			if contentType == "" {
				e.SetDataContentType(v)
			}
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return envelope, event.Event{}, fail("time", fmt.Sprintf("%q is not an RFC 3339 time", v))
			}
			envelope.Time = t
			e.SetTime(t)
		default:
			if !event.IsExtensionNameValid(name) {
				return envelope, event.Event{}, fail(name, "not a valid extension attribute name (lower-case letters and digits only)")
			}
			if err := e.Context.SetExtension(name, v); err != nil {
				return envelope, event.Event{}, fail(name, err.Error())
			}
		}
	}
	if contentType != "" {
		e.SetDataContentType(contentType)
	}
	if len(body) > 0 {
		e.DataEncoded = body
	}
	return envelope, e, checkEvent(&envelope, &e)
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func decodeHeaderValue(raw string) string {
	if strings.IndexByte(raw, '%') < 0 {
		return raw
	}
	if v, err := url.PathUnescape(raw); err == nil {
		return v
	}
	return raw
}

func fillEnvelope(envelope *Envelope, e *event.Event) {
	envelope.ID = e.ID()
	envelope.Type = e.Type()
	envelope.Source = e.Source()
	envelope.Subject = e.Subject()
	envelope.Time = e.Time()
	if tp, ok := e.Extensions()[ExtTraceParent].(string); ok {
		envelope.TraceParent = tp
	}
}

// contextAttributes is the order in which checkEvent reports faults.
var contextAttributes = []string{"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema"}

// checkEvent checks what sdk-go's reader lets through: the spec version,
// the required attributes, and whether the event is identifiable.
func checkEvent(envelope *Envelope, e *event.Event) error {
	fail := eventError
	if envelope.ID == "" {
		fail = unidentifiable
	}
	if sv := e.SpecVersion(); sv != event.CloudEventsVersionV1 {
		return fail("specversion", fmt.Sprintf("%q, want \"1.0\"", sv))
	}
	err := e.Validate()
	if err == nil {
		if envelope.ID == "" {
			return fail("id", "missing")
		}
		return nil
	}
	verr, ok := err.(event.ValidationError)
	if !ok {
		return fail("", err.Error())
	}
	for _, attr := range contextAttributes {
		if ferr, ok := verr[attr]; ok {
			return fail(attr, ferr.Error())
		}
	}
	if attrs := sortedKeys(verr); len(attrs) > 0 {
		return fail(attrs[0], verr[attrs[0]].Error())
	}
	return fail("", err.Error())
}
