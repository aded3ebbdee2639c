package operatortest_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// split is a status reduced to version -> percent and health level.
type split map[string][2]float64

func splitOf(t *testing.T, c *operator.Client, app string) split {
	t.Helper()
	st, err := c.Status(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	out := split{}
	for _, v := range st.Versions {
		out[v.Version] = [2]float64{v.Percent, float64(v.Healthy.Level)}
		for _, n := range v.Nodes {
			if n.Healthy.Level != v.Healthy.Level {
				t.Errorf("node %s level %d, version %s level %d", n.Node, n.Healthy.Level, v.Version, v.Healthy.Level)
			}
		}
	}
	return out
}

func TestRolloutGradualStuckAndUnhealthy(t *testing.T) {
	srv := operatortest.NewServer(operator.Physical)
	defer srv.Close()
	c, err := operator.NewClient(operator.Physical, srv.URL, operator.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(req operator.ApplyRequest) {
		t.Helper()
		if _, err := c.Apply(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, want split) {
		t.Helper()
		if diff := cmp.Diff(want, splitOf(t, c, "shop")); diff != "" {
			t.Errorf("%s: status (-want +got):\n%s", step, diff)
		}
	}

	// The zero Rollout reports the applied split at once.
	apply(operator.ApplyRequest{App: "shop", Version: "v1"})
	check("at once", split{"v1": {1, 100}})

	// A rollout that has taken no step yet still reports the old split, the
	// new version at 0.
	srv.SetRollout(operatortest.Rollout{Step: 0.25, Every: time.Hour})
	apply(operator.ApplyRequest{App: "shop", Version: "v2", Deployments: []operator.Deployment{{Version: "v2", Percent: 1}}})
	check("no step yet", split{"v2": {0, 100}, "v1": {1, 100}})

	// Stuck, then freed with steps that pass at once: it completes.
	srv.SetRollout(operatortest.Rollout{Stuck: true})
	check("stuck", split{"v2": {0, 100}, "v1": {1, 100}})
	srv.SetRollout(operatortest.Rollout{})
	check("resumed", split{"v2": {1, 100}})

	// An unhealthy version reports its level, on its nodes too.
	srv.SetRollout(operatortest.Rollout{Unhealthy: map[string]int{"v2": 40}})
	check("unhealthy", split{"v2": {1, 40}})
	if st, ok := srv.Status("shop"); !ok || st.Versions[0].Healthy.Level != 40 {
		t.Errorf("Server.Status = %+v, %v", st, ok)
	}
}
