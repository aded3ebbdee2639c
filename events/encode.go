package events

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// Source is a CloudEvent source of the bridge: "/operator-bridge/<instance>".
// It is an alias, so a Source goes wherever a string does.
type Source = string

// SourceFor returns the CloudEvent source of a bridge instance,
// "/operator-bridge/<instance>" (the instance path-escaped).
func SourceFor(instance string) string {
	return "/operator-bridge/" + url.PathEscape(instance)
}

// resultNamespace is the UUID namespace of result IDs.
var resultNamespace = [16]byte{0x7b, 0x1e, 0x52, 0x0c, 0x9d, 0x44, 0x4b, 0x8e, 0xa3, 0x61, 0x2f, 0x0a, 0xc5, 0x17, 0xd8, 0x36}

// ResultID returns the id of the result of the request with id requestID
// stored at stream sequence streamSeq: a name-based (version 5) UUID of
// both, so one stored request delivered twice yields the same result id,
// and so the same Nats-Msg-Id, while a request sent anew (a new sequence)
// gets a result of its own. It never equals requestID. For streamSeq 0 (a
// request that was not stored, as over request/reply) it returns a fresh
// random id.
func ResultID(requestID string, streamSeq uint64) string {
	if streamSeq == 0 {
		return NewEventID()
	}
	return nameUUID(resultNamespace, requestID+"\x00"+strconv.FormatUint(streamSeq, 10), requestID)
}

// nameUUID returns the name-based (version 5) UUID of name in namespace
// ns, hashing again in the rare case that it equals avoid.
func nameUUID(ns [16]byte, name, avoid string) string {
	for {
		h := sha1.New()
		h.Write(ns[:])
		h.Write([]byte(name))
		var u [16]byte
		copy(u[:], h.Sum(nil))
		u[6] = u[6]&0x0f | 0x50 // version 5
		u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
		if id := formatUUID(u); id != avoid {
			return id
		}
		name += "\x00" // a request whose id is its own event's id: hash again
	}
}

// NewEventID returns a fresh random (version 4) UUID.
func NewEventID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// EventOption sets an attribute of an event a client creates.
type EventOption func(*eventOptions)

type eventOptions struct {
	id          string
	time        time.Time
	traceParent string
}

// WithID sets the event id (default: a fresh UUID). Re-sending a request
// with the same id inside the duplicate window stores it once.
func WithID(id string) EventOption { return func(o *eventOptions) { o.id = id } }

// WithTime sets the event time (default: now). Requests of one app and
// environment are applied in the order of their time.
func WithTime(t time.Time) EventOption { return func(o *eventOptions) { o.time = t } }

// WithTraceParent sets the traceparent extension, which the bridge copies
// to the result.
func WithTraceParent(tp string) EventOption { return func(o *eventOptions) { o.traceParent = tp } }

// encoder makes events; its clock and id source are fields so that tests
// can make them deterministic.
type encoder struct {
	now   func() time.Time
	newID func() string
	// sdkOnly writes every event with sdkEvent, the reference the tests
	// hold appendEvent to.
	sdkOnly bool
}

var defaultEncoder = encoder{now: time.Now, newID: NewEventID}

// NewDeployResult returns the result event of the request req, stored at
// stream sequence streamSeq, ready to publish: subject
// deploy.result.<req.Environment>, id ResultID(req.ID, streamSeq), CE subject
// the app, extensions environment, requestid and (if the request had one)
// traceparent, Nats-Msg-Id the id, structured mode. data.RequestID and
// data.Environment are filled from req when empty.
func NewDeployResult(source string, req Envelope, streamSeq uint64, data DeployResult) (*nats.Msg, error) {
	return defaultEncoder.deployResult(source, req, streamSeq, data)
}

// NewStatusResult is NewDeployResult for status results (subject
// status.result.<env>). For a query over request/reply, pass streamSeq 0: the
// result gets a fresh id, and the message's Data and Header are the reply.
// Nil versions and nodes are sent as empty lists.
func NewStatusResult(source string, req Envelope, streamSeq uint64, data StatusResult) (*nats.Msg, error) {
	return defaultEncoder.statusResult(source, req, streamSeq, data)
}

// NewHealth returns a health event ready to publish on
// operator.health.<data.Environment>, with a fresh id, CE subject and
// environment extension the environment. A zero CheckedAt is set to now.
func NewHealth(source string, data Health) (*nats.Msg, error) {
	return defaultEncoder.health(source, data)
}

// NewDeployRequest returns a deploy request event for env ready to publish
// on deploy.request.<env>, and its id.
func NewDeployRequest(source, env string, req DeployRequest, opts ...EventOption) (*nats.Msg, string, error) {
	return defaultEncoder.deployRequest(source, env, req, opts...)
}

// NewStatusQuery returns a status query event for app in env ready to
// publish on status.query.<env> (or send to operator-bridge.status.<env>),
// and its id.
func NewStatusQuery(source, env, app string, opts ...EventOption) (*nats.Msg, string, error) {
	return defaultEncoder.statusQuery(source, env, app, opts...)
}

