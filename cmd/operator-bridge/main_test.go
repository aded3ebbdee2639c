package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/boreas/operator-bridge/bench/load"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// lockedBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// result is what one run() returned and wrote.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

// runCmd runs the command line args through run, as main does.
func runCmd(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb lockedBuffer
	err := run(t.Context(), args, os.Getenv, &out, &errb)
	code := exitCode(err, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code, err: err}
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

func testAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// clearEnv unsets every configuration variable the process may have, for
// the duration of the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) || strings.HasPrefix(name, "MASTER_OPERATOR_") || name == "KUBERNETES_SERVICE_HOST" {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

// server is a serve command running in the background.
type serving struct {
	natsURL  string
	httpAddr string
	stderr   *lockedBuffer
}

// startServe sets env (names without the prefix) and runs serve until the
// test ends; the embedded NATS server listens on a free port. It waits for
// /readyz, and at cleanup cancels the context (what SIGTERM does) and
// checks that run returns nil.
func startServe(t *testing.T, env map[string]string) serving {
	t.Helper()
	clearEnv(t)
	s := serving{httpAddr: testAddr(t), stderr: &lockedBuffer{}}
	listen := testAddr(t)
	s.natsURL = "nats://" + listen
	base := map[string]string{
		"EMBEDDED_NATS_LISTEN": listen,
		"EMBEDDED_NATS_DIR":    t.TempDir(),
		"HTTP_ADDR":            s.httpAddr,
		"HEALTH_INTERVAL":      "1s",
		"LOG_LEVEL":            "debug",
	}
	for k, v := range env {
		base[k] = v
	}
	for k, v := range base {
		if strings.HasPrefix(k, "MASTER_OPERATOR_") {
			t.Setenv(k, v)
		} else {
			t.Setenv(envPrefix+k, v)
		}
	}
	if u := base["NATS_URL"]; u != "" {
		s.natsURL = u
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, os.Getenv, io.Discard, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v after cancel; want nil\n%s", err, s.stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("serve did not return within 20s of cancel")
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve ended early: %v\n%s", err, s.stderr.String())
		default:
		}
		if code, _ := httpGet("http://" + s.httpAddr + "/readyz"); code == http.StatusOK {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready within 15s\n%s", s.stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\n%s", r.code, code, r)
	}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func TestServeAndClientCommands(t *testing.T) {
	envFile := writeFile(t, "environments.yaml", `
- {id: env-a, name: "A", type: k8s}
- {id: env-off, name: "off", type: pm, active: false}
`)
	s := startServe(t, map[string]string{"USE_MOCK": "true", "ENVIRONMENTS_FILE": envFile})
	nats := "--nats=" + s.natsURL
	if strings.Contains(s.stderr.String(), "no environments") {
		t.Errorf("serve with two environments warned of none:\n%s", s.stderr.String())
	}

	t.Run("http", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if code, body := httpGet("http://" + s.httpAddr + path); code != http.StatusOK {
				t.Errorf("GET %s = %d %s", path, code, body)
			}
		}
		_, metrics := httpGet("http://" + s.httpAddr + "/metrics")
		wantContains(t, "/metrics", metrics, "go_goroutines")
	})

	t.Run("envs", func(t *testing.T) {
		r := runCmd(t, "envs", nats)
		wantCode(t, r, 0)
		wantContains(t, "envs", r.stdout, "ID", "ENDPOINT", "env-a", "env-off")
		r = runCmd(t, "envs", nats, "--json")
		wantCode(t, r, 0)
		var list []events.EnvironmentInfo
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
			t.Fatalf("envs --json: %v %v\n%s", err, list, r.stdout)
		}
	})

	t.Run("deploy", func(t *testing.T) {
		r := runCmd(t, "deploy", nats, "--env", "env-a", "--app", "web", "--version", "v2",
			"--deployments", "v2=20%,v1=0.8", "--package", `{"image":"web:v2"}`)
		wantCode(t, r, 0)
		wantContains(t, "deploy", r.stdout, "succeeded", "env-a", "mock")

		r = runCmd(t, "deploy", nats, "--env", "env-a", "--app", "api", "--version", "v1", "--json")
		wantCode(t, r, 0)
		var res events.DeployResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Outcome != events.Succeeded || res.App != "api" {
			t.Fatalf("deploy --json: %v %+v", err, res)
		}

		r = runCmd(t, "deploy", nats, "--env", "env-off", "--app", "web", "--version", "v3")
		wantCode(t, r, 1)
		wantContains(t, "deploy to an inactive environment", r.stdout, "rejected", "environment_inactive")

		r = runCmd(t, "deploy", nats, "--env", "env-nowhere", "--app", "web", "--version", "v3", "--json")
		wantCode(t, r, 1)
		wantContains(t, "deploy to an unknown environment", r.stdout, `"unknown_environment"`)

		r = runCmd(t, "deploy", nats, "--env", "env-a", "--app", "queue", "--version", "v4", "--no-wait")
		wantCode(t, r, 0)
		wantContains(t, "deploy --no-wait", r.stdout, "published request", "deploy.request.env-a")

		wantCode(t, runCmd(t, "deploy", nats, "--env", "env-a", "--version", "v1"), 2)
		wantCode(t, runCmd(t, "deploy", nats, "--env", "env-a", "--app", "x", "--version", "v1", "--deployments", "v0=1"), 2)
		wantCode(t, runCmd(t, "deploy", nats, "--env", "bad.env", "--app", "x", "--version", "v1"), 2)
	})

	t.Run("status", func(t *testing.T) {
		r := runCmd(t, "status", nats, "--env", "env-a", "--app", "web")
		wantCode(t, r, 0)
		wantContains(t, "status", r.stdout, "VERSION", "PERCENT", "NODES", "v2", "20%", "v1", "80%", "health 100")

		r = runCmd(t, "status", nats, "--env", "env-a", "--app", "web", "--json")
		wantCode(t, r, 0)
		var sr events.StatusResult
		if err := json.Unmarshal([]byte(r.stdout), &sr); err != nil || len(sr.Status.Versions) != 2 {
			t.Fatalf("status --json: %v %+v", err, sr)
		}

		r = runCmd(t, "status", nats, "--env", "env-off", "--app", "web")
		wantCode(t, r, 1)
		wantContains(t, "status of an inactive environment", r.stdout, "degraded")
	})

	t.Run("watch", func(t *testing.T) {
		r := runCmd(t, "watch", nats, "--from", "all", "--subjects", "deploy.result.>", "--count", "4", "--for", "10s")
		wantCode(t, r, 0)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 {
			t.Fatalf("watch --count 4 printed %d lines:\n%s", len(lines), r.stdout)
		}
		wantContains(t, "watch", r.stdout, "deploy", "env-a", "web v2", "succeeded", "rejected")

		r = runCmd(t, "watch", nats, "--from", "all", "--json", "--count", "3", "--for", "10s")
		wantCode(t, r, 0)
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var w struct {
				Stream  string          `json:"stream"`
				Seq     uint64          `json:"seq"`
				Subject string          `json:"subject"`
				Event   json.RawMessage `json:"event"`
			}
			if err := json.Unmarshal([]byte(line), &w); err != nil || w.Seq == 0 || w.Subject == "" || len(w.Event) == 0 {
				t.Errorf("watch --json line %q: %v", line, err)
			}
		}

		// From new, bounded by time: nothing but health events may come.
		r = runCmd(t, "watch", nats, "--subjects", "deploy.result.>", "--for", "300ms")
		wantCode(t, r, 0)
		if strings.TrimSpace(r.stdout) != "" {
			t.Errorf("watch from new printed old events:\n%s", r.stdout)
		}
		r = runCmd(t, "watch", nats, "--env", "env-a", "--from", "all", "--count", "2", "--for", "10s")
		wantCode(t, r, 0)
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if !strings.Contains(line, " env-a ") {
				t.Errorf("watch --env env-a printed another environment's event: %s", line)
			}
		}
		wantCode(t, runCmd(t, "watch", nats, "--from", "yesterday-ish"), 2)
		wantCode(t, runCmd(t, "watch", nats, "--subjects", "foo.>"), 2)
	})

	t.Run("bench", func(t *testing.T) {
		r := runCmd(t, "bench", nats, "--requests", "200", "--envs", "4", "--apps", "10", "--setup", "--json", "--progress", "off", "--dup-wait", "200ms")
		wantCode(t, r, 0)
		var sum load.Summary
		if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
			t.Fatalf("bench --json: %v\n%s", err, r.stdout)
		}
		if sum.Results != 200 || sum.Missing != 0 || sum.Duplicates != 0 || !sum.OK || sum.LatencyMS.P99 <= 0 {
			t.Fatalf("bench summary: %+v", sum)
		}
		r = runCmd(t, "envs", nats)
		wantContains(t, "envs after bench --setup", r.stdout, "bench-000", "bench-003")

		// Environments nobody registered: every request rejected, exit 1.
		r = runCmd(t, "bench", nats, "--requests", "20", "--envs", "2", "--env-prefix", "nobody-", "--progress", "off", "--dup-wait", "200ms")
		wantCode(t, r, 1)
		wantContains(t, "bench on unknown environments", r.stdout, "rejected 20", "every request got exactly one result")
	})

	t.Run("unreachable", func(t *testing.T) {
		r := runCmd(t, "status", "--nats", "nats://"+testAddr(t), "--env", "env-a", "--app", "web")
		wantCode(t, r, 3)
		wantContains(t, "stderr", r.stderr, "connect to NATS")
	})
}

