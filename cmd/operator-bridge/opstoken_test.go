package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestServeOpsToken: with OPERATOR_BRIDGE_OPS_TOKEN set, the probes stay
// open and everything else on the ops address, the status page included,
// needs the token.
func TestServeOpsToken(t *testing.T) {
	envFile := writeFile(t, "environments.yaml", "- {id: env-a, name: A, type: k8s}\n")
	s := startServe(t, map[string]string{"USE_MOCK": "true", "ENVIRONMENTS_FILE": envFile, "OPS_TOKEN": "ops-secret"})
	base := "http://" + s.httpAddr

	get := func(path, token string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized},
		{"/debug/pprof/", "", http.StatusUnauthorized},
		{"/", "", http.StatusUnauthorized},
		{"/", "wrong", http.StatusUnauthorized},
		{"/metrics", "ops-secret", http.StatusOK},
		{"/", "ops-secret", http.StatusOK},
	}
	for _, tt := range tests {
		if code, body := get(tt.path, tt.token); code != tt.want {
			t.Errorf("GET %s with token %q: %d, want %d\n%.300s", tt.path, tt.token, code, tt.want, body)
		}
	}
	// The page lists the environment with the health the bridge published.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, page := get("/", "ops-secret")
		if strings.Contains(page, `id="env-env-a" data-state="healthy"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status page never showed env-a healthy:\n%s", page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
