package bridge_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

func TestDeploySucceedsOnEachOperatorKind(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	for _, tc := range []struct {
		env, operator string
		applied       func(app string) []string
	}{
		{"env-k8s", "kubernetes", w.k8s.Applied},
		{"env-pm", "physical", w.pm.Applied},
		{"env-mock", "mock", nil},
	} {
		t.Run(tc.env, func(t *testing.T) {
			req := events.DeployRequest{App: "shop", Version: "v2", Deployments: []events.Deployment{
				{Version: "v2", Percent: 0.2, Package: []byte(`{"type":"docker","image":"r/shop:v2"}`)},
				{Version: "v1", Percent: 0.8},
			}}
			id := w.deploy(tc.env, req)
			got := w.result(id)
			want := events.DeployResult{RequestID: id, Environment: tc.env, App: "shop", Version: "v2",
				Operator: tc.operator, Outcome: events.Succeeded, Success: true, Attempts: 1}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(events.DeployResult{}, "Message", "DurationMS")); diff != "" {
				t.Fatalf("result (-want +got):\n%s", diff)
			}
			if tc.applied != nil {
				if diff := cmp.Diff([]string{"v2"}, tc.applied("shop")); diff != "" {
					t.Fatalf("operator applied (-want +got):\n%s", diff)
				}
			}
		})
	}
	// The Kubernetes fake saw the deployments and the package unchanged.
	var body string
	for _, r := range w.k8s.Requests() {
		if r.Path == "/api/apply" {
			body = string(r.Body)
		}
	}
	if !strings.Contains(body, `"image":"r/shop:v2"`) || !strings.Contains(body, `"percent":0.8`) {
		t.Fatalf("apply body = %s", body)
	}
}

func TestDeployWithoutDeploymentsSendsFullVersion(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	id := w.deploy("env-pm", events.DeployRequest{App: "api", Version: "v9"})
	if r := w.result(id); r.Outcome != events.Succeeded {
		t.Fatalf("outcome %s: %s", r.Outcome, r.Message)
	}
	st, ok := w.pm.Status("api")
	if !ok || len(st.Versions) != 1 || st.Versions[0].Version != "v9" || st.Versions[0].Percent != 1 {
		t.Fatalf("pm status = %+v", st)
	}
}

func TestRejections(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	good := events.DeployRequest{App: "shop", Version: "v1"}
	type tc struct {
		name string
		msg  func() (*nats.Msg, string)
		code events.ErrorCode
	}
	build := func(env string, req events.DeployRequest, opts ...events.EventOption) func() (*nats.Msg, string) {
		return func() (*nats.Msg, string) {
			m, id, err := events.NewDeployRequest("/test", env, req, opts...)
			if err != nil {
				t.Fatal(err)
			}
			return m, id
		}
	}
	raw := func(env, body string) func() (*nats.Msg, string) {
		return func() (*nats.Msg, string) {
			id := events.NewEventID()
			return &nats.Msg{Subject: events.DeployRequestSubject(env), Data: []byte(strings.ReplaceAll(body, "ID", id))}, id
		}
	}
	cases := []tc{
		{"unknown environment", build("env-nowhere", good), events.CodeUnknownEnvironment},
		{"inactive environment", build("env-off", good), events.CodeEnvironmentInactive},
		{"invalid app", build("env-k8s", events.DeployRequest{App: "-bad", Version: "v1"}), events.CodeInvalidData},
		{"percents over one", build("env-k8s", events.DeployRequest{App: "a", Version: "v1", Deployments: []events.Deployment{{Version: "v1", Percent: 0.7}, {Version: "v0", Percent: 0.7}}}), events.CodeInvalidData},
		{"time far ahead", build("env-k8s", good, events.WithTime(time.Now().Add(5*time.Minute))), events.CodeInvalidEvent},
		{"wrong type", raw("env-k8s", `{"specversion":"1.0","id":"ID","source":"/x","type":"io.boreas.status.query.v1","datacontenttype":"application/json","data":{"app":"a"}}`), events.CodeInvalidEvent},
		{"environment extension disagrees", raw("env-k8s", `{"specversion":"1.0","id":"ID","source":"/x","type":"io.boreas.deploy.request.v1","environment":"env-pm","data":{"app":"a","version":"v1"}}`), events.CodeInvalidEvent},
		{"data not an object", raw("env-k8s", `{"specversion":"1.0","id":"ID","source":"/x","type":"io.boreas.deploy.request.v1","data":[1]}`), events.CodeInvalidData},
		{"bad specversion", raw("env-k8s", `{"specversion":"0.3","id":"ID","source":"/x","type":"io.boreas.deploy.request.v1","data":{"app":"a","version":"v1"}}`), events.CodeInvalidEvent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, id := c.msg()
			w.publish(m)
			r := w.result(id)
			if r.Outcome != events.Rejected || r.Error == nil || r.Error.Code != c.code || r.Error.Retryable {
				t.Fatalf("result = %+v (error %+v), want rejected %s", r, r.Error, c.code)
			}
			if r.Error.Message == "" {
				t.Fatal("rejection without a message")
			}
		})
	}
	if n := len(w.k8s.Applied("shop")) + len(w.k8s.Applied("a")); n != 0 {
		t.Fatalf("the operator was called %d times for rejected requests", n)
	}
	// Valid requests still flow after all that.
	id := w.deploy("env-k8s", good)
	if r := w.result(id); r.Outcome != events.Succeeded {
		t.Fatalf("after bad input: %+v", r)
	}
}