func TestServeMasterOperatorAliases(t *testing.T) {
	k8s := operatortest.NewServer(operator.Kubernetes)
	defer k8s.Close()
	envFile := writeFile(t, "environments.json", `[{"id": "env-k", "type": "k8s"}]`)
	// MASTER_OPERATOR_USE_MOCK=true is overridden by the prefixed variable;
	// the K8s URL comes from its alias.
	s := startServe(t, map[string]string{
		"ENVIRONMENTS_FILE":                envFile,
		"MASTER_OPERATOR_K8S_OPERATOR_URL": k8s.URL,
		"MASTER_OPERATOR_USE_MOCK":         "true",
		"USE_MOCK":                         "false",
	})
	r := runCmd(t, "deploy", "--nats", s.natsURL, "--env", "env-k", "--app", "shop", "--version", "v7")
	wantCode(t, r, 0)
	wantContains(t, "deploy", r.stdout, "kubernetes")
	if got := k8s.Applied("shop"); len(got) != 1 || got[0] != "v7" {
		t.Fatalf("fake Kubernetes operator applied %v, want [v7]", got)
	}
	r = runCmd(t, "envs", "--nats", s.natsURL)
	wantContains(t, "envs", r.stdout, k8s.URL)
}

// startAuthServer runs a nats-server with JetStream that requires a user
// name and password.
func startAuthServer(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: "bridge", Password: "s3cret-pass"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

func TestServeWithPasswordAuth(t *testing.T) {
	url := startAuthServer(t)

	t.Run("right password", func(t *testing.T) {
		s := startServe(t, map[string]string{"NATS_URL": url, "NATS_USER": "bridge", "NATS_PASSWORD": "s3cret-pass", "USE_MOCK": "true"})
		r := runCmd(t, "envs", "--nats", url, "--user", "bridge", "--password", "s3cret-pass")
		wantCode(t, r, 0)
		r = runCmd(t, "deploy", "--nats", url, "--user", "bridge", "--password", "s3cret-pass", "--env", "nowhere", "--app", "a", "--version", "1")
		wantCode(t, r, 1) // rejected: unknown environment, but it went through
		wantContains(t, "deploy", r.stdout, "unknown_environment")
		// serve's variables are the clients' defaults: the test set them.
		r = runCmd(t, "envs", "--nats", url)
		wantCode(t, r, 0)
		r = runCmd(t, "envs", "--nats", url, "--user=", "--password=")
		wantCode(t, r, 1)
		wantContains(t, "envs without a password", r.stderr, "uthorization")
		if strings.Contains(s.stderr.String(), "s3cret-pass") {
			t.Error("serve logged the NATS password")
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		clearEnv(t)
		t.Setenv(envPrefix+"NATS_URL", url)
		t.Setenv(envPrefix+"NATS_USER", "bridge")
		t.Setenv(envPrefix+"NATS_PASSWORD", "wrong-pass")
		t.Setenv(envPrefix+"HTTP_ADDR", testAddr(t))
		r := runCmd(t, "serve")
		wantCode(t, r, 1)
		wantContains(t, "stderr", r.stderr, "connect to NATS", "uthorization")
		if strings.Contains(r.stderr, "wrong-pass") {
			t.Error("serve printed the NATS password")
		}
	})
}

func TestDemoOnce(t *testing.T) {
	clearEnv(t)
	r := runCmd(t, "demo", "--once", "--listen", "127.0.0.1:0")
	wantCode(t, r, 0)
	wantContains(t, "demo", r.stdout,
		"All 13 scripted steps got their expected outcome", "rollout converged", "rollout degraded",
		"unknown_environment", "environment_inactive", "invalid_data", "operator_rejected", "superseded",
		"stream ls", "micro ls", "operator-bridge.environments", "deploy.result.>")
	if strings.Contains(r.stdout, "NOT as expected") {
		t.Errorf("a demo step failed:\n%s", r.stdout)
	}
}

// contractVariables are the variables of docs/configuration.md.
var contractVariables = []string{
	"NATS_URL", "EMBEDDED_NATS_LISTEN", "EMBEDDED_NATS_DIR",
	"NATS_CREDS", "NATS_NKEY", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN",
	"NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY",
	"K8S_OPERATOR_URL", "PM_OPERATOR_URL", "USE_MOCK", "OPERATOR_TOKEN", "OPERATOR_TLS_CA",
	"ENVIRONMENTS_FILE", "ENVIRONMENTS_BUCKET", "MANAGE_STREAMS",
	"OPERATOR_TIMEOUT", "RETRY_WINDOW", "HEALTH_INTERVAL", "MAX_IN_FLIGHT", "HTTP_ADDR",
	"LOG_LEVEL", "LOG_FORMAT", "INSTANCE", "REPLICAS",
	"ROLLOUT_TIMEOUT", "ROLLOUT_POLL", "ROLLOUT_GRACE",
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "-h"}, {"help"}} {
		r := runCmd(t, args...)
		wantCode(t, r, 0)
		for _, v := range contractVariables {
			wantContains(t, strings.Join(args, " "), r.stdout, envPrefix+v)
		}
		wantContains(t, "help", r.stdout, "127.0.0.1:4222", "10m", "30s", "256", "127.0.0.1:8090", "MASTER_OPERATOR_K8S_OPERATOR_URL",
			"demo", "deploy", "status", "watch", "envs", "bench", "fake-operator", "version", "Exit codes")
	}
	for _, cmd := range []string{"deploy", "status", "watch", "envs", "bench", "demo", "fake-operator", "version"} {
		r := runCmd(t, cmd, "--help")
		wantCode(t, r, 0)
		wantContains(t, cmd+" --help", r.stdout, "Usage: operator-bridge "+cmd)
	}
	for _, cmd := range []string{"deploy", "status", "watch", "envs", "bench"} {
		wantContains(t, cmd+" --help", runCmd(t, cmd, "--help").stdout, "Exit codes", "--nats", "--user", "--password", "--creds", "--json")
	}
}

