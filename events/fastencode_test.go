package events

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

// sameEvent fails t unless got and want are the same message: subject,
// headers and body byte for byte, so sdk-go decodes both to the same
// CloudEvent (which it checks too).
func sameEvent(t *testing.T, want, got *nats.Msg) {
	t.Helper()
	if diff := cmp.Diff(want.Subject, got.Subject); diff != "" {
		t.Errorf("subject (-sdk +fast):\n%s", diff)
	}
	if diff := cmp.Diff(want.Header, got.Header); diff != "" {
		t.Errorf("header (-sdk +fast):\n%s", diff)
	}
	if !bytes.Equal(want.Data, got.Data) {
		t.Errorf("body differs:\nsdk:  %s\nfast: %s", want.Data, got.Data)
	}
	var we, ge event.Event
	if err := we.UnmarshalJSON(want.Data); err != nil {
		t.Fatalf("sdk-go cannot read what it wrote: %v", err)
	}
	if err := ge.UnmarshalJSON(got.Data); err != nil {
		t.Fatalf("sdk-go cannot read the fast path's event: %v", err)
	}
	if diff := cmp.Diff(we.String(), ge.String()); diff != "" {
		t.Errorf("decoded event (-sdk +fast):\n%s", diff)
	}
	if diff := cmp.Diff(we.Extensions(), ge.Extensions()); diff != "" {
		t.Errorf("decoded extensions (-sdk +fast):\n%s", diff)
	}
	if !bytes.Equal(we.Data(), ge.Data()) {
		t.Errorf("decoded data differs:\nsdk:  %s\nfast: %s", we.Data(), ge.Data())
	}
}

