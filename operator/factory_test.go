package operator_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
)

func newFactory(t *testing.T, s operator.Settings) *operator.Factory {
	t.Helper()
	f, err := operator.NewFactory(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFactoryKindsAndDefaultURLs(t *testing.T) {
	s := operator.DefaultSettings()
	s.K8sOperatorURL = "http://k8s-operator:8081"
	s.PMOperatorURL = "http://pm-operator:8082/"
	f := newFactory(t, s)
	tests := []struct {
		typ      operator.Kind
		url      string
		kind     operator.Kind
		endpoint string
	}{
		{"kubernetes", "", operator.Kubernetes, "http://k8s-operator:8081"},
		{"k8s", "", operator.Kubernetes, "http://k8s-operator:8081"},
		{"K8S", "", operator.Kubernetes, "http://k8s-operator:8081"},
		{"physical", "", operator.Physical, "http://pm-operator:8082"},
		{"pm", "", operator.Physical, "http://pm-operator:8082"},
		{"pm", "https://ops:pw@pm.example:9443/base/", operator.Physical, "https://pm.example:9443/base"},
		{"mock", "", operator.Mock, operator.MockEndpoint},
		{"mock", "http://ignored", operator.Mock, operator.MockEndpoint},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ)+" "+tt.url, func(t *testing.T) {
			e := operator.Environment{ID: "env-1", Type: tt.typ, OperatorURL: tt.url}
			entry, err := f.Entry(e)
			if err != nil {
				t.Fatal(err)
			}
			if entry.Operator.Kind() != tt.kind || entry.Environment.Type != tt.kind {
				t.Errorf("kind = %q (environment %q), want %q", entry.Operator.Kind(), entry.Environment.Type, tt.kind)
			}
			if entry.Endpoint != tt.endpoint || f.Endpoint(e) != tt.endpoint {
				t.Errorf("Endpoint = %q, f.Endpoint = %q, want %q", entry.Endpoint, f.Endpoint(e), tt.endpoint)
			}
			op, err := f.New(e)
			if err != nil || op != entry.Operator {
				t.Errorf("New = %v, %v; want the same operator as Entry", op, err)
			}
		})
	}
}