func TestVersion(t *testing.T) {
	r := runCmd(t, "version")
	wantCode(t, r, 0)
	wantContains(t, "version", r.stdout, "operator-bridge "+version)
}

func TestBadConfiguration(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"duration", map[string]string{"RETRY_WINDOW": "soon"}, nil, "OPERATOR_BRIDGE_RETRY_WINDOW"},
		{"bool", map[string]string{"MANAGE_STREAMS": "maybe"}, nil, "OPERATOR_BRIDGE_MANAGE_STREAMS"},
		{"log format", map[string]string{"LOG_FORMAT": "xml"}, nil, "LOG_FORMAT"},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, nil, "LOG_LEVEL"},
		{"max in flight", map[string]string{"MAX_IN_FLIGHT": "0"}, nil, "MAX_IN_FLIGHT"},
		{"no replicas", map[string]string{"REPLICAS": "0"}, nil, "OPERATOR_BRIDGE_REPLICAS: 0 is not between 1 and 5"},
		{"too many replicas", map[string]string{"REPLICAS": "7"}, nil, "OPERATOR_BRIDGE_REPLICAS: 7 is not between 1 and 5"},
		{"negative timeout", map[string]string{"OPERATOR_TIMEOUT": "-1s"}, nil, "OPERATOR_TIMEOUT"},
		{"zero rollout poll", map[string]string{"ROLLOUT_POLL": "0s"}, nil, "ROLLOUT_POLL"},
		{"rollout grace", map[string]string{"ROLLOUT_GRACE": "a while"}, nil, "OPERATOR_BRIDGE_ROLLOUT_GRACE"},
		{"operator url", map[string]string{"K8S_OPERATOR_URL": "ftp://nowhere"}, nil, "K8S_OPERATOR_URL"},
		{"alias", map[string]string{"MASTER_OPERATOR_USE_MOCK": "perhaps"}, nil, "MASTER_OPERATOR_USE_MOCK"},
		{"tls pair", map[string]string{"NATS_TLS_CERT": "/x.pem"}, nil, "NATS_TLS_KEY"},
		{"missing CA file", map[string]string{"OPERATOR_TLS_CA": "/nonexistent/ca.pem"}, nil, "ca.pem"},
		{"unknown command", nil, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"serve argument", nil, []string{"serve", "extra"}, "unexpected argument"},
		{"serve flag", nil, []string{"serve", "--bogus"}, "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			// Nothing may start: a port in use would show it.
			t.Setenv(envPrefix+"EMBEDDED_NATS_DIR", t.TempDir())
			t.Setenv(envPrefix+"EMBEDDED_NATS_LISTEN", testAddr(t))
			for k, v := range tt.env {
				if strings.HasPrefix(k, "MASTER_") {
					t.Setenv(k, v)
				} else {
					t.Setenv(envPrefix+k, v)
				}
			}
			args := tt.args
			if args == nil {
				args = []string{"serve"}
			}
			r := runCmd(t, args...)
			wantCode(t, r, 2)
			wantContains(t, "stderr", r.stderr, tt.want)
		})
	}
}

