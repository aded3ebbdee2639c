package operator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
)

func TestMockRemembersLastApply(t *testing.T) {
	m := operator.NewMockClient()
	if m.Kind() != operator.Mock {
		t.Errorf("Kind() = %q", m.Kind())
	}
	st, err := m.Status(t.Context(), "my-app")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(operator.Status{App: "my-app", Versions: []operator.VersionStatus{}}, st); diff != "" {
		t.Errorf("status before any apply (-want +got):\n%s", diff)
	}

	if _, err := m.Apply(t.Context(), operator.ApplyRequest{App: "my-app", Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	resp, err := m.Apply(t.Context(), canaryReq)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Success || resp.Message != "applied v1.2.3 to my-app" {
		t.Errorf("Apply = %+v", resp)
	}
	st, err = m.Status(t.Context(), "my-app")
	if err != nil {
		t.Fatal(err)
	}
	node := func(v string, i int) operator.NodeStatus {
		return operator.NodeStatus{Node: fmt.Sprintf("my-app-%s-%d", v, i), Healthy: operator.Health{Level: 100}}
	}
	want := operator.Status{App: "my-app", Healthy: operator.Health{Level: 100}, Versions: []operator.VersionStatus{
		{Version: "v1.2.3", Percent: 0.2, Healthy: operator.Health{Level: 100}, Nodes: []operator.NodeStatus{node("v1.2.3", 1), node("v1.2.3", 2), node("v1.2.3", 3)}},
		{Version: "v1.2.2", Percent: 0.8, Healthy: operator.Health{Level: 100}, Nodes: []operator.NodeStatus{node("v1.2.2", 1), node("v1.2.2", 2), node("v1.2.2", 3)}},
	}}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("status after canary (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"v1", "v1.2.3"}, m.Applied("my-app")); diff != "" {
		t.Errorf("Applied (-want +got):\n%s", diff)
	}

	// A returned status is a copy.
	st.Versions[0].Nodes[0].Node = "changed"
	again, _ := m.Status(t.Context(), "my-app")
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("status changed through a returned copy (-want +got):\n%s", diff)
	}
}

func TestMockWithoutDeploymentsGivesAllTraffic(t *testing.T) {
	m := operator.NewMockClient()
	m.Apply(t.Context(), operator.ApplyRequest{App: "a", Version: "v9"})
	st, _ := m.Status(t.Context(), "a")
	if len(st.Versions) != 1 || st.Versions[0].Version != "v9" || st.Versions[0].Percent != 1 || len(st.Versions[0].Nodes) != 3 {
		t.Errorf("status = %+v, want v9 at percent 1 on 3 nodes", st)
	}
}

func TestMockFailures(t *testing.T) {
	t.Run("FailNext", func(t *testing.T) {
		m := operator.NewMockClient()
		m.FailNext(2, operator.Unavailable)
		var got []string
		for range 3 {
			_, err := m.Apply(t.Context(), canaryReq)
			got = append(got, reasonOf(err))
		}
		if diff := cmp.Diff([]string{"unavailable", "unavailable", "ok"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if err := m.HealthCheck(t.Context()); err != nil {
			t.Errorf("HealthCheck during FailNext: %v", err)
		}
	})
	t.Run("SetFailing", func(t *testing.T) {
		m := operator.NewMockClient()
		m.SetFailing(operator.Rejected)
		_, err := m.Status(t.Context(), "a")
		oe := asError(t, err)
		if oe.Reason != operator.Rejected || oe.Endpoint != operator.MockEndpoint || oe.Kind != operator.Mock || oe.StatusCode != 400 {
			t.Errorf("Status error = %+v", oe)
		}
		if got := reasonOf(m.HealthCheck(t.Context())); got != "rejected" {
			t.Errorf("HealthCheck = %s, want rejected", got)
		}
		m.SetFailing(0)
		if err := m.HealthCheck(t.Context()); err != nil {
			t.Errorf("HealthCheck after SetFailing(0): %v", err)
		}
	})
	t.Run("invalid request", func(t *testing.T) {
		_, err := operator.NewMockClient().Apply(t.Context(), operator.ApplyRequest{App: "a"})
		if got := reasonOf(err); got != "rejected" {
			t.Errorf("Apply without version = %s, want rejected", got)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := operator.NewMockClient().Status(ctx, "a")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func reasonOf(err error) string {
	var oe *operator.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &oe):
		return oe.Reason.String()
	default:
		return "other: " + err.Error()
	}
}

func TestMockConcurrent(t *testing.T) {
	m := operator.NewMockClient()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				app := fmt.Sprintf("app-%d", j%4)
				m.Apply(t.Context(), operator.ApplyRequest{App: app, Version: fmt.Sprintf("v%d", i)})
				st, err := m.Status(t.Context(), app)
				// Another goroutine's FailNext may fail this call or the apply.
				if r := reasonOf(err); (r != "ok" && r != "unavailable") || len(st.Versions) > 1 {
					t.Errorf("Status(%s) = %+v, %v", app, st, err)
				}
				if j%10 == 0 {
					m.FailNext(1, operator.Unavailable)
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for j := range 4 {
		total += len(m.Applied(fmt.Sprintf("app-%d", j)))
	}
	if total > 400 || total < 400-8*5*2 {
		t.Errorf("%d applies recorded, want 400 minus at most 80 injected failures", total)
	}
}

func TestMockFencing(t *testing.T) {
	m := operator.NewMockClient()
	var got []string
	for _, tt := range []struct {
		app   string
		fence uint64
	}{{"a", 5}, {"a", 4}, {"b", 1}, {"a", 5}, {"a", 0}, {"a", 9}, {"a", 8}} {
		_, err := m.Apply(t.Context(), operator.ApplyRequest{App: tt.app, Version: fmt.Sprintf("v%d", tt.fence), Fence: tt.fence})
		got = append(got, fmt.Sprintf("%s%d:%s", tt.app, tt.fence, reasonOf(err)))
		if err != nil {
			oe := asError(t, err)
			if oe.StatusCode != 409 || oe.Retryable() || !strings.Contains(oe.Message, "refused the apply as stale") ||
				!strings.Contains(oe.Message, fmt.Sprintf("stale fence %d < ", tt.fence)) {
				t.Errorf("stale error = %+v", oe)
			}
		}
	}
	want := []string{"a5:ok", "a4:stale", "b1:ok", "a5:ok", "a0:ok", "a9:ok", "a8:stale"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"v5", "v5", "v0", "v9"}, m.Applied("a")); diff != "" {
		t.Errorf("Applied (-want +got):\n%s", diff)
	}
}
