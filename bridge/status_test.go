package bridge_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

func TestStatusQueryThroughTheStream(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	dep := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v2", Deployments: []events.Deployment{
		{Version: "v2", Percent: 0.25}, {Version: "v1", Percent: 0.75}}})
	w.result(dep)

	msg, id, err := events.NewStatusQuery("/test", "env-k8s", "shop")
	if err != nil {
		t.Fatal(err)
	}
	w.publish(msg)
	r := w.statusResult(id)
	if r.Degraded || r.Error != nil || r.Operator != "kubernetes" || r.Environment != "env-k8s" {
		t.Fatalf("status result = %+v", r)
	}
	if len(r.Status.Versions) != 2 || r.Status.Versions[0].Version != "v2" || r.Status.Versions[0].Percent != 0.25 {
		t.Fatalf("versions = %+v", r.Status.Versions)
	}
}

func TestStatusDegradesAtOnce(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	cases := []struct {
		name  string
		env   string
		app   string
		fault operatortest.Fault
		code  events.ErrorCode
	}{
		{"operator down", "env-pm", "api", operatortest.Fault{Always503: true}, events.CodeOperatorUnavailable},
		{"operator hangs", "env-pm", "api", operatortest.Fault{Hang: true}, events.CodeOperatorTimeout},
		{"unknown environment", "env-nowhere", "api", operatortest.Fault{}, events.CodeUnknownEnvironment},
		{"inactive environment", "env-off", "api", operatortest.Fault{}, events.CodeEnvironmentInactive},
		{"invalid app", "env-pm", "no/slash", operatortest.Fault{}, events.CodeInvalidData},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.pm.SetFault(c.fault)
			defer w.pm.SetFault(operatortest.Fault{})
			msg, id, err := events.NewStatusQuery("/test", c.env, c.app)
			if err != nil {
				t.Fatal(err)
			}
			calls := func() int {
				n := 0
				for _, r := range w.pm.Requests() {
					if strings.HasPrefix(r.Path, "/api/app/") {
						n++
					}
				}
				return n
			}
			before := calls()
			w.publish(msg)
			r := w.statusResult(id)
			if !r.Degraded || r.Error == nil || r.Error.Code != c.code {
				t.Fatalf("result = %+v (error %+v), want degraded %s", r, r.Error, c.code)
			}
			if r.Status.Healthy.Level != 0 || r.Status.Versions == nil || len(r.Status.Versions) != 0 ||
				(c.code != events.CodeInvalidData && r.Status.App != c.app) {
				t.Fatalf("degraded status = %+v", r.Status)
			}
			// One attempt when the operator fails, none when it is not asked:
			// a status question never waits on retries.
			want := 0
			if strings.HasPrefix(string(c.code), "operator_") {
				want = 1
			}
			if got := calls() - before; got != want {
				t.Fatalf("%d operator calls, want %d", got, want)
			}
		})
	}
}

func TestMicroServiceEndpoints(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	w.result(w.deploy("env-mock", events.DeployRequest{App: "shop", Version: "v7"}))

	// The status endpoint takes a status.query event...
	q, _, err := events.NewStatusQuery("/test", "env-mock", "shop")
	if err != nil {
		t.Fatal(err)
	}
	q.Subject = "operator-bridge.status.env-mock"
	reply, err := w.nc.RequestMsg(q, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, r, err := events.DecodeStatusResult(reply.Header, reply.Data)
	if err != nil {
		t.Fatalf("reply: %v: %s", err, reply.Data)
	}
	if r.Degraded || r.Operator != "mock" || len(r.Status.Versions) == 0 || r.Status.Versions[0].Version != "v7" {
		t.Fatalf("status reply = %+v", r)
	}
	// ...or its bare data.
	reply, err = w.nc.Request("operator-bridge.status.env-nowhere", []byte(`{"app":"shop"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, r, err = events.DecodeStatusResult(reply.Header, reply.Data); err != nil || !r.Degraded || r.Error.Code != events.CodeUnknownEnvironment {
		t.Fatalf("unknown env reply = %+v, %v", r, err)
	}

	reply, err = w.nc.Request("operator-bridge.environments", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var envs []events.EnvironmentInfo
	if err := json.Unmarshal(reply.Data, &envs); err != nil {
		t.Fatalf("%v: %s", err, reply.Data)
	}
	byID := map[string]events.EnvironmentInfo{}
	for _, e := range envs {
		byID[e.ID] = e
	}
	if len(envs) != 5 || byID["env-pm"].Type != "physical" || byID["env-pm"].Endpoint != w.pm.URL ||
		byID["env-off"].Active || byID["env-mock"].Endpoint != "mock" {
		t.Fatalf("environments = %s", reply.Data)
	}
	// The service is discoverable the way `nats micro ls` finds it.
	ping, err := w.nc.Request("$SRV.PING.operator-bridge", nil, 5*time.Second)
	if err != nil || len(ping.Data) == 0 {
		t.Fatalf("micro ping: %v", err)
	}
}

func TestUseMockKeepsTheEnvironmentsType(t *testing.T) {
	w := newWorld(t)
	w.startBridge(func(o *bridgeOpts) { o.settings.UseMock = true })
	if r := w.result(w.deploy("env-k8s", events.DeployRequest{App: "a", Version: "v1"})); r.Outcome != events.Succeeded || r.Operator != "mock" {
		t.Fatalf("deploy with USE_MOCK: %+v", r)
	}
	if n := len(w.k8s.Requests()); n != 0 {
		t.Fatalf("USE_MOCK: the Kubernetes operator got %d calls", n)
	}
	reply, err := w.nc.Request("operator-bridge.environments", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var envs []events.EnvironmentInfo
	if err := json.Unmarshal(reply.Data, &envs); err != nil {
		t.Fatal(err)
	}
	for _, e := range envs {
		if e.ID == "env-k8s" && (e.Type != "kubernetes" || e.Endpoint != "mock") {
			t.Fatalf("env-k8s with USE_MOCK listed as %+v, want type kubernetes on endpoint mock", e)
		}
	}
}