func TestSemver(t *testing.T) {
	for in, want := range map[string]string{
		"dev":                    "0.0.0-dev",
		"":                       "0.0.0-dev",
		"v1.2.3":                 "1.2.3",
		"1.2.3":                  "1.2.3",
		"v1.2.3-4-gabcdef":       "1.2.3-4-gabcdef",
		"v1.2.3-4-gabcdef-dirty": "1.2.3-4-gabcdef-dirty",
		"b211bdf":                "0.0.0-dev+b211bdf",
		"b211bdf-dirty":          "0.0.0-dev+b211bdf-dirty",
		"feature/x_y":            "0.0.0-dev+feature-x-y",
	} {
		if got := semver(in); got != want {
			t.Errorf("semver(%q) = %q, want %q", in, got, want)
		}
		if !semverRE.MatchString(semver(in)) {
			t.Errorf("semver(%q) = %q is not semver", in, semver(in))
		}
	}
}

func TestParseDeployments(t *testing.T) {
	got, err := parseDeployments("v2=20%, v1=0.8", "v2", `{"image":"x"}`)
	if err != nil || len(got) != 2 || got[0].Percent != 0.2 || got[1].Percent != 0.8 || string(got[0].Package) != `{"image":"x"}` || got[1].Package != nil {
		t.Fatalf("parseDeployments = %+v, %v", got, err)
	}
	if got, err := parseDeployments("", "v2", ""); err != nil || got != nil {
		t.Errorf("no deployments: %+v, %v", got, err)
	}
	if got, err := parseDeployments("", "v2", `{"a":1}`); err != nil || len(got) != 1 || got[0].Percent != 1 {
		t.Errorf("package alone: %+v, %v", got, err)
	}
	for _, bad := range [][3]string{{"v1=0.5", "v2", ""}, {"v2", "v2", ""}, {"v2=lots", "v2", ""}, {"", "v2", "[1]"}, {"v2=20,v1=80", "v2", ""}} {
		if _, err := parseDeployments(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("parseDeployments(%q, %q, %q) accepted", bad[0], bad[1], bad[2])
		}
	}
}

