package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// With OTEL_EXPORTER_OTLP_ENDPOINT set, serve exports its spans over
// OTLP/HTTP: a deploy reaches the receiver as at least one export.
func TestServeExportsTraces(t *testing.T) {
	var exports, bad atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" ||
			r.Header.Get("Content-Type") != "application/x-protobuf" || len(body) == 0 {
			bad.Add(1)
			http.Error(w, "not an OTLP/HTTP trace export", http.StatusBadRequest)
			return
		}
		exports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	envFile := writeFile(t, "environments.json", `[{"id": "env-m", "type": "mock"}]`)
	s := startServe(t, map[string]string{"USE_MOCK": "true", "ENVIRONMENTS_FILE": envFile})
	r := runCmd(t, "deploy", "--nats", s.natsURL, "--env", "env-m", "--app", "shop", "--version", "v1")
	wantCode(t, r, 0)

	deadline := time.Now().Add(20 * time.Second)
	for exports.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if exports.Load() == 0 {
		t.Fatalf("the OTLP receiver got no trace export (%d malformed requests)\n%s", bad.Load(), s.stderr.String())
	}
	if n := bad.Load(); n != 0 {
		t.Fatalf("the OTLP receiver got %d requests that are not trace exports", n)
	}
}

func TestTracingConfigured(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"unset", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tracingConfigured(func(k string) string { return tc.env[k] }); got != tc.want {
				t.Fatalf("tracingConfigured(%v) = %v, want %v", tc.env, got, tc.want)
			}
		})
	}
}
