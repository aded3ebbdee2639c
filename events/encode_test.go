package events

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

var testTime = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// testEncoder makes deterministic events: a fixed clock and ids id-1, id-2...
func testEncoder() encoder {
	n := 0
	return encoder{
		now:   func() time.Time { return testTime },
		newID: func() string { n++; return fmt.Sprintf("id-%d", n) },
	}
}

var testRequest = Envelope{
	ID: "req-1", Environment: "env-001", Type: TypeDeployRequest, Source: "/master-service/test",
	TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Mode: ModeStructured,
}

func TestGolden(t *testing.T) {
	source := SourceFor("bridge-1")
	tests := []struct {
		name string
		make func(enc encoder) (*nats.Msg, error)
	}{
		{"deploy.result.succeeded", func(enc encoder) (*nats.Msg, error) {
			return enc.deployResult(source, testRequest, 42, DeployResult{
				App: "my-app", Version: "v1.2.3", Operator: "kubernetes", Outcome: Succeeded, Success: true,
				Message: "applied", Attempts: 1, DurationMS: 12,
			})
		}},
		{"deploy.result.rejected", func(enc encoder) (*nats.Msg, error) {
			req := testRequest
			req.TraceParent = ""
			return enc.deployResult(source, req, 43, DeployResult{
				Outcome: Rejected, Message: "invalid data",
				Error: (&Error{Code: CodeInvalidData, Field: "app", Message: "missing property 'app'"}).Info(),
			})
		}},
		{"status.result.reply", func(enc encoder) (*nats.Msg, error) {
			return enc.statusResult(source, Envelope{Environment: "env-001", Mode: ModeData}, 0, StatusResult{
				App: "my-app", Operator: "physical", Degraded: true, Status: AppStatus{App: "my-app"},
				Error: &ErrorInfo{Code: CodeOperatorTimeout, Message: "no answer within 10s", Retryable: true},
			})
		}},
		{"status.result.stored", func(enc encoder) (*nats.Msg, error) {
			req := testRequest
			req.Type = TypeStatusQuery
			return enc.statusResult(source, req, 7, StatusResult{
				App: "my-app", Operator: "kubernetes",
				Status: AppStatus{App: "my-app", Healthy: AppHealth{Level: 100}, Versions: []VersionStatus{
					{Version: "v1.2.3", Percent: 1, Healthy: AppHealth{Level: 100}},
				}},
			})
		}},
		{"operator.health", func(enc encoder) (*nats.Msg, error) {
			return enc.health(source, Health{
				Environment: "env-001", Operator: "kubernetes", Endpoint: "http://k8s-operator:8081",
				Healthy: true, LatencyMS: 3, CheckedAt: testTime, Changed: true,
			})
		}},
		{"deploy.request", func(enc encoder) (*nats.Msg, error) {
			m, _, err := enc.deployRequest("/master-service/test", "env-001", DeployRequest{
				App: "my-app", Version: "v1.2.3", Deployments: []Deployment{
					{Version: "v1.2.3", Percent: 0.2, Package: json.RawMessage(`{"type":"docker","image":"registry.local/my-app:v1.2.3"}`)},
					{Version: "v1.2.2", Percent: 0.8},
				},
			}, WithID("req-1"), WithTraceParent(testRequest.TraceParent))
			return m, err
		}},
		{"deploy.progress.progressing", func(enc encoder) (*nats.Msg, error) {
			return enc.deployProgress(source, testRequest, 42, 1, DeployProgress{
				App: "my-app", Target: []Target{{Version: "v1.2.3", Percent: 0.2}, {Version: "v1.2.2", Percent: 0.8}},
				Observed: AppStatus{App: "my-app", Healthy: AppHealth{Level: 100}, Versions: []VersionStatus{
					{Version: "v1.2.3", Percent: 0.1, Healthy: AppHealth{Level: 100}, Nodes: []NodeStatus{{Node: "node-1", Healthy: AppHealth{Level: 100}}}},
					{Version: "v1.2.2", Percent: 0.9, Healthy: AppHealth{Level: 100}},
				}},
				Phase: PhaseProgressing, Message: "v1.2.3 at 10% of 20%", ElapsedMS: 5000,
			})
		}},
		{"deploy.progress.converged", func(enc encoder) (*nats.Msg, error) {
			req := testRequest
			req.TraceParent = ""
			return enc.deployProgress(source, req, 42, 2, DeployProgress{
				App: "my-app", Target: []Target{{Version: "v1.2.3", Percent: 1}},
				Observed: AppStatus{App: "my-app", Healthy: AppHealth{Level: 100}, Versions: []VersionStatus{
					{Version: "v1.2.3", Percent: 1, Healthy: AppHealth{Level: 100}},
				}},
				Phase: PhaseConverged, Message: "converged", ElapsedMS: 9000,
			})
		}},
		{"deploy.request.rollout", func(enc encoder) (*nats.Msg, error) {
			m, _, err := enc.deployRequest("/master-service/test", "env-001", DeployRequest{
				App: "my-app", Version: "v1.2.3", Rollout: &Rollout{Timeout: 5 * time.Minute, MinHealthy: ptr(80)},
			}, WithID("req-2"))
			return m, err
		}},
		{"status.query", func(enc encoder) (*nats.Msg, error) {
			m, _, err := enc.statusQuery("/master-service/test", "env-001", "my-app")
			return m, err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := tt.make(testEncoder())
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, msg.Data, "", "  "); err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("subject: %s\nContent-Type: %s\nNats-Msg-Id: %s\n\n%s\n",
				msg.Subject, msg.Header.Get(HeaderContentType), msg.Header.Get(HeaderMsgID), pretty.Bytes())
			file := filepath.Join("testdata", "golden", tt.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s differs (-golden +got); run go test -update if intended:\n%s", file, diff)
			}
			// What we publish, we can read back: a valid event whose data
			// matches its schema.
			e, err := Decode(msg.Header, msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			switch e.Type() {
			case TypeDeployResult:
				_, _, err = DecodeDeployResult(msg.Header, msg.Data)
			case TypeStatusResult:
				_, _, err = DecodeStatusResult(msg.Header, msg.Data)
			case TypeHealth:
				_, _, err = DecodeHealth(msg.Header, msg.Data)
			case TypeDeployRequest:
				_, _, err = DecodeDeployRequest(msg.Subject, msg.Header, msg.Data)
			case TypeStatusQuery:
				_, _, err = DecodeStatusQuery(msg.Subject, msg.Header, msg.Data)
			case TypeDeployProgress:
				_, _, err = DecodeDeployProgress(msg.Header, msg.Data)
			}
			if err != nil {
				t.Errorf("published event does not decode: %v", err)
			}
		})
	}
}

