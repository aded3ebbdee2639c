package operator_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

func env(id string, kind operator.Kind, active bool) operator.Environment {
	return operator.Environment{ID: id, Name: id, Type: kind, Inactive: !active}
}

func TestManagerLookup(t *testing.T) {
	m := operator.NewManager()
	prod, stopped := operator.NewMockClient(), operator.NewMockClient()
	m.RegisterOperator(env("env-001", operator.Mock, true), prod)
	m.RegisterOperator(env("env-002", operator.Mock, false), stopped)

	e, err := m.Lookup("env-001")
	if err != nil || e.Operator != prod || e.Endpoint != operator.MockEndpoint {
		t.Errorf("Lookup(env-001) = %+v, %v", e, err)
	}
	e, err = m.Lookup("env-002")
	if !errors.Is(err, operator.ErrEnvironmentInactive) || e.Operator != stopped {
		t.Errorf("Lookup(env-002) = %+v, %v; want the entry and ErrEnvironmentInactive", e, err)
	}
	_, err = m.Lookup("env-404")
	if !errors.Is(err, operator.ErrUnknownEnvironment) {
		t.Errorf("Lookup(env-404) err = %v, want ErrUnknownEnvironment", err)
	}

	if _, err := m.Apply(t.Context(), "env-002", canaryReq); !errors.Is(err, operator.ErrEnvironmentInactive) {
		t.Errorf("Apply to inactive: %v", err)
	}
	if len(stopped.Applied("my-app")) != 0 {
		t.Error("inactive environment's operator was called")
	}
	if _, err := m.Apply(t.Context(), "env-001", canaryReq); err != nil {
		t.Fatal(err)
	}
	st, err := m.Status(t.Context(), "env-001", "my-app")
	if err != nil || len(st.Versions) != 2 {
		t.Errorf("Status = %+v, %v", st, err)
	}
	if err := m.HealthCheck(t.Context(), "env-404"); !errors.Is(err, operator.ErrUnknownEnvironment) {
		t.Errorf("HealthCheck(env-404) = %v", err)
	}
}

func TestManagerStatusOrDegraded(t *testing.T) {
	m := operator.NewManager()
	mock := operator.NewMockClient()
	m.RegisterOperator(env("env-1", operator.Mock, true), mock)
	mock.SetFailing(operator.Unavailable)
	for _, id := range []string{"env-1", "unknown"} {
		st, degraded, err := m.StatusOrDegraded(t.Context(), id, "my-app")
		if !degraded || err == nil {
			t.Errorf("%s: degraded=%v err=%v, want degraded with an error", id, degraded, err)
		}
		if diff := cmp.Diff(operator.DegradedStatus("my-app"), st); diff != "" {
			t.Errorf("%s (-want +got):\n%s", id, diff)
		}
	}
	mock.SetFailing(0)
	if _, degraded, err := m.StatusOrDegraded(t.Context(), "env-1", "my-app"); degraded || err != nil {
		t.Errorf("healthy: degraded=%v err=%v", degraded, err)
	}
}

func TestManagerCopyOnWrite(t *testing.T) {
	m := operator.NewManager()
	m.RegisterOperator(env("b", operator.Mock, true), operator.NewMockClient())
	m.RegisterOperator(env("a", operator.Mock, true), operator.NewMockClient())
	before := m.Entries()
	m.RegisterOperator(env("a", operator.Mock, false), operator.NewMockClient())
	m.RegisterOperator(env("c", operator.Mock, true), operator.NewMockClient())

	ids := func(es []operator.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%s:%v", e.Environment.ID, !e.Environment.Inactive))
		}
		return out
	}
	if diff := cmp.Diff([]string{"a:true", "b:true"}, ids(before)); diff != "" {
		t.Errorf("earlier snapshot changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a:false", "b:true", "c:true"}, ids(m.Entries())); diff != "" {
		t.Errorf("Entries (-want +got):\n%s", diff)
	}
	if m.Len() != 3 {
		t.Errorf("Len = %d", m.Len())
	}

	m.Replace([]operator.Entry{{Environment: env("z", operator.Mock, true), Operator: operator.NewMockClient()}})
	if diff := cmp.Diff([]string{"z:true"}, ids(m.Entries())); diff != "" {
		t.Errorf("after Replace (-want +got):\n%s", diff)
	}
	if e, _ := m.Lookup("z"); e.Endpoint != operator.MockEndpoint {
		t.Errorf("Replace did not fill Endpoint: %q", e.Endpoint)
	}
	if _, err := m.Lookup("a"); !errors.Is(err, operator.ErrUnknownEnvironment) {
		t.Errorf("a survived Replace: %v", err)
	}
}