func TestParseFrom(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tests := map[string]events.WatchOptions{
		"new":                  {New: true},
		"all":                  {},
		"last":                 {LastPerSubject: true},
		"42":                   {StartSeq: 42},
		"15m":                  {StartTime: now.Add(-15 * time.Minute)},
		"2026-11-28T09:00:00Z": {StartTime: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)},
	}
	for in, want := range tests {
		got, err := parseFrom(in, now)
		if err != nil || got.New != want.New || got.LastPerSubject != want.LastPerSubject || got.StartSeq != want.StartSeq || !got.StartTime.Equal(want.StartTime) {
			t.Errorf("parseFrom(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if _, err := parseFrom("soonish", now); err == nil {
		t.Error("parseFrom accepted soonish")
	}
}

func TestFakeOperator(t *testing.T) {
	addr := testAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"fake-operator", "--kind", "pm", "--listen", addr, "--fail-times", "1", "--token", "tok", "--fencing"}, os.Getenv, io.Discard, &stderr)
	}()
	fence := "5"
	post := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/deploy",
			strings.NewReader(`{"app":"a","version":"v1","deployments":[{"version":"v1","percent":1}]}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Boreas-Fence", fence)
		req.Header.Set("Boreas-Request-Id", "req-"+fence)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for post("") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := post(""); got != http.StatusUnauthorized {
		t.Errorf("without token: %d, want 401", got)
	}
	if got := post("tok"); got != http.StatusServiceUnavailable {
		t.Errorf("first apply: %d, want 503 (--fail-times 1)", got)
	}
	if got := post("tok"); got != http.StatusOK {
		t.Errorf("second apply: %d, want 200", got)
	}
	fence = "4"
	if got := post("tok"); got != http.StatusConflict {
		t.Errorf("apply with an older fence: %d, want 409 (--fencing)", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("fake-operator returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fake-operator did not stop")
	}
	wantContains(t, "fake-operator log", stderr.String(), "/api/deploy", "503", "token required", "409", "req-4", "fencing")
	if strings.Contains(stderr.String(), `"tok"`) {
		t.Error("fake-operator logged its token")
	}
	wantContains(t, "fake-operator --help", runCmd(t, "fake-operator", "--help").stdout, "--fencing", "409 Conflict", "Boreas-Fence")
	if r := runCmd(t, "fake-operator", "--kind", "mock"); r.code != 2 {
		t.Errorf("--kind mock: exit %d, want 2", r.code)
	}
}

func TestExitCode(t *testing.T) {
	var b bytes.Buffer
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("boom"), 1},
		{usageError("bad"), 2},
		{withCode(exitTimeout, errors.New("slow")), 3},
		{withCode(exitFailed, nil), 1},
		{context.DeadlineExceeded, 1},
	} {
		if got := exitCode(tt.err, &b); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	clearEnv(t)
	httpAddr := testAddr(t)
	t.Setenv(envPrefix+"EMBEDDED_NATS_LISTEN", testAddr(t))
	t.Setenv(envPrefix+"EMBEDDED_NATS_DIR", t.TempDir())
	t.Setenv(envPrefix+"HTTP_ADDR", httpAddr)
	ctx, cancel := context.WithCancel(t.Context())
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, os.Getenv, io.Discard, &stderr) }() // no arguments: serve
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _ := httpGet("http://" + httpAddr + "/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready\n%s", stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	cancel() // what SIGINT and SIGTERM do through signal.NotifyContext
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if code, _ := httpGet("http://" + httpAddr + "/healthz"); code != 0 {
		t.Errorf("/healthz still answers %d after run returned", code)
	}
	wantContains(t, "log", stderr.String(), `"msg":"operator-bridge stopped"`, `"grace":"15s"`)
	// Started with no environments at all: one warning saying where they come from.
	if n := strings.Count(stderr.String(), `"msg":"no environments`); n != 1 {
		t.Errorf("%d warnings about no environments, want 1\n%s", n, stderr.String())
	}
	wantContains(t, "log", stderr.String(), "OPERATOR_BRIDGE_ENVIRONMENTS_FILE", `"environments_bucket":"environments"`)
}