func TestResultAttributes(t *testing.T) {
	msg, err := NewDeployResult(SourceFor("bridge-1"), testRequest, 42, DeployResult{
		App: "my-app", Version: "v1", Operator: "mock", Outcome: Succeeded, Success: true, Attempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	e, r, err := DecodeDeployResult(msg.Header, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"subject":          DeployResultSubject("env-001"),
		"Content-Type":     ContentTypeStructured,
		"Nats-Msg-Id":      ResultID("req-1", 42),
		"id":               ResultID("req-1", 42),
		"specversion":      "1.0",
		"source":           "/operator-bridge/bridge-1",
		"type":             TypeDeployResult,
		"ce subject":       "my-app",
		"datacontenttype":  "application/json",
		"ext environment":  "env-001",
		"ext requestid":    "req-1",
		"ext traceparent":  testRequest.TraceParent,
		"data request_id":  "req-1",
		"data environment": "env-001",
	}
	ext := e.Extensions()
	got := map[string]string{
		"subject":          msg.Subject,
		"Content-Type":     msg.Header.Get("Content-Type"),
		"Nats-Msg-Id":      msg.Header.Get("Nats-Msg-Id"),
		"id":               e.ID(),
		"specversion":      e.SpecVersion(),
		"source":           e.Source(),
		"type":             e.Type(),
		"ce subject":       e.Subject(),
		"datacontenttype":  e.DataContentType(),
		"ext environment":  fmt.Sprint(ext["environment"]),
		"ext requestid":    fmt.Sprint(ext["requestid"]),
		"ext traceparent":  fmt.Sprint(ext["traceparent"]),
		"data request_id":  r.RequestID,
		"data environment": r.Environment,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if e.Time().IsZero() || time.Since(e.Time()) > time.Minute {
		t.Errorf("time %v is not now", e.Time())
	}

	h, err := NewHealth(SourceFor("bridge-1"), Health{Environment: "env-9", Operator: "mock", Endpoint: "mock", Healthy: true})
	if err != nil {
		t.Fatal(err)
	}
	e, health, err := DecodeHealth(h.Header, h.Data)
	if err != nil {
		t.Fatal(err)
	}
	if h.Subject != "operator.health.env-9" || e.Subject() != "env-9" || e.Extensions()["environment"] != "env-9" ||
		h.Header.Get(HeaderMsgID) != e.ID() || health.CheckedAt.IsZero() {
		t.Errorf("health event: subject %s, %v, data %+v", h.Subject, e, health)
	}
}

func TestEncodeRefusesBadEnvironment(t *testing.T) {
	if _, _, err := NewDeployRequest(SourceFor("x"), "a.b", DeployRequest{App: "a", Version: "1"}); err == nil {
		t.Error("NewDeployRequest accepted environment a.b")
	}
	if _, err := NewHealth(SourceFor("x"), Health{Environment: ""}); err == nil {
		t.Error("NewHealth accepted an empty environment")
	}
	if _, err := NewDeployResult(SourceFor("x"), Envelope{Environment: "e"}, 1, DeployResult{}); err == nil {
		t.Error("NewDeployResult accepted a request without id")
	}
	if _, _, err := NewStatusQuery("", "e", "a"); err == nil {
		t.Error("NewStatusQuery accepted an empty source")
	}
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[45][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestResultID(t *testing.T) {
	a := ResultID("req-1", 5)
	if a != ResultID("req-1", 5) {
		t.Error("ResultID is not deterministic")
	}
	seen := map[string]bool{a: true}
	for _, other := range []string{ResultID("req-1", 6), ResultID("req-2", 5), ResultID("req-15", 0), ResultID("req-1", 0), ResultID("req-1", 0)} {
		if seen[other] {
			t.Errorf("ResultID gave %s twice for different inputs", other)
		}
		seen[other] = true
	}
	for id := range seen {
		if !uuidPattern.MatchString(id) {
			t.Errorf("%q is not a UUID", id)
		}
	}
	// A request whose id is its own result id still gets a different one.
	if ResultID(a, 5) == a || ResultID(ResultID("x", 1), 1) == ResultID("x", 1) {
		t.Error("ResultID equals the request id")
	}
}

func TestStreamConfigs(t *testing.T) {
	type stream struct {
		Subjects    []string
		MaxAge, Dup time.Duration
		PerSubject  int64
		Storage     jetstream.StorageType
		Retention   jetstream.RetentionPolicy
	}
	got := map[string]stream{}
	for _, c := range StreamConfigs() {
		got[c.Name] = stream{c.Subjects, c.MaxAge, c.Duplicates, c.MaxMsgsPerSubject, c.Storage, c.Retention}
	}
	const day = 24 * time.Hour
	want := map[string]stream{
		"DEPLOY":     {[]string{"deploy.>"}, 7 * day, 2 * time.Minute, 0, jetstream.FileStorage, jetstream.LimitsPolicy},
		"STATUS":     {[]string{"status.>"}, day, 2 * time.Minute, 0, jetstream.FileStorage, jetstream.LimitsPolicy},
		"HEALTH":     {[]string{"operator.health.>"}, 0, 0, 100, jetstream.FileStorage, jetstream.LimitsPolicy},
		"DEADLETTER": {[]string{"deadletter.>"}, 30 * day, 0, 0, jetstream.FileStorage, jetstream.LimitsPolicy},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// toBinary rewrites a structured-mode message in binary mode, the way the
// CloudEvents HTTP binding would: percent-encoded ce- headers with names
// in mixed case, Content-Type for datacontenttype, the data as body.
func toBinary(t *testing.T, msg *nats.Msg) *nats.Msg {
	t.Helper()
	var e event.Event
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		t.Fatal(err)
	}
	h := nats.Header{
		"CE-SpecVersion": {e.SpecVersion()},
		"ce-id":          {url.PathEscape(e.ID())},
		"Ce-Source":      {url.PathEscape(e.Source())},
		"ce-type":        {e.Type()},
		"ce-time":        {e.Time().Format(time.RFC3339Nano)},
		"Content-Type":   {e.DataContentType()},
	}
	if s := e.Subject(); s != "" {
		h["ce-subject"] = []string{url.PathEscape(s)}
	}
	for name, v := range e.Extensions() {
		h["ce-"+name] = []string{url.PathEscape(fmt.Sprint(v))}
	}
	return &nats.Msg{Subject: msg.Subject, Header: h, Data: e.Data()}
}

func TestRoundTrip(t *testing.T) {
	req := DeployRequest{App: "my-app", Version: "v2-é", Deployments: []Deployment{
		{Version: "v2-é", Percent: 0.25, Package: json.RawMessage(`{"chart":"x"}`)},
		{Version: "v1", Percent: 0.75},
	}}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	msg, id, err := NewDeployRequest("/master-service/test", "env-001", req,
		WithID("id with spaces/é"), WithTime(at), WithTraceParent("00-abc-def-01"))
	if err != nil {
		t.Fatal(err)
	}
	want := Envelope{ID: "id with spaces/é", Environment: "env-001", Type: TypeDeployRequest, Source: "/master-service/test",
		Subject: "my-app", Time: at, TraceParent: "00-abc-def-01"}
	for _, mode := range []string{ModeStructured, ModeBinary} {
		t.Run(mode, func(t *testing.T) {
			m := msg
			if mode == ModeBinary {
				m = toBinary(t, msg)
			}
			env, got, err := DecodeDeployRequest(m.Subject, m.Header, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			w := want
			w.Mode = mode
			if diff := cmp.Diff(w, env); diff != "" || env.ID != id {
				t.Errorf("envelope (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(req, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}

			// The result of the decoded request carries its identity.
			res, err := NewDeployResult(SourceFor("b"), env, 9, DeployResult{App: got.App, Version: got.Version,
				Operator: "mock", Outcome: Succeeded, Success: true})
			if err != nil {
				t.Fatal(err)
			}
			e, r, err := DecodeDeployResult(res.Header, res.Data)
			if err != nil {
				t.Fatal(err)
			}
			if e.Extensions()[ExtRequestID] != id || r.RequestID != id || e.Extensions()[ExtTraceParent] != "00-abc-def-01" || e.ID() == id {
				t.Errorf("result %v does not answer request %q", e, id)
			}
		})
	}
}