// TestAppendEvent makes every kind of event the package makes, with
// common and odd attribute values, both with appendEvent and with sdk-go,
// and wants the same message from both.
func TestAppendEvent(t *testing.T) {
	source := SourceFor("bridge-1")
	odd := Envelope{ID: "req\t\"1\"\x01\u2028é\xff", Environment: "env-001", TraceParent: `<a&b>\`}
	tests := []struct {
		name string
		make func(enc encoder) (*nats.Msg, error)
	}{
		{"deploy.result", func(enc encoder) (*nats.Msg, error) {
			return enc.deployResult(source, testRequest, 42, DeployResult{App: "my-app", Version: "v1.2.3",
				Operator: "kubernetes", Outcome: Succeeded, Success: true, Message: "applied <&> \u2028", Attempts: 1, DurationMS: 12})
		}},
		{"deploy.result/rejected", func(enc encoder) (*nats.Msg, error) {
			req := testRequest
			req.TraceParent = ""
			return enc.deployResult(source, req, 43, DeployResult{Outcome: Rejected, Message: "invalid data",
				Error: (&Error{Code: CodeInvalidData, Field: "app", Message: "required"}).Info()})
		}},
		{"deploy.result/odd attributes", func(enc encoder) (*nats.Msg, error) {
			return enc.deployResult(`https://ci.example.com/x?y=1`, odd, 44, DeployResult{App: "a\nb", Outcome: Failed})
		}},
		{"deploy.result/blank app", func(enc encoder) (*nats.Msg, error) {
			return enc.deployResult(source, testRequest, 45, DeployResult{App: " my-app ", Outcome: Failed})
		}},
		{"deploy.result/id with spaces", func(enc encoder) (*nats.Msg, error) {
			req := testRequest
			req.ID = " req-1"
			return enc.deployResult(source, req, 0, DeployResult{App: "my-app", Outcome: Failed})
		}},
		{"deploy.result/source rewritten", func(enc encoder) (*nats.Msg, error) {
			return enc.deployResult("/a b/c%41", testRequest, 46, DeployResult{App: "my-app", Outcome: Failed})
		}},
		{"deploy.result/bad source", func(enc encoder) (*nats.Msg, error) {
			return enc.deployResult("%zz", testRequest, 46, DeployResult{App: "my-app", Outcome: Failed})
		}},
		{"status.result/reply", func(enc encoder) (*nats.Msg, error) {
			return enc.statusResult(source, Envelope{Environment: "env-001", Mode: ModeData}, 0, StatusResult{
				App: "my-app", Operator: "physical", Degraded: true, Status: AppStatus{App: "my-app"},
				Error: &ErrorInfo{Code: CodeOperatorTimeout, Message: "no answer within 10s", Retryable: true}})
		}},
		{"status.result/stored", func(enc encoder) (*nats.Msg, error) {
			return enc.statusResult(source, testRequest, 7, StatusResult{App: "my-app", Operator: "kubernetes",
				Status: AppStatus{App: "my-app", Healthy: AppHealth{Level: 100}, Versions: []VersionStatus{
					{Version: "v1.2.3", Percent: 1e-7, Healthy: AppHealth{Level: 100}}, {Version: "v1.2.2", Percent: 0.9999999}}}})
		}},
		{"status.result/NaN", func(enc encoder) (*nats.Msg, error) {
			return enc.statusResult(source, testRequest, 8, StatusResult{App: "my-app",
				Status: AppStatus{Versions: []VersionStatus{{Version: "v1", Percent: math.NaN()}}}})
		}},
		{"operator.health", func(enc encoder) (*nats.Msg, error) {
			return enc.health(source, Health{Environment: "env-001", Operator: "kubernetes", Endpoint: "http://k8s:8081",
				Healthy: true, LatencyMS: 3, CheckedAt: time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.FixedZone("x", 3600)), Circuit: "closed"})
		}},
		{"operator.health/zero time", func(enc encoder) (*nats.Msg, error) {
			enc.now = func() time.Time { return time.Time{} }
			return enc.health(source, Health{Environment: "env-001", Error: "dial tcp: refused"})
		}},
		{"operator.health/bad environment", func(enc encoder) (*nats.Msg, error) {
			return enc.health(source, Health{Environment: "env 1"})
		}},
		{"deploy.request", func(enc encoder) (*nats.Msg, error) {
			m, _, err := enc.deployRequest("/master-service/test", "env-001", DeployRequest{App: "my-app", Version: "v1.2.3",
				Deployments: []Deployment{{Version: "v1.2.3", Percent: 0.2, Package: json.RawMessage(`{"type": "docker"}`)}, {Version: "v1.2.2", Percent: 0.8}},
				Rollout:     &Rollout{Timeout: 5 * time.Minute, MinHealthy: ptr(80)}}, WithID("req-1"), WithTraceParent(testRequest.TraceParent))
			return m, err
		}},
		{"deploy.request/rollout off, local time", func(enc encoder) (*nats.Msg, error) {
			m, _, err := enc.deployRequest("urn:boreas:ci", "env-001", DeployRequest{App: "my-app", Version: "v1", Rollout: &Rollout{Off: true}},
				WithTime(time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("", -7200))))
			return m, err
		}},
		{"deploy.request/empty source", func(enc encoder) (*nats.Msg, error) {
			m, _, err := enc.deployRequest("", "env-001", DeployRequest{App: "my-app", Version: "v1"})
			return m, err
		}},
		{"status.query", func(enc encoder) (*nats.Msg, error) {
			m, _, err := enc.statusQuery("/master-service/test", "env-001", "my-app", WithID("q-1"))
			return m, err
		}},
		{"deploy.progress", func(enc encoder) (*nats.Msg, error) {
			return enc.deployProgress(source, testRequest, 42, 1, DeployProgress{App: "my-app",
				Target: []Target{{Version: "v1.2.3", Percent: 0.2}, {Version: "v1.2.2", Percent: 0.8}},
				Observed: AppStatus{App: "my-app", Healthy: AppHealth{Level: 100}, Versions: []VersionStatus{
					{Version: "v1.2.3", Percent: 0.1, Healthy: AppHealth{Level: 100}, Nodes: []NodeStatus{{Node: "node-1", Healthy: AppHealth{Level: 100}}}}}},
				Phase: PhaseProgressing, Message: "v1.2.3 at 10% of 20%", ElapsedMS: 5000})
		}},
		{"deploy.progress/final", func(enc encoder) (*nats.Msg, error) {
			req := testRequest
			req.TraceParent = ""
			return enc.deployProgress(source, req, 42, 2, DeployProgress{App: "my-app", Phase: PhaseConverged, Message: "converged"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := testEncoder()
			ref.sdkOnly = true
			want, wantErr := tt.make(ref)
			got, err := tt.make(testEncoder())
			if wantErr != nil || err != nil {
				if err == nil || wantErr == nil || err.Error() != wantErr.Error() {
					t.Fatalf("error %v, want %v", err, wantErr)
				}
				return
			}
			sameEvent(t, want, got)
		})
	}
}

