package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

func TestBenchRealisticMix(t *testing.T) {
	m := newBenchMix(benchConfig{envs: 4, apps: 50, mix: "realistic", prefix: "bench-"}, time.Unix(1700000000, 0))
	last := map[string]string{} // env/app -> version
	canaries := 0
	for i := range 400 {
		env, req := m.request(i)
		if want := m.envs[(i/50)%4]; env != want {
			t.Fatalf("request %d: environment %s, want %s (the app rotates first)", i, env, want)
		}
		if want := m.apps[i%50]; req.App != want {
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

func TestProcUsageReadsThisProcess(t *testing.T) {
	w := startProcUsage([]int{os.Getpid()})
	deadline := time.Now().Add(5 * time.Second)
	for procCPU(os.Getpid()) == w.before[0] && time.Now().Before(deadline) {
		// Spend some CPU, so that the reading moves.
		_ = json.Valid([]byte(`{"a":[1,2,3,{"b":"c"}]}`))
	}
	w.stop()
	u := w.usage(10)
	if len(u) != 1 || u[0].CPUS <= 0 || u[0].CPUPerRequestUS <= 0 || u[0].PeakRSSMiB <= 0 {
		t.Fatalf("usage %+v", u)
	}
}

func TestFakeOperatorCountsCalls(t *testing.T) {
	srv := operatortest.NewUnstartedServer(operator.Physical)
	ts := httptest.NewServer(countCalls(srv.Handler(), operator.Physical))
	defer ts.Close()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/deploy", `{"app":"a","version":"v1"}`},
		{"POST", "/api/deploy", `{"app":"a","version":"v2"}`},
		{"GET", "/api/app/a", ""},
		{"GET", "/health", ""},
		{"GET", "/nowhere", ""},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, ts.URL+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(ts.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]int
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"apply": 2, "status": 1, "health": 1, "other": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/stats (-want +got):\n%s", diff)
	}
}