func TestDemoRunsUntilCancelled(t *testing.T) {
	clearEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout lockedBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"demo", "--listen", "127.0.0.1:0"}, os.Getenv, &stdout, io.Discard) }()
	deadline := time.Now().Add(45 * time.Second)
	for !strings.Contains(stdout.String(), "Running until Ctrl-C") {
		select {
		case err := <-done:
			t.Fatalf("demo ended before Ctrl-C: %v\n%s", err, stdout.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not finish its script\n%s", stdout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo returned %v after Ctrl-C, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop after Ctrl-C")
	}
}

// Usage errors name what is wrong and the help that says more; none needs
// NATS.
func TestUsageMessages(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"deploy without app and version", []string{"deploy", "--env", "e"},
			[]string{"deploy: --app and --version are missing", "Run 'operator-bridge deploy --help'"}},
		{"deploy without env", []string{"deploy", "--app", "a", "--version", "v1"},
			[]string{"deploy: --env is missing (deploy needs --env, --app and --version)", "deploy --help"}},
		{"status without app", []string{"status", "--env", "e"},
			[]string{"status: --app is missing", "Run 'operator-bridge status --help'"}},
		{"bad flag", []string{"watch", "--bogus"}, []string{"bogus", "Run 'operator-bridge watch --help'"}},
		{"percent without %", []string{"deploy", "--env", "e", "--app", "a", "--version", "v1", "--deployments", "v1=20,v0=80"},
			[]string{`"v1=20": 20 is more than 1: write a percent as 20% or 0.2`}},
		{"version with a space", []string{"deploy", "--env", "e", "--app", "a", "--version", "v 1.0"},
			[]string{`deploy: version: "v 1.0" is not a valid version: 1–128 printable characters, no spaces`}},
		{"percents over 1", []string{"deploy", "--env", "e", "--app", "a", "--version", "v1", "--deployments", "v1=0.5,v0=60%"},
			[]string{"deploy: deployments: percents add up to 1.1, more than 1"}},
		{"typo", []string{"deploi"}, []string{`unknown command "deploi": did you mean "deploy"?`, "Run 'operator-bridge help'"}},
		{"typo of status", []string{"stauts"}, []string{`did you mean "status"?`}},
		{"typo of envs", []string{"env"}, []string{`did you mean "envs"?`}},
		{"bench without requests", []string{"bench", "--requests", "0"},
			[]string{"bench: requests, envs, apps and in-flight must be positive", "Run 'operator-bridge bench --help'"}},
		{"bench with an unknown mix", []string{"bench", "--mix", "bursty"}, []string{`bench: mix "bursty": want realistic or simple`}},
		{"bench with a bad process ID", []string{"bench", "--pids", "1,x"}, []string{`bench: --pids: "x" is not a process ID`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, tt.args...)
			wantCode(t, r, exitUsage)
			wantContains(t, "stderr", r.stderr, tt.stderr...)
		})
	}
	if r := runCmd(t, "xyzzy"); strings.Contains(r.stderr, "did you mean") {
		t.Errorf("xyzzy got a suggestion:\n%s", r.stderr)
	}
}

func TestHelpTexts(t *testing.T) {
	r := runCmd(t, "version", "--help")
	wantCode(t, r, 0)
	if strings.Contains(r.stdout, "Flags:") {
		t.Errorf("version --help prints a Flags section though version has no flags:\n%s", r.stdout)
	}
	r = runCmd(t, "watch", "--help")
	wantContains(t, "watch --help", r.stdout, "--from new|all|last|DURATION|TIME|SEQ", "--env ID")
	if strings.Contains(r.stdout, "--from duration") {
		t.Errorf("watch --from is labelled a duration:\n%s", r.stdout)
	}
}

