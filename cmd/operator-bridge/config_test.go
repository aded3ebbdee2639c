package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// printedConfig runs serve --print-config with args and returns, by
// variable, the value and where it came from.
func printedConfig(t *testing.T, args ...string) map[string][2]string {
	t.Helper()
	r := runCmd(t, append([]string{"serve", "--print-config"}, args...)...)
	wantCode(t, r, 0)
	got := map[string][2]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], envPrefix) {
			continue
		}
		got[f[0]] = [2]string{f[2], strings.Join(f[3:], " ")}
	}
	if len(got) != len(configFields()) {
		t.Fatalf("--print-config printed %d settings, want %d:\n%s", len(got), len(configFields()), r.stdout)
	}
	return got
}

func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		if strings.HasPrefix(k, "MASTER_") || k == "KUBERNETES_SERVICE_HOST" {
			t.Setenv(k, v)
		} else {
			t.Setenv(envPrefix+k, v)
		}
	}
}

// The seed's file, with the bridge's own sections: variables win over the
// file, aliases over the file too, the file over the defaults.
func TestConfigFilePrecedence(t *testing.T) {
	file := writeFile(t, "bridge.yaml", `# the original client's section
operator:
  k8s_operator_url: "http://k8s-from-file:8081"
  pm_operator_url: "http://pm-from-file:8082"
  use_mock: true
  timeout: 3s
nats:
  url: nats://nats-from-file:4222
  user: bridge
  password: file-secret
environments:
  bucket: ""
bridge:
  max_in_flight: 64
  instance:
http:
  addr: 0.0.0.0:8090
  pprof: true
log:
  format: json
`)
	const host = "host"
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want map[string][2]string
	}{
		{"file only", map[string]string{"INSTANCE": host}, []string{"--config", file}, map[string][2]string{
			"K8S_OPERATOR_URL":    {"http://k8s-from-file:8081", "file " + file + ":3"},
			"PM_OPERATOR_URL":     {"http://pm-from-file:8082", "file " + file + ":4"},
			"USE_MOCK":            {"true", "file " + file + ":5"},
			"OPERATOR_TIMEOUT":    {"3s", "file " + file + ":6"},
			"NATS_URL":            {"nats://nats-from-file:4222", "file " + file + ":8"},
			"NATS_PASSWORD":       {"(redacted)", "file " + file + ":10"},
			"ENVIRONMENTS_BUCKET": {"(empty)", "file " + file + ":12"},
			"MAX_IN_FLIGHT":       {"64", "file " + file + ":14"},
			"INSTANCE":            {host, "variable"},
			"HTTP_ADDR":           {"0.0.0.0:8090", "file " + file + ":17"},
			"PPROF":               {"true", "file " + file + ":18"},
			"RETRY_WINDOW":        {"10m", "default"},
		}},
		{"variables and aliases win", map[string]string{
			"K8S_OPERATOR_URL":                "http://k8s-from-env:1",
			"MASTER_OPERATOR_PM_OPERATOR_URL": "http://pm-from-alias:2",
			"MASTER_OPERATOR_USE_MOCK":        "true",
			"USE_MOCK":                        "false",
			"MAX_IN_FLIGHT":                   "8",
			"CONFIG":                          file,
		}, nil, map[string][2]string{
			"K8S_OPERATOR_URL": {"http://k8s-from-env:1", "variable"},
			"PM_OPERATOR_URL":  {"http://pm-from-alias:2", "alias MASTER_OPERATOR_PM_OPERATOR_URL"},
			"USE_MOCK":         {"false", "variable"},
			"MAX_IN_FLIGHT":    {"8", "variable"},
			"OPERATOR_TIMEOUT": {"3s", "file " + file + ":6"},
		}},
		{"--config wins over CONFIG", map[string]string{"CONFIG": "/nonexistent.yaml"}, []string{"--config=" + file}, map[string][2]string{
			"MAX_IN_FLIGHT": {"64", "file " + file + ":14"},
		}},
		{"no file", nil, nil, map[string][2]string{
			"K8S_OPERATOR_URL":    {"http://localhost:8081", "default"},
			"ENVIRONMENTS_BUCKET": {"environments", "default"},
			"HTTP_ADDR":           {"127.0.0.1:8090", "default"},
			"PPROF":               {"false", "default"},
			"MANAGE_STREAMS":      {"true", "default"},
		}},
		{"empty variable turns the bucket off", map[string]string{"ENVIRONMENTS_BUCKET": "", "MAX_IN_FLIGHT": ""}, nil, map[string][2]string{
			"ENVIRONMENTS_BUCKET": {"(empty)", "variable"},
			"MAX_IN_FLIGHT":       {"256", "default"},
		}},
		{"unprefixed names are not ours", map[string]string{"HTTP_ADDR_UNUSED": "x"}, nil, map[string][2]string{
			"HTTP_ADDR": {"127.0.0.1:8090", "default"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("HTTP_ADDR", "0.0.0.0:1") // not a variable of ours
			setEnv(t, tt.env)
			all := printedConfig(t, tt.args...)
			got := map[string][2]string{}
			for k := range tt.want {
				got[k] = all[envPrefix+k]
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// --print-config never shows a secret.
func TestPrintConfigRedacts(t *testing.T) {
	clearEnv(t)
	setEnv(t, map[string]string{
		"NATS_URL":       "nats://alice:url-secret@nats:4222,nats://nats-2:4222",
		"NATS_USER":      "alice",
		"NATS_PASSWORD":  "password-secret",
		"NATS_TOKEN":     "token-secret",
		"OPERATOR_TOKEN": "operator-secret",
	})
	r := runCmd(t, "serve", "--print-config")
	wantCode(t, r, 0)
	for _, secret := range []string{"url-secret", "password-secret", "token-secret", "operator-secret"} {
		if strings.Contains(r.stdout, secret) {
			t.Errorf("--print-config shows %q:\n%s", secret, r.stdout)
		}
	}
	wantContains(t, "--print-config", r.stdout, "nats://nats:4222,nats://nats-2:4222", "alice", "(redacted)")
}

// Every configuration error exits 2 before anything starts, naming the
// variable, or the file, line and key.
func TestConfigErrors(t *testing.T) {
	envFile := writeFile(t, "environments.yaml", "- {id: env-a, name: A, type: k8s}\n- {id: env-b, name: B, type: spaceship}\n")
	tests := []struct {
		name string
		env  map[string]string
		file string // the configuration file's content; --config names it bridge.yaml
		want []string
		not  []string
	}{
		{name: "duration without unit", env: map[string]string{"OPERATOR_TIMEOUT": "10"},
			want: []string{`OPERATOR_BRIDGE_OPERATOR_TIMEOUT: "10" is not a duration (write 10s)`}, not: []string{"envconfig", "time.Duration"}},
		{name: "duration", env: map[string]string{"RETRY_WINDOW": "soon"},
			want: []string{`OPERATOR_BRIDGE_RETRY_WINDOW: "soon" is not a duration (write it like 10s, 5m or 1h30m)`}},
		{name: "bool", env: map[string]string{"PPROF": "yes please"}, want: []string{`OPERATOR_BRIDGE_PPROF: "yes please" is not true or false`}},
		{name: "int", env: map[string]string{"MAX_IN_FLIGHT": "lots"}, want: []string{`OPERATOR_BRIDGE_MAX_IN_FLIGHT: "lots" is not a whole number`}},
		{name: "every problem at once", env: map[string]string{"MAX_IN_FLIGHT": "-1", "LOG_LEVEL": "loud", "HTTP_ADDR": "8090"},
			want: []string{"OPERATOR_BRIDGE_MAX_IN_FLIGHT: -1 is not positive", `OPERATOR_BRIDGE_LOG_LEVEL: "loud": want debug`, `OPERATOR_BRIDGE_HTTP_ADDR: "8090" is not host:port`}},
		{name: "file: bad duration", file: "operator:\n  use_mock: true\n  timeout: 10\n",
			want: []string{`bridge.yaml:3: operator.timeout: "10" is not a duration (write 10s)`}},
		{name: "file: bad bool", file: "operator:\n  use_mock: maybe\n", want: []string{`bridge.yaml:2: operator.use_mock: "maybe" is not true or false`}},
		{name: "file: unknown key", file: "nats:\n  url: nats://x:4222\n  urls: nats://y:4222\n",
			want: []string{"bridge.yaml:3: nats.urls: unknown key (nats has url, "}},
		{name: "file: unknown section", file: "operator:\n  use_mock: true\nserver:\n  port: 8080\n",
			want: []string{"bridge.yaml:3: server: unknown section (known: bridge, environments, http, jetstream, log, nats, operator)"}},
		{name: "file: twice", file: "log:\n  level: debug\n  level: info\n", want: []string{"bridge.yaml:3: log.level: key given twice (first on line 2)"}},
		{name: "file: list", file: "nats:\n  url: [a, b]\n", want: []string{"bridge.yaml:2: nats.url: want a single value, not a list"}},
		{name: "file: not sections", file: "- operator\n", want: []string{"bridge.yaml:1: want sections"}},
		{name: "file: not YAML", file: "operator:\n  use_mock: true\n bad indent: x\n", want: []string{"bridge.yaml: not YAML: line"}},
		{name: "file and variables: every problem", env: map[string]string{"HEALTH_INTERVAL": "5"}, file: "nats:\n  urls: x\noperator:\n  use_mock: maybe\n",
			want: []string{"bridge.yaml:2: nats.urls: unknown key", `bridge.yaml:4: operator.use_mock: "maybe" is not true or false`, `OPERATOR_BRIDGE_HEALTH_INTERVAL: "5" is not a duration (write 5s)`}},
		{name: "file: semantic check names the line", file: "bridge:\n  max_in_flight: 0\n", want: []string{"bridge.yaml:2: bridge.max_in_flight: 0 is not positive"}},
		{name: "file: bad operator URL", file: "operator:\n  k8s_operator_url: k8s:8081\n", want: []string{"bridge.yaml:2: operator.k8s_operator_url: invalid operator URL"}},
		{name: "file missing", env: map[string]string{"CONFIG": "/nonexistent/bridge.yaml"}, want: []string{"configuration file: open /nonexistent/bridge.yaml"}},
		{name: "environments file", env: map[string]string{"ENVIRONMENTS_FILE": envFile},
			want: []string{"OPERATOR_BRIDGE_ENVIRONMENTS_FILE: ", "spaceship"}},
		{name: "environments file from the file", file: "environments:\n  file: /nonexistent/environments.yaml\n",
			want: []string{"bridge.yaml:2: environments.file: environments file: open /nonexistent/environments.yaml"}},
		{name: "nats credentials", env: map[string]string{"NATS_URL": "nats://127.0.0.1:1", "NATS_CREDS": "/nonexistent/bridge.creds"},
			want: []string{"nats credentials", "bridge.creds"}},
		{name: "kubernetes pod without NATS", env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
			want: []string{"OPERATOR_BRIDGE_NATS_URL: empty in a Kubernetes pod (KUBERNETES_SERVICE_HOST is set)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			// Nothing may start: the embedded server would make its store.
			store := filepath.Join(t.TempDir(), "jetstream")
			setEnv(t, map[string]string{"EMBEDDED_NATS_DIR": store, "EMBEDDED_NATS_LISTEN": testAddr(t), "HTTP_ADDR": testAddr(t)})
			setEnv(t, tt.env)
			args := []string{"serve"}
			if tt.file != "" {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "bridge.yaml"), []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				t.Chdir(dir)
				args = append(args, "--config", "bridge.yaml")
			}
			for _, a := range [][]string{args, append(args, "--print-config")} {
				r := runCmd(t, a...)
				wantCode(t, r, exitUsage)
				wantContains(t, "stderr", r.stderr, tt.want...)
				for _, s := range tt.not {
					if strings.Contains(r.stderr, s) {
						t.Errorf("stderr contains %q:\n%s", s, r.stderr)
					}
				}
			}
			if _, err := os.Stat(store); !os.IsNotExist(err) {
				t.Errorf("the embedded NATS server's store was made (%v): serve started something", err)
			}
		})
	}
}

// In a Kubernetes pod a NATS URL from the file is enough.
func TestKubernetesWithNATSURL(t *testing.T) {
	clearEnv(t)
	setEnv(t, map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
	file := writeFile(t, "bridge.yaml", "nats:\n  url: nats://nats:4222\n")
	got := printedConfig(t, "--config", file)
	if got[envPrefix+"NATS_URL"][0] != "nats://nats:4222" {
		t.Errorf("NATS_URL = %v", got[envPrefix+"NATS_URL"])
	}
}

func TestParseConfigFile(t *testing.T) {
	fields := configFields()
	tests := []struct {
		name string
		data string
		want map[string]fileValue
	}{
		{"empty", "", map[string]fileValue{}},
		{"only comments", "# nothing\n", map[string]fileValue{}},
		{"empty section", "operator:\nnats:\n", map[string]fileValue{}},
		{"no value keeps the default", "nats:\n  url:\n  user: ~\n", map[string]fileValue{}},
		{"seed's section", "operator:\n  k8s_operator_url: \"http://k8s:8081\"\n  pm_operator_url: http://pm:8082\n  use_mock: false  # a comment\n",
			map[string]fileValue{
				"operator.k8s_operator_url": {"http://k8s:8081", 2},
				"operator.pm_operator_url":  {"http://pm:8082", 3},
				"operator.use_mock":         {"false", 4},
			}},
		{"numbers are text", "bridge:\n  max_in_flight: 64\n  retry_window: 5m\n", map[string]fileValue{
			"bridge.max_in_flight": {"64", 2},
			"bridge.retry_window":  {"5m", 3},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfigFile([]byte(tt.data), "f.yaml", fields)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(fileValue{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// Every setting has a variable of ours, a file key in a section, and a
// reader for its type; every key is unique.
func TestConfigFields(t *testing.T) {
	keys := map[string]bool{}
	for _, f := range configFields() {
		if !strings.HasPrefix(f.env, envPrefix) || f.desc == "" {
			t.Errorf("%s: variable or description missing", f.env)
		}
		section, key, ok := strings.Cut(f.key, ".")
		if !ok || section == "" || key == "" || strings.Contains(key, ".") || keys[f.key] {
			t.Errorf("%s: file key %q is not a unique section.key", f.env, f.key)
		}
		keys[f.key] = true
		if f.def == "" && f.typ.Kind() != reflect.String {
			t.Errorf("%s: a %s needs a default", f.env, f.typ)
		}
	}
	cfg, err := loadServeConfig("", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RetryWindow != 10*time.Minute || cfg.EmbeddedNATSDir == "" || cfg.Instance == "" || !cfg.ManageStreams {
		t.Errorf("defaults: %+v", cfg)
	}
}

// serve runs from a configuration file; on its embedded default it says so
// in its first log line and on /readyz.
func TestServeFromConfigFile(t *testing.T) {
	file := writeFile(t, "bridge.yaml", "operator:\n  use_mock: true\nhttp:\n  pprof: true\nlog:\n  format: json\n")
	s := startServe(t, map[string]string{"CONFIG": file})
	first, _, _ := strings.Cut(s.stderr.String(), "\n")
	wantContains(t, "first log line", first, `"level":"INFO"`, "embedded NATS server started (OPERATOR_BRIDGE_NATS_URL is empty)")
	code, body := httpGet("http://" + s.httpAddr + "/readyz")
	if code != 200 {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	wantContains(t, "/readyz", body, "ready\n", "embedded NATS server at "+s.natsURL)
	if code, _ := httpGet("http://" + s.httpAddr + "/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/ = %d with http.pprof: true in the file", code)
	}
	wantContains(t, "log", s.stderr.String(), `"use_mock":true`)
}