func TestUnidentifiableGoesToDeadLetters(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	for i, body := range []string{`not json at all`, `{"no":"id"}`, `{"id": ""}`, `[]`} {
		m := &nats.Msg{Subject: "deploy.request.env-k8s", Header: nats.Header{"X-Trace": {fmt.Sprint(i)}}, Data: []byte(body)}
		w.publish(m)
	}
	// An identifiable request on a subject no result subject can mirror.
	valid, _, err := events.NewDeployRequest("/test", "env-k8s", events.DeployRequest{App: "a", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	w.publish(&nats.Msg{Subject: "deploy.request.env-k8s.extra", Header: nats.Header{"X-Trace": {"4"}}, Data: valid.Data})
	dl, err := w.js.Stream(t.Context(), events.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	w.eventually(10*time.Second, "5 dead letters", func() bool {
		info, err := dl.Info(t.Context())
		return err == nil && info.State.Msgs == 5
	})
	// Requests are handled concurrently: find the first one by its header.
	var m *jetstream.RawStreamMsg
	for seq := uint64(1); seq <= 5; seq++ {
		got, err := dl.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if got.Header.Get("X-Trace") == "0" {
			m = got
		}
	}
	if m == nil {
		t.Fatal("first dead letter not found")
	}
	if m.Subject != "deadletter.deploy.request.env-k8s" || string(m.Data) != "not json at all" ||
		m.Header.Get("X-Trace") != "0" || m.Header.Get(events.HeaderBridgeSubject) != "deploy.request.env-k8s" ||
		m.Header.Get(events.HeaderBridgeError) == "" {
		t.Fatalf("dead letter = %s %q %v", m.Subject, m.Data, m.Header)
	}
	// No result was made for any of them, and the bridge goes on.
	id := w.deploy("env-k8s", events.DeployRequest{App: "a", Version: "v1"})
	w.result(id)
	w.mu.Lock()
	n := len(w.res)
	w.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d requests have results, want only the valid one", n)
	}
}

func TestOperatorFailures(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	cases := []struct {
		name      string
		fault     operatortest.Fault
		outcome   events.Outcome
		code      events.ErrorCode
		retryable bool
		attempts  int
	}{
		{"400 is rejected", operatortest.Fault{StatusCode: 400}, events.Failed, events.CodeOperatorRejected, false, 1},
		{"success false", operatortest.Fault{Reject: true}, events.Failed, events.CodeOperatorRejected, false, 1},
		{"garbage body", operatortest.Fault{Garbage: true}, events.Failed, events.CodeOperatorInvalidResponse, false, 1},
		{"two 503 then ok", operatortest.Fault{FailTimes: 2}, events.Succeeded, "", false, 3},
		{"always 503 spends the window", operatortest.Fault{Always503: true}, events.Failed, events.CodeOperatorUnavailable, true, 0},
		// On the other endpoint: the 503s above opened the physical one's circuit.
		{"hang times out", operatortest.Fault{Hang: true}, events.Failed, events.CodeOperatorTimeout, true, 0},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, env := w.pm, "env-pm"
			if c.fault.Hang {
				srv, env = w.k8s, "env-k8s"
			}
			srv.SetFault(c.fault)
			defer srv.SetFault(operatortest.Fault{})
			id := w.deploy(env, events.DeployRequest{App: fmt.Sprintf("app%d", i), Version: "v1"})
			r := w.result(id)
			if r.Outcome != c.outcome {
				t.Fatalf("outcome = %s (%s), want %s", r.Outcome, r.Message, c.outcome)
			}
			if c.code == "" {
				if r.Error != nil || !r.Success {
					t.Fatalf("success with error %+v", r.Error)
				}
			} else if r.Error == nil || r.Error.Code != c.code || r.Error.Retryable != c.retryable {
				t.Fatalf("error = %+v, want %s retryable=%v", r.Error, c.code, c.retryable)
			}
			if c.attempts > 0 && r.Attempts != c.attempts {
				t.Fatalf("attempts = %d, want %d", r.Attempts, c.attempts)
			}
			if c.attempts == 0 && r.Attempts < 2 {
				t.Fatalf("attempts = %d, want retries within the window", r.Attempts)
			}
		})
	}
}