func (enc encoder) deployResult(source string, req Envelope, streamSeq uint64, data DeployResult) (*nats.Msg, error) {
	if req.ID == "" {
		return nil, errors.New("deploy result: the request has no id")
	}
	if data.RequestID == "" {
		data.RequestID = req.ID
	}
	if data.Environment == "" {
		data.Environment = req.Environment
	}
	return enc.result(TypeDeployResult, DeployResultSubject, source, req, streamSeq, data.App, data)
}

func (enc encoder) statusResult(source string, req Envelope, streamSeq uint64, data StatusResult) (*nats.Msg, error) {
	if data.RequestID == "" {
		data.RequestID = req.ID
	}
	if data.Environment == "" {
		data.Environment = req.Environment
	}
	if data.Status.Versions == nil {
		data.Status.Versions = []VersionStatus{}
	}
	for i := range data.Status.Versions {
		if data.Status.Versions[i].Nodes == nil {
			// Copy before writing: the caller's slice is not ours.
			versions := append([]VersionStatus(nil), data.Status.Versions...)
			for j := range versions {
				if versions[j].Nodes == nil {
					versions[j].Nodes = []NodeStatus{}
				}
			}
			data.Status.Versions = versions
			break
		}
	}
	return enc.result(TypeStatusResult, StatusResultSubject, source, req, streamSeq, data.App, data)
}

func (enc encoder) result(typ string, subject func(string) string, source string, req Envelope, streamSeq uint64, app string, data any) (*nats.Msg, error) {
	var id string
	if streamSeq == 0 {
		id = enc.newID()
	} else {
		id = ResultID(req.ID, streamSeq)
	}
	ext := extensions{environment: req.Environment, requestID: req.ID, traceParent: req.TraceParent}
	return enc.build(subject, req.Environment, typ, source, id, enc.now(), app, ext, data)
}

func (enc encoder) health(source string, data Health) (*nats.Msg, error) {
	if data.CheckedAt.IsZero() {
		data.CheckedAt = enc.now().UTC()
	}
	ext := extensions{environment: data.Environment}
	return enc.build(HealthSubject, data.Environment, TypeHealth, source, enc.newID(), enc.now(), data.Environment, ext, data)
}

func (enc encoder) deployRequest(source, env string, req DeployRequest, opts ...EventOption) (*nats.Msg, string, error) {
	return enc.request(DeployRequestSubject, TypeDeployRequest, source, env, req.App, req, opts)
}

func (enc encoder) statusQuery(source, env, app string, opts ...EventOption) (*nats.Msg, string, error) {
	return enc.request(StatusQuerySubject, TypeStatusQuery, source, env, app, StatusQuery{App: app}, opts)
}

func (enc encoder) request(subject func(string) string, typ, source, env, app string, data any, opts []EventOption) (*nats.Msg, string, error) {
	o := eventOptions{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.id == "" {
		o.id = enc.newID()
	}
	if o.time.IsZero() {
		o.time = enc.now()
	}
	ext := extensions{environment: env, traceParent: o.traceParent}
	msg, err := enc.build(subject, env, typ, source, o.id, o.time, app, ext, data)
	if err != nil {
		return nil, "", err
	}
	return msg, o.id, nil
}

// extensions are the extension attributes of an event this package makes;
// an empty one is left out.
type extensions struct {
	environment, requestID, traceParent string
}

// build makes a structured-mode event message, writing the CloudEvent
// itself (fastencode.go) when it can and with sdk-go otherwise.
func (enc encoder) build(subject func(string) string, env, typ, source, id string, t time.Time, ceSubject string, ext extensions, data any) (*nats.Msg, error) {
	if !ValidEnvironmentID(env) {
		return nil, fmt.Errorf("%s event: environment %q is not %s", typ, env, maxEnvironmentIDMessage)
	}
	if source == "" {
		return nil, fmt.Errorf("%s event: source is empty", typ)
	}
	var body []byte
	ok := false
	if !enc.sdkOnly {
		body, ok = appendEvent(nil, typ, source, id, t, ceSubject, ext, data)
	}
	if !ok {
		var err error
		if body, err = sdkEvent(typ, source, id, t, ceSubject, ext, data); err != nil {
			return nil, err
		}
	}
	return &nats.Msg{
		Subject: subject(env),
		Header: nats.Header{
			HeaderContentType: []string{ContentTypeStructured},
			HeaderMsgID:       []string{id},
		},
		Data: body,
	}, nil
}

// sdkEvent writes a structured-mode CloudEvent with sdk-go: the reference
// appendEvent is held to, and the writer of the events it leaves alone.
func sdkEvent(typ, source, id string, t time.Time, ceSubject string, ext extensions, data any) ([]byte, error) {
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(id)
	e.SetSource(source)
	e.SetType(typ)
	e.SetTime(t.UTC())
	if ceSubject != "" {
		e.SetSubject(ceSubject)
	}
	for name, v := range map[string]string{ExtEnvironment: ext.environment, ExtRequestID: ext.requestID, ExtTraceParent: ext.traceParent} {
		if v != "" {
			e.SetExtension(name, v)
		}
	}
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		return nil, fmt.Errorf("%s event: data: %w", typ, err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%s event: %w", typ, err)
	}
	body, err := e.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("%s event: %w", typ, err)
	}
	return body, nil
}