func TestFactorySharesClientPerEndpoint(t *testing.T) {
	f := newFactory(t, operator.DefaultSettings())
	op := func(id string, kind operator.Kind, url string) operator.Operator {
		t.Helper()
		o, err := f.New(operator.Environment{ID: id, Type: kind, OperatorURL: url})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	a := op("a", operator.Kubernetes, "http://k8s:8081")
	b := op("b", "k8s", "http://k8s:8081/")
	c := op("c", operator.Kubernetes, "http://other:8081")
	d := op("d", operator.Physical, "http://k8s:8081")
	e := op("e", operator.Kubernetes, "http://user:pw@k8s:8081")
	if a != b {
		t.Error("environments on the same endpoint got different clients")
	}
	if a == c || a == d || a == e {
		t.Error("different endpoint, kind or credentials shared a client")
	}
	if n1, n2 := op("m", operator.Mock, ""), op("m", operator.Mock, ""); n1 != n2 {
		t.Error("the mock of an environment was not kept")
	}
	if n1, n2 := op("m1", operator.Mock, ""), op("m2", operator.Mock, ""); n1 == n2 {
		t.Error("two environments share one mock")
	}
}

func TestFactoryUseMock(t *testing.T) {
	s := operator.DefaultSettings()
	s.UseMock = true
	f := newFactory(t, s)
	envs := []operator.Environment{
		{ID: "env-k8s", Type: operator.Kubernetes, OperatorURL: "http://k8s:1"},
		{ID: "env-pm", Type: "pm"},
	}
	m, err := f.Build(envs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Entries() {
		if e.Operator.Kind() != operator.Mock || e.Endpoint != operator.MockEndpoint {
			t.Errorf("%s: kind %q endpoint %q, want the mock", e.Environment.ID, e.Operator.Kind(), e.Endpoint)
		}
	}
	if _, err := m.Apply(t.Context(), "env-k8s", canaryReq); err != nil {
		t.Fatal(err)
	}
	// A rebuild keeps the mock's state.
	m2, err := f.Build(envs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m2.Status(t.Context(), "env-k8s", "my-app")
	if err != nil || len(st.Versions) != 2 {
		t.Errorf("status after rebuild = %+v, %v; want the earlier apply", st, err)
	}
	op, err := f.NewByType("kubernetes", "http://k8s:1")
	if err != nil || op.Kind() != operator.Mock {
		t.Errorf("NewByType with USE_MOCK = %v, %v; want a mock", op, err)
	}
}

func TestFactoryErrors(t *testing.T) {
	f := newFactory(t, operator.DefaultSettings())
	_, err := f.New(operator.Environment{ID: "env-x", Type: "openshift"})
	if err == nil || !strings.Contains(err.Error(), `"openshift"`) || !strings.Contains(err.Error(), `"env-x"`) {
		t.Errorf("unknown type: err = %v, want it to name the type and the environment", err)
	}
	_, err = f.New(operator.Environment{ID: "env-y", Type: operator.Kubernetes, OperatorURL: "ftp://x"})
	if err == nil || !strings.Contains(err.Error(), "env-y") {
		t.Errorf("bad URL: err = %v", err)
	}
	if _, err := f.NewByType("nomad", ""); err == nil || !strings.Contains(err.Error(), `"nomad"`) {
		t.Errorf("NewByType(nomad) = %v", err)
	}

	m, err := f.Build([]operator.Environment{
		{ID: "good", Type: operator.Kubernetes},
		{ID: "bad", Type: "swarm"},
	})
	if err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("Build err = %v, want it to name the bad environment", err)
	}
	if _, lerr := m.Lookup("good"); lerr != nil {
		t.Errorf("Build dropped the good environment: %v", lerr)
	}
	if _, lerr := m.Lookup("bad"); !errors.Is(lerr, operator.ErrUnknownEnvironment) {
		t.Errorf("Build kept the bad environment: %v", lerr)
	}

	bad := operator.DefaultSettings()
	bad.Timeout = 0
	if _, err := operator.NewFactory(bad); err == nil || !strings.Contains(err.Error(), "OPERATOR_TIMEOUT") {
		t.Errorf("NewFactory with zero timeout: %v", err)
	}
}

func TestFactoryBuildFillsEnvironment(t *testing.T) {
	f := newFactory(t, operator.DefaultSettings())
	m, err := f.Build([]operator.Environment{{ID: "e", Name: "prod", Type: "pm"}})
	if err != nil {
		t.Fatal(err)
	}
	want := operator.Environment{ID: "e", Name: "prod", Type: operator.Physical, OperatorURL: "http://localhost:8082"}
	if diff := cmp.Diff(want, m.Entries()[0].Environment); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestFactoryAppliesSettingsToClients(t *testing.T) {
	srv := newServer(t, operator.Kubernetes)
	s := operator.DefaultSettings()
	s.Token = "tok"
	f := newFactory(t, s)
	op, err := f.New(operator.Environment{ID: "e", Type: operator.Kubernetes, OperatorURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.HealthCheck(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := srv.Requests()[0].Header.Get("Authorization"); got != "Bearer tok" {
		t.Errorf("Authorization = %q", got)
	}
}

func TestParseKind(t *testing.T) {
	tests := []struct {
		in   string
		want operator.Kind
		err  bool
	}{
		{"kubernetes", operator.Kubernetes, false},
		{" K8s ", operator.Kubernetes, false},
		{"PM", operator.Physical, false},
		{"physical", operator.Physical, false},
		{"Mock", operator.Mock, false},
		{"", "", true},
		{"docker", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := operator.ParseKind(tt.in)
			if got != tt.want || (err != nil) != tt.err {
				t.Errorf("ParseKind(%q) = %q, %v", tt.in, got, err)
			}
			if err != nil && !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("error %q does not name %q", err, tt.in)
			}
		})
	}
}

// Operators told apart by their paths on one host (one per environment)
// get clients of their own that share the host's keep-alive connections;
// another host gets its own.
func TestFactorySharesConnectionsPerHost(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]int{} // server -> connections opened
	var paths []string
	server := func(name string) *httptest.Server {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			paths = append(paths, name+r.URL.Path)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				mu.Lock()
				conns[name]++
				mu.Unlock()
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		return srv
	}
	one, other := server("one"), server("other")
	f := newFactory(t, operator.DefaultSettings())
	envs := []operator.Environment{
		{ID: "a", Type: operator.Kubernetes, OperatorURL: one.URL + "/env-a"},
		{ID: "b", Type: operator.Kubernetes, OperatorURL: one.URL + "/env-b"},
		{ID: "c", Type: operator.Kubernetes, OperatorURL: other.URL + "/env-c"},
	}
	m, err := f.Build(envs)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := m.Lookup("a")
	b, _ := m.Lookup("b")
	if a.Operator == b.Operator || a.Endpoint == b.Endpoint {
		t.Fatalf("a and b share a client: %+v, %+v", a, b)
	}
	for range 3 {
		for _, id := range []string{"a", "b", "c"} {
			if err := m.HealthCheck(t.Context(), id); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(map[string]int{"one": 1, "other": 1}, conns); diff != "" {
		t.Errorf("connections opened (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"one/env-a/health", "one/env-b/health", "other/env-c/health"}, paths[:3]); diff != "" {
		t.Errorf("paths called (-want +got):\n%s", diff)
	}
}
