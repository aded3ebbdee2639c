package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

const testSubject = "deploy.request.env-001"

// structured returns a structured-mode deploy request body: a valid one,
// changed by edit (set a key to nil to delete it).
func structured(edit map[string]any) []byte {
	ev := map[string]any{
		"specversion": "1.0",
		"id":          "req-1",
		"source":      "/master-service/test",
		"type":        TypeDeployRequest,
		"time":        "2026-11-28T10:00:00Z",
		"environment": "env-001",
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"data": map[string]any{
			"app":     "my-app",
			"version": "v1.2.3",
			"deployments": []any{
				map[string]any{"version": "v1.2.3", "percent": 0.2, "package": map[string]any{"type": "docker", "image": "registry.local/my-app:v1.2.3"}},
				map[string]any{"version": "v1.2.2", "percent": 0.8},
			},
		},
	}
	for k, v := range edit {
		if v == nil {
			delete(ev, k)
		} else {
			ev[k] = v
		}
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

func data(edit map[string]any) map[string]any {
	d := map[string]any{"app": "my-app", "version": "v1"}
	for k, v := range edit {
		if v == nil {
			delete(d, k)
		} else {
			d[k] = v
		}
	}
	return d
}

// binaryHeader returns the headers of a valid binary-mode deploy request,
// with header names in mixed case, changed by edit ("" deletes).
func binaryHeader(edit map[string]string) nats.Header {
	h := nats.Header{
		"ce-specversion": {"1.0"},
		"Ce-Id":          {"req-b1"},
		"CE-SOURCE":      {"/master-service/caf%C3%A9"},
		"ce-type":        {TypeDeployRequest},
		"ce-time":        {"2026-11-28T10:00:00Z"},
		"ce-environment": {"env-001"},
		"ce-traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"Content-Type":   {"application/json; charset=utf-8"},
	}
	for k, v := range edit {
		delete(h, k)
		if v != "" {
			h[k] = []string{v}
		}
	}
	return h
}

func withHeader(h nats.Header, key string, values ...string) nats.Header {
	h[key] = values
	return h
}

const binaryBody = `{"app":"my-app","version":"v1.2.3","deployments":[{"version":"v1.2.3","percent":1}]}`

var wantRequest = DeployRequest{
	App:     "my-app",
	Version: "v1.2.3",
	Deployments: []Deployment{
		{Version: "v1.2.3", Percent: 0.2, Package: json.RawMessage(`{"image":"registry.local/my-app:v1.2.3","type":"docker"}`)},
		{Version: "v1.2.2", Percent: 0.8},
	},
}

func TestDecodeDeployRequestStructured(t *testing.T) {
	for _, ct := range []string{"", "application/cloudevents+json", "Application/CloudEvents+JSON; charset=utf-8"} {
		t.Run("content-type="+ct, func(t *testing.T) {
			h := nats.Header{}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
			env, req, err := DecodeDeployRequest(testSubject, h, structured(nil))
			if err != nil {
				t.Fatal(err)
			}
			wantEnv := Envelope{
				ID: "req-1", Environment: "env-001", Type: TypeDeployRequest, Source: "/master-service/test",
				Time: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), Mode: ModeStructured,
				TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			}
			if diff := cmp.Diff(wantEnv, env); diff != "" {
				t.Errorf("envelope (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantRequest, req); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeDeployRequestBinary(t *testing.T) {
	env, req, err := DecodeDeployRequest(testSubject, binaryHeader(nil), []byte(binaryBody))
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := Envelope{
		ID: "req-b1", Environment: "env-001", Type: TypeDeployRequest, Source: "/master-service/café",
		Time: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), Mode: ModeBinary,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	if diff := cmp.Diff(wantEnv, env); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
	want := DeployRequest{App: "my-app", Version: "v1.2.3", Deployments: []Deployment{{Version: "v1.2.3", Percent: 1}}}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

func TestDecodeModeRules(t *testing.T) {
	tests := []struct {
		name   string
		header nats.Header
		body   []byte
		mode   string
		id     string
	}{
		// Content-Type application/cloudevents+json is structured even with ce- headers.
		{"structured content type wins over ce-id", nats.Header{"Content-Type": {"application/cloudevents+json; charset=utf-8"}, "ce-id": {"header-id"}}, structured(nil), ModeStructured, "req-1"},
		{"no content type, ce-id: binary", binaryHeader(map[string]string{"Content-Type": ""}), []byte(binaryBody), ModeBinary, "req-b1"},
		{"no content type, no ce-id: structured", nats.Header{"Other": {"x"}}, structured(nil), ModeStructured, "req-1"},
		{"application/json with ce-id: binary", binaryHeader(map[string]string{"Content-Type": "application/json"}), []byte(binaryBody), ModeBinary, "req-b1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _, err := DecodeDeployRequest(testSubject, tt.header, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if env.Mode != tt.mode || env.ID != tt.id {
				t.Errorf("mode %q id %q, want %q %q", env.Mode, env.ID, tt.mode, tt.id)
			}
		})
	}
}

func TestDecodeDeployRequestAccepts(t *testing.T) {
	tests := []struct {
		name string
		body []byte
	}{
		{"no deployments", structured(map[string]any{"data": data(nil)})},
		{"empty deployments", structured(map[string]any{"data": data(map[string]any{"deployments": []any{}})})},
		{"percents a hair over 1", structured(map[string]any{"data": data(map[string]any{"deployments": []any{
			map[string]any{"version": "v1", "percent": 0.5005}, map[string]any{"version": "v0", "percent": 0.5}}})})},
		{"percents under 1", structured(map[string]any{"data": data(map[string]any{"deployments": []any{map[string]any{"version": "v1", "percent": 0.1}}})})},
		{"unknown data fields", structured(map[string]any{"data": data(map[string]any{"requested_by": "ci"})})},
		{"no environment extension", structured(map[string]any{"environment": nil})},
		{"no time", structured(map[string]any{"time": nil})},
		{"datacontenttype with parameters", structured(map[string]any{"datacontenttype": "application/json; charset=utf-8"})},
		{"other extension", structured(map[string]any{"partitionkey": "k1"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := DecodeDeployRequest(testSubject, nil, tt.body); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	big := strings.Repeat("x", MaxEventBytes)
	tests := []struct {
		name    string
		subject string // default testSubject
		header  nats.Header
		body    []byte
		code    ErrorCode
		field   string
		id      string // "" = unidentifiable
	}{
		// Structured mode.
		{name: "not JSON", body: []byte("hello"), code: CodeInvalidEvent},
		{name: "empty body", body: nil, code: CodeInvalidEvent},
		{name: "JSON array", body: []byte(`[{"id":"x"}]`), code: CodeInvalidEvent},
		{name: "no id", body: structured(map[string]any{"id": nil}), code: CodeInvalidEvent, field: "id"},
		{name: "empty id", body: structured(map[string]any{"id": ""}), code: CodeInvalidEvent, field: "id"},
		{name: "numeric id", body: structured(map[string]any{"id": 7}), code: CodeInvalidEvent, field: "id"},
		{name: "trailing garbage", body: append(structured(nil), " }"...), code: CodeInvalidEvent},
		{name: "specversion 0.3", body: structured(map[string]any{"specversion": "0.3"}), code: CodeInvalidEvent, field: "specversion", id: "req-1"},
		{name: "specversion 2.0", body: structured(map[string]any{"specversion": "2.0"}), code: CodeInvalidEvent, field: "specversion", id: "req-1"},
		{name: "no specversion", body: structured(map[string]any{"specversion": nil}), code: CodeInvalidEvent, field: "specversion", id: "req-1"},
		{name: "no source", body: structured(map[string]any{"source": nil}), code: CodeInvalidEvent, field: "source", id: "req-1"},
		{name: "no type", body: structured(map[string]any{"type": nil}), code: CodeInvalidEvent, field: "type", id: "req-1"},
		{name: "bad time", body: structured(map[string]any{"time": "yesterday"}), code: CodeInvalidEvent, field: "time", id: "req-1"},
		{name: "numeric time", body: structured(map[string]any{"time": 12}), code: CodeInvalidEvent, field: "time", id: "req-1"},
		{name: "type of another subject", body: structured(map[string]any{"type": TypeStatusQuery}), code: CodeInvalidEvent, field: "type", id: "req-1"},
		{name: "unknown type", body: structured(map[string]any{"type": "com.example.other"}), code: CodeInvalidEvent, field: "type", id: "req-1"},
		{name: "environment disagrees with subject", body: structured(map[string]any{"environment": "env-002"}), code: CodeInvalidEvent, field: "environment", id: "req-1"},
		{name: "environment not a string", body: structured(map[string]any{"environment": 5}), code: CodeInvalidEvent, field: "environment", id: "req-1"},
		{name: "bad extension name", body: structured(map[string]any{"trace_id": "x"}), code: CodeInvalidEvent, field: "trace_id", id: "req-1"},
		{name: "object extension", body: structured(map[string]any{"traceparent": map[string]any{"a": 1}}), code: CodeInvalidEvent, field: "traceparent", id: "req-1"},
		{name: "subject environment too long", subject: "deploy.request." + strings.Repeat("e", 65), body: structured(map[string]any{"environment": nil}), code: CodeInvalidEvent, field: "subject", id: "req-1"},
		{name: "wrong subject", subject: "status.query.env-001", body: structured(nil), code: CodeInvalidEvent, field: "subject", id: "req-1"},
		{name: "batch", header: nats.Header{"Content-Type": {"application/cloudevents-batch+json"}}, body: []byte(`[` + string(structured(nil)) + `]`), code: CodeInvalidEvent, field: "Content-Type"},
		{name: "too big, with id", body: structured(map[string]any{"data": data(map[string]any{"padding": big})}), code: CodeInvalidEvent, id: "req-1"},
		{name: "too big, no id", body: structured(map[string]any{"id": nil, "data": data(map[string]any{"padding": big})}), code: CodeInvalidEvent},
		{name: "datacontenttype text/plain", body: structured(map[string]any{"datacontenttype": "text/plain", "data": "app=x"}), code: CodeInvalidData, field: "datacontenttype", id: "req-1"},
		{name: "datacontenttype text/plain, object data", body: structured(map[string]any{"datacontenttype": "text/plain"}), code: CodeInvalidData, field: "datacontenttype", id: "req-1"},
		{name: "no data", body: structured(map[string]any{"data": nil}), code: CodeInvalidData, field: "data", id: "req-1"},
		{name: "data is a list", body: structured(map[string]any{"data": []any{1}}), code: CodeInvalidData, field: "data", id: "req-1"},
		{name: "data is a string", body: structured(map[string]any{"data": "{}"}), code: CodeInvalidData, field: "data", id: "req-1"},
		{name: "no app", body: structured(map[string]any{"data": data(map[string]any{"app": nil})}), code: CodeInvalidData, field: "app", id: "req-1"},
		{name: "app with slash", body: structured(map[string]any{"data": data(map[string]any{"app": "a/b"})}), code: CodeInvalidData, field: "app", id: "req-1"},
		{name: "app too long", body: structured(map[string]any{"data": data(map[string]any{"app": strings.Repeat("a", 129)})}), code: CodeInvalidData, field: "app", id: "req-1"},
		{name: "no version", body: structured(map[string]any{"data": data(map[string]any{"version": nil})}), code: CodeInvalidData, field: "version", id: "req-1"},
		{name: "version with space", body: structured(map[string]any{"data": data(map[string]any{"version": "v 1"})}), code: CodeInvalidData, field: "version", id: "req-1"},
		{name: "percent over 1", body: structured(map[string]any{"data": data(map[string]any{"deployments": []any{map[string]any{"version": "v1", "percent": 1.5}}})}), code: CodeInvalidData, field: "deployments[0].percent", id: "req-1"},
		{name: "percent missing", body: structured(map[string]any{"data": data(map[string]any{"deployments": []any{map[string]any{"version": "v1"}}})}), code: CodeInvalidData, field: "deployments[0].percent", id: "req-1"},
		{name: "percents add up over 1", body: structured(map[string]any{"data": data(map[string]any{"deployments": []any{
			map[string]any{"version": "v1", "percent": 0.6}, map[string]any{"version": "v0", "percent": 0.41}}})}), code: CodeInvalidData, field: "deployments", id: "req-1"},
		{name: "version not among deployments", body: structured(map[string]any{"data": data(map[string]any{"deployments": []any{map[string]any{"version": "v0", "percent": 1}}})}), code: CodeInvalidData, field: "version", id: "req-1"},
		{name: "rollout true", body: structured(map[string]any{"data": data(map[string]any{"rollout": true})}), code: CodeInvalidData, field: "rollout", id: "req-1"},
		{name: "rollout timeout not a duration", body: structured(map[string]any{"data": data(map[string]any{"rollout": map[string]any{"timeout": "soon"}})}), code: CodeInvalidData, field: "rollout.timeout", id: "req-1"},
		{name: "rollout timeout zero", body: structured(map[string]any{"data": data(map[string]any{"rollout": map[string]any{"timeout": "0s"}})}), code: CodeInvalidData, field: "rollout.timeout", id: "req-1"},
		{name: "rollout min_healthy 101", body: structured(map[string]any{"data": data(map[string]any{"rollout": map[string]any{"min_healthy": 101}})}), code: CodeInvalidData, field: "rollout.min_healthy", id: "req-1"},
		{name: "package not an object", body: structured(map[string]any{"data": data(map[string]any{"deployments": []any{map[string]any{"version": "v1", "percent": 1, "package": "docker"}}})}), code: CodeInvalidData, field: "deployments[0].package", id: "req-1"},

		// Binary mode.
		// An empty ce-id header still selects binary mode, and cannot identify.
		{name: "binary: empty ce-id", header: withHeader(binaryHeader(map[string]string{"Ce-Id": ""}), "ce-id", ""), body: []byte(binaryBody), code: CodeInvalidEvent, field: "id"},
		{name: "binary: no specversion", header: binaryHeader(map[string]string{"ce-specversion": ""}), body: []byte(binaryBody), code: CodeInvalidEvent, field: "specversion", id: "req-b1"},
		{name: "binary: no source", header: binaryHeader(map[string]string{"CE-SOURCE": ""}), body: []byte(binaryBody), code: CodeInvalidEvent, field: "source", id: "req-b1"},
		{name: "binary: bad time", header: binaryHeader(map[string]string{"ce-time": "soon"}), body: []byte(binaryBody), code: CodeInvalidEvent, field: "time", id: "req-b1"},
		{name: "binary: bad percent-encoding", header: binaryHeader(map[string]string{"CE-SOURCE": "/a%zz"}), body: []byte(binaryBody), code: CodeInvalidEvent, field: "source", id: "req-b1"},
		{name: "binary: environment disagrees", header: binaryHeader(map[string]string{"ce-environment": "prod"}), body: []byte(binaryBody), code: CodeInvalidEvent, field: "environment", id: "req-b1"},
		{name: "binary: wrong type", header: binaryHeader(map[string]string{"ce-type": TypeHealth}), body: []byte(binaryBody), code: CodeInvalidEvent, field: "type", id: "req-b1"},
		{name: "binary: too big", header: binaryHeader(nil), body: []byte(`{"app":"my-app","version":"v1","x":"` + big + `"}`), code: CodeInvalidEvent, id: "req-b1"},
		{name: "binary: no data", header: binaryHeader(nil), body: nil, code: CodeInvalidData, field: "data", id: "req-b1"},
		{name: "binary: data not an object", header: binaryHeader(nil), body: []byte(`"my-app"`), code: CodeInvalidData, field: "data", id: "req-b1"},
		{name: "binary: text/plain", header: binaryHeader(map[string]string{"Content-Type": "text/plain"}), body: []byte(binaryBody), code: CodeInvalidData, field: "datacontenttype", id: "req-b1"},
		{name: "binary: bad data", header: binaryHeader(nil), body: []byte(`{"app":"-x","version":"v1"}`), code: CodeInvalidData, field: "app", id: "req-b1"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subject := tt.subject
			if subject == "" {
				subject = testSubject
			}
			env, req, err := DecodeDeployRequest(subject, tt.header, tt.body)
			if err == nil {
				t.Fatalf("accepted: %+v", req)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, not *Error", err, err)
			}
			if e.Code != tt.code || e.Field != tt.field {
				t.Errorf("code %q field %q, want %q %q (%v)", e.Code, e.Field, tt.code, tt.field, err)
			}
			if env.ID != tt.id {
				t.Errorf("Envelope.ID %q, want %q", env.ID, tt.id)
			}
			if got := errors.Is(err, ErrUnidentifiable); got != (tt.id == "") {
				t.Errorf("errors.Is(err, ErrUnidentifiable) = %v for ID %q (%v)", got, env.ID, err)
			}
			if tt.field != "" && !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
			if !errors.Is(err, ErrUnidentifiable) && env.Environment != lastToken(subject) {
				t.Errorf("Envelope.Environment %q, want the subject's", env.Environment)
			}
		})
	}
}

func TestDecodeKeepsIdentityOfInvalidRequests(t *testing.T) {
	// What the bridge needs to answer an invalid request: its id, type,
	// and traceparent, even when the rest is wrong.
	env, _, err := DecodeDeployRequest(testSubject, nil, structured(map[string]any{"time": "later", "subject": "my-app"}))
	if CodeOf(err) != CodeInvalidEvent {
		t.Fatalf("error %v", err)
	}
	want := Envelope{ID: "req-1", Environment: "env-001", Type: TypeDeployRequest, Source: "/master-service/test",
		Subject: "my-app", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Mode: ModeStructured}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
}

func TestDecodeStatusQuery(t *testing.T) {
	msg, id, err := NewStatusQuery(SourceFor("test"), "env-001", "my-app")
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{msg.Subject, StatusEndpointSubject("env-001")} {
		env, q, err := DecodeStatusQuery(subject, msg.Header, msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		if env.ID != id || q.App != "my-app" || env.Environment != "env-001" {
			t.Errorf("%s: envelope %+v query %+v", subject, env, q)
		}
	}
	_, _, err = DecodeStatusQuery("status.query.env-001", msg.Header, []byte(strings.Replace(string(msg.Data), `"app":"my-app"`, `"app":"my app"`, 1)))
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeInvalidData || e.Field != "app" {
		t.Errorf("bad app: %v", err)
	}
}

func TestDecodeStatusQueryOrData(t *testing.T) {
	subject := StatusEndpointSubject("env-001")
	env, q, err := DecodeStatusQueryOrData(subject, nil, []byte(`{"app":"my-app","extra":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Envelope{Environment: "env-001", Type: TypeStatusQuery, Mode: ModeData}, env); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
	if q.App != "my-app" {
		t.Errorf("app %q", q.App)
	}
	_, _, err = DecodeStatusQueryOrData(subject, nil, []byte(`{"app":""}`))
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeInvalidData || e.Field != "app" || errors.Is(err, ErrUnidentifiable) {
		t.Errorf("bad bare query: %v", err)
	}
	_, _, err = DecodeStatusQueryOrData(subject, nil, []byte(`not json`))
	if CodeOf(err) != CodeInvalidData {
		t.Errorf("not JSON: %v", err)
	}

	msg, id, err := NewStatusQuery(SourceFor("test"), "env-001", "other-app")
	if err != nil {
		t.Fatal(err)
	}
	env, q, err = DecodeStatusQueryOrData(subject, msg.Header, msg.Data)
	if err != nil || env.ID != id || env.Mode != ModeStructured || q.App != "other-app" {
		t.Errorf("event: %+v %+v %v", env, q, err)
	}
	// A CloudEvent without Content-Type is still an event, not data.
	env, _, err = DecodeStatusQueryOrData(subject, nil, msg.Data)
	if err != nil || env.ID != id {
		t.Errorf("event without Content-Type: %+v %v", env, err)
	}
}

func TestEnvironmentFromSubject(t *testing.T) {
	tests := []struct {
		subject, env string
		ok           bool
	}{
		{"deploy.request.env-001", "env-001", true},
		{"operator.health.A_b-9", "A_b-9", true},
		{"deploy.request." + strings.Repeat("e", 64), strings.Repeat("e", 64), true},
		{"deploy.request." + strings.Repeat("e", 65), "", false},
		{"deploy.request.", "", false},
		{"deploy.request.é", "", false},
		{"deploy.request.*", "", false},
		{"nodots", "", false},
	}
	for _, tt := range tests {
		env, err := EnvironmentFromSubject(tt.subject)
		if env != tt.env || (err == nil) != tt.ok {
			t.Errorf("EnvironmentFromSubject(%q) = %q, %v", tt.subject, env, err)
		}
	}
	for _, id := range []string{"a", "env-001", "E_1"} {
		if !ValidEnvironmentID(id) {
			t.Errorf("ValidEnvironmentID(%q) = false", id)
		}
	}
	for _, id := range []string{"", "a.b", "a b", "a>", "ä"} {
		if ValidEnvironmentID(id) {
			t.Errorf("ValidEnvironmentID(%q) = true", id)
		}
	}
}

func TestSubjects(t *testing.T) {
	got := []string{DeployRequestSubject("e"), DeployResultSubject("e"), StatusQuerySubject("e"), StatusResultSubject("e"),
		HealthSubject("e"), DeadLetterSubject("deploy.request.e"), StatusEndpointSubject("e")}
	want := []string{"deploy.request.e", "deploy.result.e", "status.query.e", "status.result.e",
		"operator.health.e", "deadletter.deploy.request.e", "operator-bridge.status.e"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}

// TestDecodeErrorIsStable sends messages with several faults many times:
// each gets the same answer every time, naming the first fault in
// attribute name order.
func TestDecodeErrorIsStable(t *testing.T) {
	tests := []struct {
		name      string
		h         nats.Header
		body      []byte
		wantField string
	}{
		{"structured, two bad extensions", nil, structured(map[string]any{"Bad": "x", "obj": map[string]any{}}), "Bad"},
		{"binary, bad time and bad extension name", binaryHeader(map[string]string{"ce-time": "yesterday", "ce-x_y": "1", "ce-a_b": "2"}), []byte(binaryBody), "a_b"},
		{"binary, bad time and bad percent-encoding", binaryHeader(map[string]string{"ce-time": "yesterday", "ce-zz": "%zz", "ce-b": "%"}), []byte(binaryBody), "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, first := DecodeDeployRequest(testSubject, tt.h, tt.body)
			e, ok := errors.AsType[*Error](first)
			if !ok || e.Field != tt.wantField {
				t.Fatalf("error %v, want one on %s", first, tt.wantField)
			}
			for range 20 {
				if _, _, err := DecodeDeployRequest(testSubject, tt.h, tt.body); err.Error() != first.Error() {
					t.Fatalf("error %v, then %v", first, err)
				}
			}
		})
	}
}