// Replace takes entries in any order; for one ID the later wins, and what
// Entries returns is the caller's to change.
func TestManagerReplace(t *testing.T) {
	entry := func(id string, active bool) operator.Entry {
		return operator.Entry{Environment: env(id, operator.Mock, active), Operator: operator.NewMockClient()}
	}
	tests := []struct {
		name    string
		entries []operator.Entry
		want    []string
	}{
		{"sorted", []operator.Entry{entry("a", true), entry("b", true), entry("c", false)}, []string{"a:true", "b:true", "c:false"}},
		{"unsorted", []operator.Entry{entry("c", true), entry("a", false), entry("b", true)}, []string{"a:false", "b:true", "c:true"}},
		{"later wins, sorted", []operator.Entry{entry("a", true), entry("a", false), entry("b", true)}, []string{"a:false", "b:true"}},
		{"later wins, unsorted", []operator.Entry{entry("b", false), entry("a", true), entry("b", true), entry("a", false), entry("b", false)},
			[]string{"a:false", "b:false"}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := operator.NewManager()
			m.Replace(tt.entries)
			var got []string
			for _, e := range m.Entries() {
				got = append(got, fmt.Sprintf("%s:%v", e.Environment.ID, !e.Environment.Inactive))
				if l, _ := m.Lookup(e.Environment.ID); l.Operator != e.Operator || l.Environment != e.Environment {
					t.Errorf("Lookup(%s) = %+v, Entries has %+v", e.Environment.ID, l, e)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Entries (-want +got):\n%s", diff)
			}
			if m.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", m.Len(), len(tt.want))
			}
			if es := m.Entries(); len(es) > 0 {
				es[0].Environment.ID = "changed"
				if m.Entries()[0].Environment.ID == "changed" {
					t.Error("changing what Entries returned changed the manager")
				}
			}
		})
	}
}

// Take makes another manager's set the whole set; All yields it sorted, as
// it was when it started.
func TestManagerTakeAndAll(t *testing.T) {
	ids := func(m *operator.Manager) []string {
		var out []string
		for e := range m.All() {
			out = append(out, e.Environment.ID)
		}
		return out
	}
	m, built := operator.NewManager(), operator.NewManager()
	m.RegisterOperator(env("old", operator.Mock, true), operator.NewMockClient())
	built.Replace([]operator.Entry{
		{Environment: env("b", operator.Mock, true), Operator: operator.NewMockClient()},
		{Environment: env("a", operator.Mock, false), Operator: operator.NewMockClient()},
	})
	all := m.All()
	m.Take(built)
	if diff := cmp.Diff([]string{"a", "b"}, ids(m)); diff != "" {
		t.Errorf("after Take (-want +got):\n%s", diff)
	}
	if _, err := m.Lookup("old"); !errors.Is(err, operator.ErrUnknownEnvironment) {
		t.Errorf("old survived Take: %v", err)
	}
	if _, err := m.Lookup("a"); !errors.Is(err, operator.ErrEnvironmentInactive) {
		t.Errorf("Lookup(a) after Take: %v, want inactive", err)
	}
	var before []string
	for e := range all {
		before = append(before, e.Environment.ID)
	}
	if diff := cmp.Diff([]string{"old"}, before); diff != "" {
		t.Errorf("All begun before Take (-want +got):\n%s", diff)
	}
	built.RegisterOperator(env("c", operator.Mock, true), operator.NewMockClient())
	if diff := cmp.Diff([]string{"a", "b"}, ids(m)); diff != "" {
		t.Errorf("a change to the other manager showed (-want +got):\n%s", diff)
	}
	var zero operator.Manager
	m.Take(&zero)
	if m.Len() != 0 || len(ids(m)) != 0 {
		t.Errorf("after taking an empty manager: %v", ids(m))
	}
}

func TestManagerZeroValue(t *testing.T) {
	var m operator.Manager
	if _, err := m.Lookup("x"); !errors.Is(err, operator.ErrUnknownEnvironment) || m.Len() != 0 || len(m.Entries()) != 0 {
		t.Errorf("zero Manager: %v, %d", err, m.Len())
	}
}