// TestAppendEventTakesEveryKind wants appendEvent, not its fallback, to
// write the common event of every kind.
func TestAppendEventTakesEveryKind(t *testing.T) {
	ext := extensions{environment: "env-001", requestID: "req-1", traceParent: testRequest.TraceParent}
	for typ, data := range map[string]any{
		TypeDeployResult:   DeployResult{App: "my-app", Outcome: Succeeded},
		TypeStatusResult:   StatusResult{App: "my-app", Status: AppStatus{Versions: []VersionStatus{}}},
		TypeHealth:         Health{Environment: "env-001", CheckedAt: testTime},
		TypeDeployProgress: DeployProgress{App: "my-app", Target: []Target{}, Phase: PhaseProgressing},
		TypeDeployRequest:  DeployRequest{App: "my-app", Version: "v1"},
		TypeStatusQuery:    StatusQuery{App: "my-app"},
	} {
		got, ok := appendEvent(nil, typ, SourceFor("bridge-1"), "id-1", testTime, "my-app", ext, data)
		if !ok {
			t.Errorf("%s: left to sdk-go", typ)
			continue
		}
		want, err := sdkEvent(typ, SourceFor("bridge-1"), "id-1", testTime, "my-app", ext, data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\nsdk:  %s\nfast: %s", typ, want, got)
		}
	}
}

// FuzzAppendEvent holds appendEvent to sdk-go for any attribute values:
// it writes the same bytes, or leaves the event to sdk-go.
func FuzzAppendEvent(f *testing.F) {
	f.Add("/operator-bridge/bridge-1", "req-1", "my-app", "env-001", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", int64(0))
	f.Add("https://ci.example.com/x?y=1#z", " id", "a\tb", "", "\x00\"\\\u2028\xff", int64(-1))
	f.Add("/a b", "id", " ", "e", "t", int64(1e18))
	f.Fuzz(func(t *testing.T, source, id, subject, requestID, traceParent string, nanos int64) {
		ext := extensions{environment: "env-001", requestID: requestID, traceParent: traceParent}
		tm := time.Unix(0, nanos).In(time.FixedZone("", int(nanos%86400)))
		data := DeployResult{RequestID: requestID, App: subject, Message: traceParent}
		got, ok := appendEvent(nil, TypeDeployResult, source, id, tm, subject, ext, data)
		want, err := sdkEvent(TypeDeployResult, source, id, tm, subject, ext, data)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("appendEvent wrote what sdk-go refuses (%v): %s", err, got)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("body differs:\nsdk:  %s\nfast: %s", want, got)
		}
	})
}

// TestAppendEventBytes puts every byte, and some characters, into each
// string attribute: appendEvent writes what sdk-go writes, or leaves the
// event to it.
func TestAppendEventBytes(t *testing.T) {
	chars := []string{"é", "\u00a0", "\u2028", "\u2029", "\ufeff", "\U0001F600", "\xed\xa0\x80", "<&>"}
	for c := range 256 {
		chars = append(chars, string([]byte{byte(c)}))
	}
	taken := 0
	for _, c := range chars {
		for _, v := range []struct{ source, id, subject, traceParent string }{
			{"/s" + c, "id", "app", "tp"},
			{"/s", "id" + c, "app", "tp"},
			{"/s", c, "app", "tp"},
			{"/s", "id", "app" + c, "tp"},
			{"/s", "id", c, "tp"},
			{"/s", "id", "app", "tp" + c},
		} {
			ext := extensions{environment: "env-001", requestID: v.id, traceParent: v.traceParent}
			data := DeployResult{App: v.subject, Message: c}
			got, ok := appendEvent(nil, TypeDeployResult, v.source, v.id, testTime, v.subject, ext, data)
			want, err := sdkEvent(TypeDeployResult, v.source, v.id, testTime, v.subject, ext, data)
			if !ok {
				continue
			}
			taken++
			if err != nil {
				t.Fatalf("appendEvent wrote what sdk-go refuses (%v): %s", err, got)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%+v:\nsdk:  %s\nfast: %s", v, want, got)
			}
		}
	}
	if taken < len(chars)*4 {
		t.Errorf("appendEvent took %d of %d events", taken, len(chars)*6)
	}
}
