package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/bench/load"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

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

func TestBenchExplainsSuperseded(t *testing.T) {
	sum := load.Summary{Requests: 1000, Envs: 4, Apps: 50, Mix: "realistic", InFlight: 1000, Results: 1000, DupWaitS: 30,
		Outcomes: map[string]int64{"succeeded": 933, "superseded": 67}, OK: true}
	var out strings.Builder
	printBench(&out, palette{}, sum)
	for _, want := range []string{"superseded 67", "newer versions of the same app overtook them", "expected",
		"every request got exactly one result", "within 30s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench output lacks %q:\n%s", want, out.String())
		}
	}
	sum.Outcomes = map[string]int64{"succeeded": 1000}
	out.Reset()
	printBench(&out, palette{}, sum)
	if strings.Contains(out.String(), "overtook") {
		t.Errorf("the note on superseded requests shows with none superseded:\n%s", out.String())
	}
}