// TestManagerConcurrent runs lookups while the set is swapped; run with -race.
func TestManagerConcurrent(t *testing.T) {
	m := operator.NewManager()
	set := func(gen int) []operator.Entry {
		out := make([]operator.Entry, 100)
		for i := range out {
			out[i] = operator.Entry{Environment: operator.Environment{ID: fmt.Sprintf("env-%d", i), Name: fmt.Sprint(gen)}, Operator: operator.NewMockClient()}
		}
		return out
	}
	m.Replace(set(0))
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				id := fmt.Sprintf("env-%d", (i+r)%100)
				e, err := m.Lookup(id)
				if err != nil || e.Environment.ID != id {
					t.Errorf("Lookup(%s) = %+v, %v", id, e, err)
					return
				}
				if i%100 == 0 {
					if n := len(m.Entries()); n < 100 {
						t.Errorf("Entries has %d", n)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for gen := 1; gen <= 50; gen++ {
			m.Replace(set(gen))
		}
	})
	wg.Go(func() {
		for i := range 200 {
			m.RegisterOperator(operator.Environment{ID: fmt.Sprintf("extra-%d", i)}, operator.NewMockClient())
		}
	})
	wg.Wait()
	if e, _ := m.Lookup("env-0"); e.Environment.Name == "" {
		t.Errorf("entry lost its fields: %+v", e)
	}
}

func TestManagerCheckHealth(t *testing.T) {
	up := newServer(t, operator.Kubernetes)
	down := newServer(t, operator.Physical)
	down.SetFault(operatortest.Fault{HealthDown: true})
	f, err := operator.NewFactory(operator.DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	envs := []operator.Environment{
		{ID: "k8s-a", Type: operator.Kubernetes, OperatorURL: up.URL},
		{ID: "k8s-b", Type: operator.Kubernetes, OperatorURL: up.URL},
		{ID: "pm", Type: operator.Physical, OperatorURL: down.URL},
		{ID: "mock", Type: operator.Mock},
		{ID: "off", Type: operator.Kubernetes, OperatorURL: up.URL, Inactive: true},
		{ID: "pm-same-url", Type: operator.Physical, OperatorURL: up.URL},
	}
	m, err := f.Build(envs)
	if err != nil {
		t.Fatal(err)
	}
	results := m.CheckHealth(t.Context())
	var got []string
	for _, r := range results {
		got = append(got, fmt.Sprintf("%s %s %s", r.Entry.Environment.ID, r.Entry.Endpoint, reasonOf(r.Err)))
		if r.CheckedAt.IsZero() || r.Latency <= 0 {
			t.Errorf("%s: CheckedAt %v, Latency %v", r.Entry.Environment.ID, r.CheckedAt, r.Latency)
		}
	}
	want := []string{
		"k8s-a " + up.URL + " ok",
		"k8s-b " + up.URL + " ok",
		"mock mock ok",
		"pm " + down.URL + " unavailable",
		"pm-same-url " + up.URL + " ok",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if n := len(up.Requests()); n != 2 {
		t.Errorf("the shared endpoint was checked %d times, want once per kind (2)", n)
	}
}

func TestGroupByOperator(t *testing.T) {
	up := newServer(t, operator.Kubernetes)
	f, err := operator.NewFactory(operator.DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Build([]operator.Environment{
		{ID: "k8s-a", Type: operator.Kubernetes, OperatorURL: up.URL},
		{ID: "k8s-b", Type: operator.Kubernetes, OperatorURL: up.URL},
		{ID: "pm-same-url", Type: operator.Physical, OperatorURL: up.URL},
		{ID: "mock-a", Type: operator.Mock},
		{ID: "mock-b", Type: operator.Mock},
		{ID: "off", Type: operator.Kubernetes, OperatorURL: up.URL, Inactive: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range operator.GroupByOperator(m.Entries()) {
		ids := make([]string, len(g.Entries))
		for i, e := range g.Entries {
			ids[i] = e.Environment.ID
			if e.Operator != g.Operator {
				t.Errorf("%s in a group of another operator", e.Environment.ID)
			}
		}
		got = append(got, g.Endpoint+" "+strings.Join(ids, ","))
	}
	// Environments on one endpoint share a check; each mock is its own
	// operator; inactive environments are not checked.
	want := []string{
		up.URL + " k8s-a,k8s-b",
		up.URL + " pm-same-url",
		"mock mock-a",
		"mock mock-b",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("groups (-want +got):\n%s", diff)
	}
}