func TestRejectionEchoesTheRequestWithACleanMessage(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	id := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v2", Deployments: []events.Deployment{
		{Version: "v2", Percent: 0.9}, {Version: "v1", Percent: 0.6}}})
	r := w.result(id)
	if r.Outcome != events.Rejected || r.App != "shop" || r.Version != "v2" || r.Error == nil {
		t.Fatalf("result = %+v", r)
	}
	if strings.HasPrefix(r.Error.Message, "invalid_data") || !strings.Contains(r.Error.Message, "deployments") || r.Message != r.Error.Message {
		t.Fatalf("message %q / error %q: want the field and no repeated code", r.Message, r.Error.Message)
	}
}

func TestBinaryModeRequestAndTraceparent(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	// Binary content mode: attributes in ce- headers (any case,
	// percent-encoded), the data alone in the body.
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	msg := &nats.Msg{Subject: "deploy.request.env-pm", Header: nats.Header{
		"Ce-Specversion": {"1.0"}, "CE-ID": {"bin-1"}, "ce-source": {"/master%20service"},
		"ce-type": {events.TypeDeployRequest}, "ce-traceparent": {tp}, "Content-Type": {"application/json"},
	}, Data: []byte(`{"app":"api","version":"v5","unknown_field":true}`)}
	w.publish(msg)
	if r := w.result("bin-1"); r.Outcome != events.Succeeded || r.App != "api" || r.Version != "v5" {
		t.Fatalf("binary request: %+v", r)
	}
	// The stored result carries the request's traceparent and requestid,
	// and an id (= Nats-Msg-Id) of its own.
	stream, err := w.js.Stream(t.Context(), events.StreamDeploy)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(t.Context(), "deploy.result.env-pm")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Decode(m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	ext := ev.Extensions()
	if ext["traceparent"] != tp || ext["requestid"] != "bin-1" || ext["environment"] != "env-pm" ||
		ev.ID() == "bin-1" || m.Header.Get("Nats-Msg-Id") != ev.ID() || ev.Subject() != "api" ||
		ev.Source() != "/operator-bridge/test" || m.Header.Get("Content-Type") != "application/cloudevents+json" {
		t.Fatalf("result event: id %s source %s subject %s ext %v headers %v", ev.ID(), ev.Source(), ev.Subject(), ext, m.Header)
	}
}
