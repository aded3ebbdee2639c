package mix

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/boreas/operator-bridge/events"
)

func TestRealistic(t *testing.T) {
	envs, apps := Names("bench-", 4), Names("app-", 50)
	m := New(envs, apps, true, time.Unix(1700000000, 0))
	last := map[string]string{} // env/app -> version
	canaries := 0
	for i := range 400 {
		env, req := m.Request(i)
		if want := envs[(i/50)%4]; env != want {
			t.Fatalf("request %d: environment %s, want %s (the app rotates first)", i, env, want)
		}
		if want := apps[i%50]; req.App != want {
			t.Fatalf("request %d: app %s, want %s", i, req.App, want)
		}
		key := env + "/" + req.App
		if prev, ok := last[key]; ok && !versionAfter(req.Version, prev) {
			t.Fatalf("request %d: version %s after %s for %s: versions must rise", i, req.Version, prev, key)
		}
		last[key] = req.Version
		if i%2 == 0 {
			if len(req.Deployments) != 0 {
				t.Fatalf("request %d: deployments %+v, want none", i, req.Deployments)
			}
			continue
		}
		canaries++
		if len(req.Deployments) != 2 || req.Deployments[0].Version != req.Version {
			t.Fatalf("request %d: deployments %+v, want a two-way split led by %s", i, req.Deployments, req.Version)
		}
		var pkg map[string]string
		if err := json.Unmarshal(req.Deployments[0].Package, &pkg); err != nil ||
			pkg["type"] != "docker" || pkg["image"] != "registry.local/"+req.App+":"+req.Version {
			t.Fatalf("request %d: package %s", i, req.Deployments[0].Package)
		}
		if _, _, err := events.NewDeployRequest("/bench", env, req); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if len(last) != 200 || canaries != 200 {
		t.Fatalf("%d keys and %d canaries, want 200 and 200", len(last), canaries)
	}
}

// versionAfter compares the mix's versions 1.<base>.<n> of one run.
func versionAfter(a, b string) bool {
	return len(a) > len(b) || (len(a) == len(b) && a > b)
}