// An address in use names the variable or flag that chose it and a way out.
func TestAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"ops HTTP", map[string]string{"HTTP_ADDR": addr}, []string{"serve"},
			[]string{"OPERATOR_BRIDGE_HTTP_ADDR=" + addr, "address already in use", "OPERATOR_BRIDGE_HTTP_ADDR=127.0.0.1:8091", "set it empty"}},
		{"embedded NATS", map[string]string{"EMBEDDED_NATS_LISTEN": addr}, []string{"serve"},
			[]string{"OPERATOR_BRIDGE_EMBEDDED_NATS_LISTEN=" + addr, "address already in use", "OPERATOR_BRIDGE_EMBEDDED_NATS_LISTEN=127.0.0.1:4333", "OPERATOR_BRIDGE_NATS_URL=nats://" + addr}},
		{"fake operator", nil, []string{"fake-operator", "--kind", "k8s", "--listen", addr},
			[]string{"--listen " + addr, "address already in use", "--listen 127.0.0.1:8083"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(envPrefix+"EMBEDDED_NATS_DIR", t.TempDir())
			t.Setenv(envPrefix+"EMBEDDED_NATS_LISTEN", testAddr(t))
			t.Setenv(envPrefix+"HTTP_ADDR", testAddr(t))
			for k, v := range tt.env {
				t.Setenv(envPrefix+k, v)
			}
			r := runCmd(t, tt.args...)
			wantCode(t, r, exitFailed)
			wantContains(t, "stderr", r.stderr, tt.want...)
			if strings.Contains(r.stderr, "embedded NATS server started") {
				t.Errorf("the embedded NATS server started before the addresses were checked:\n%s", r.stderr)
			}
		})
	}
}

// envs keeps its table narrow: a long health error is cut short there and
// shown in full with --wide and --json.
func TestEnvsHealthColumn(t *testing.T) {
	envFile := writeFile(t, "environments.yaml", "- {id: env-down, type: k8s, operator_url: \"http://"+testAddr(t)+"\"}\n")
	s := startServe(t, map[string]string{"ENVIRONMENTS_FILE": envFile})
	nats := "--nats=" + s.natsURL
	var full string
	deadline := time.Now().Add(15 * time.Second)
	for full == "" {
		r := runCmd(t, "envs", nats, "--json")
		wantCode(t, r, 0)
		var list []events.EnvironmentInfo
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 {
			t.Fatalf("envs --json: %v\n%s", err, r.stdout)
		}
		if h := list[0].Health; h != nil && !h.Healthy {
			full = h.Error
		} else if time.Now().After(deadline) {
			t.Fatalf("no failed health check within 15s: %+v", list[0])
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(full) <= healthWidth {
		t.Fatalf("the health error %q is too short to test the cut", full)
	}
	r := runCmd(t, "envs", nats)
	wantCode(t, r, 0)
	if strings.Contains(r.stdout, full) || !strings.Contains(r.stdout, shorten(full, healthWidth)) {
		t.Errorf("envs table does not cut the health error to %d characters:\n%s", healthWidth, r.stdout)
	}
	r = runCmd(t, "envs", nats, "--wide")
	wantCode(t, r, 0)
	wantContains(t, "envs --wide", r.stdout, full)
}

// The commands the demo suggests work as printed, however it was started.
func TestSelfCommand(t *testing.T) {
	tests := []struct {
		name, exe, onPath string
		atRepoRoot        bool
		want              string
	}{
		{"go run at the root", "/tmp/go-build2797/b001/exe/operator-bridge", "", true, "go run ./cmd/operator-bridge"},
		{"go run elsewhere", "/tmp/go-build2797/b001/exe/operator-bridge", "/home/u/go/bin/operator-bridge", false, "go run github.com/boreas/operator-bridge/cmd/operator-bridge"},
		{"installed", "/home/u/go/bin/operator-bridge", "/home/u/go/bin/operator-bridge", false, "operator-bridge"},
		{"make build", "/src/operator-bridge/bin/operator-bridge", "/home/u/go/bin/operator-bridge", true, "/src/operator-bridge/bin/operator-bridge"},
		{"nothing on the PATH", "/opt/ob/operator-bridge", "", false, "/opt/ob/operator-bridge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := selfCommandFor(tt.exe, tt.onPath, tt.atRepoRoot); got != tt.want {
				t.Errorf("selfCommandFor(%q, %q, %v) = %q, want %q", tt.exe, tt.onPath, tt.atRepoRoot, got, tt.want)
			}
		})
	}
}

