package operatortest

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
)

func TestMove(t *testing.T) {
	from := operator.Status{App: "a", Versions: []operator.VersionStatus{{Version: "v1", Percent: 1}}}
	to := operator.Status{App: "a", Versions: []operator.VersionStatus{{Version: "v2", Percent: 0.2}, {Version: "v1", Percent: 0.8}}}
	for _, tc := range []struct {
		d    float64
		want map[string]float64
	}{
		{0, map[string]float64{"v2": 0, "v1": 1}},
		{0.1, map[string]float64{"v2": 0.1, "v1": 0.9}},
		{0.2, map[string]float64{"v2": 0.2, "v1": 0.8}},
		{5, map[string]float64{"v2": 0.2, "v1": 0.8}},
	} {
		got := map[string]float64{}
		for _, v := range move(from, to, tc.d).Versions {
			got[v.Version] = v.Percent
		}
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
			t.Errorf("move by %v (-want +got):\n%s", tc.d, diff)
		}
	}
	// An old version not in the new split leaves as the new one comes.
	to = operator.Status{App: "a", Versions: []operator.VersionStatus{{Version: "v3", Percent: 1}}}
	got := move(from, to, 0.5).Versions
	if len(got) != 2 || got[0].Version != "v3" || got[0].Percent != 0.5 || got[1].Version != "v1" || got[1].Percent != 0.5 {
		t.Errorf("half way: %+v", got)
	}
	if got := move(from, to, 1).Versions; len(got) != 1 || got[0].Version != "v3" {
		t.Errorf("done: %+v", got)
	}
}