// deploy to an operator that is down shows, as it waits, that the request
// is stored and retried, and what the bridge's health events say; Ctrl-C
// leaves the request queued, says how to follow it, and exits 130.
func TestDeployToADownOperator(t *testing.T) {
	envFile := writeFile(t, "environments.yaml", "- {id: env-down, type: k8s, operator_url: \"http://"+testAddr(t)+"\"}\n")
	s := startServe(t, map[string]string{"ENVIRONMENTS_FILE": envFile, "RETRY_WINDOW": "5m"})

	ctx, interrupt := context.WithCancel(t.Context())
	defer interrupt()
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"deploy", "--nats", s.natsURL, "--env", "env-down", "--app", "web", "--version", "v1",
			"--progress", "on", "--retry-window", "5m"}, os.Getenv, &stdout, &stderr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), "unhealthy") {
		select {
		case err := <-done:
			t.Fatalf("deploy ended before Ctrl-C: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress within 20s:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantContains(t, "progress", stderr.String(), "is stored (DEPLOY #", "the bridge retries it until", "retry window 5m0s",
		"operator kubernetes http://", "connection refused")
	interrupt() // Ctrl-C
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("deploy did not stop after Ctrl-C")
	}
	var errb bytes.Buffer
	if code := exitCode(err, &errb); code != exitInterrupted {
		t.Errorf("exit code %d after Ctrl-C, want %d: %v", code, exitInterrupted, err)
	}
	wantContains(t, "Ctrl-C message", errb.String(), "stays queued (DEPLOY #", "the bridge still applies it", "watch --env env-down")
	if strings.Contains(errb.String(), "within") {
		t.Errorf("Ctrl-C speaks of a timeout: %s", errb.String())
	}
}

// A request whose operator answers 503 for the whole retry window fails,
// and the result says how often the operator was called.
func TestDeployFailsAfterTheRetryWindow(t *testing.T) {
	k8s := operatortest.NewServer(operator.Kubernetes)
	defer k8s.Close()
	k8s.SetFault(operatortest.Fault{Always503: true})
	envFile := writeFile(t, "environments.yaml", "- {id: env-503, type: k8s, operator_url: \""+k8s.URL+"\"}\n")
	s := startServe(t, map[string]string{"ENVIRONMENTS_FILE": envFile, "RETRY_WINDOW": "3s"})
	r := runCmd(t, "deploy", "--nats", s.natsURL, "--env", "env-503", "--app", "web", "--version", "v1", "--json", "--progress", "on")
	wantCode(t, r, exitFailed)
	var res events.DeployResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	if res.Outcome != events.Failed || res.Error == nil || !res.Error.Retryable {
		t.Errorf("result %+v, want failed and retryable", res)
	}
	calls := 0
	for _, req := range k8s.Requests() {
		if req.Path == "/api/apply" {
			calls++
		}
	}
	if calls == 0 {
		t.Fatalf("the operator was never called")
	}
	if res.Attempts == 0 {
		t.Errorf("the failed result says attempts 0, though the operator was called %d times: %+v", calls, res)
	}
	if strings.Contains(r.stderr, "is stored") {
		t.Errorf("--json printed progress:\n%s", r.stderr)
	}
	r = runCmd(t, "deploy", "--nats", s.natsURL, "--env", "env-503", "--app", "web", "--version", "v2", "--progress", "off")
	wantCode(t, r, exitFailed)
	wantContains(t, "deploy", r.stdout, "failed", "operator_unavailable")
	if !regexp.MustCompile(`attempts +[1-9]`).MatchString(r.stdout) {
		t.Errorf("deploy does not show the result's attempts:\n%s", r.stdout)
	}
}

// With --per-path every first path segment is an operator of its own: the
// same app applied through two of them keeps two states.
func TestFakeOperatorPerPath(t *testing.T) {
	addr := testAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"fake-operator", "--kind", "k8s", "--listen", addr, "--per-path"}, os.Getenv, io.Discard, io.Discard)
	}()
	apply := func(env, version string) int {
		resp, err := http.Post("http://"+addr+"/"+env+"/api/apply", "application/json",
			strings.NewReader(`{"app":"a","version":"`+version+`","deployments":[{"version":"`+version+`","percent":1}]}`))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for apply("env-1", "v1") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := apply("env-2", "v2"); got != http.StatusOK {
		t.Fatalf("apply through env-2: %d", got)
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if s1, s2 := get("/env-1/api/status/a"), get("/env-2/api/status/a"); !strings.Contains(s1, `"v1"`) || strings.Contains(s1, `"v2"`) || !strings.Contains(s2, `"v2"`) {
		t.Errorf("statuses: env-1 %s, env-2 %s; want each its own version", s1, s2)
	}
	if got := get("/stats"); !strings.Contains(got, `"apply":2`) || !strings.Contains(got, `"status":2`) {
		t.Errorf("/stats = %s, want 2 applies and 2 status calls over both operators", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("fake-operator returned %v", err)
	}
}
