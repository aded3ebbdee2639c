package operator_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/operator"
)

var wantFileEnvs = []operator.Environment{
	{ID: "env-001", Name: "prod-k8s", Type: operator.Kubernetes, OperatorURL: "http://k8s-operator:8081"},
	{ID: "env-002", Name: "prod-pm", Type: operator.Physical, Inactive: true},
	{ID: "env_003", Type: operator.Mock},
}

func TestParseEnvironments(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"yaml object", `
environments:
  - {id: env-001, name: prod-k8s, type: kubernetes, operator_url: "http://k8s-operator:8081"}
  - {id: env-002, name: prod-pm, type: pm, active: false}
  - {id: env_003, type: mock}
`},
		{"yaml list", `
- id: env-001
  name: prod-k8s
  type: k8s
  operator_url: http://k8s-operator:8081
  active: true
- id: env-002
  name: prod-pm
  type: physical
  active: false
- id: env_003
  type: MOCK
  operator_url: null
`},
		{"json list", `[
  {"id": "env-001", "name": "prod-k8s", "type": "kubernetes", "operator_url": "http://k8s-operator:8081", "active": true},
  {"id": "env-002", "name": "prod-pm", "type": "pm", "active": false},
  {"id": "env_003", "type": "mock"}
]`},
		{"yaml flow list", `[{id: env-001, name: prod-k8s, type: k8s, operator_url: "http://k8s-operator:8081"},
  {id: env-002, name: prod-pm, type: pm, active: false}, {id: env_003, type: mock}]`},
		{"yaml flow object", `{environments: [{id: env-001, name: prod-k8s, type: k8s, operator_url: "http://k8s-operator:8081"},
  {id: env-002, name: prod-pm, type: pm, active: false}, {id: env_003, type: mock}]}`},
		{"json escapes and white space", "\n\t [" + `{"id": "env-\u0030\u00301", "name": "prod\u002dk8s", "type": "KUBERNETES", "operator_url": " http://k8s-operator:8081 "},
  {"id": "env-002", "name": "prod-pm", "type": "pm", "operator_url": null, "active": false},
  {"id": "env_003", "name": null, "type": "mock", "active": null}` + "]\r\n"},
		{"json object", `{"environments": [
  {"id": "env-001", "name": "prod-k8s", "type": "kubernetes", "operator_url": "http://k8s-operator:8081"},
  {"id": "env-002", "name": "prod-pm", "type": "pm", "active": false},
  {"id": "env_003", "type": "mock"}
]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := operator.ParseEnvironments([]byte(tt.data), "envs")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantFileEnvs, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEnvironmentsEmpty(t *testing.T) {
	for _, data := range []string{"", "# nothing\n", "[]", `{"environments": []}`, "environments:\n"} {
		got, err := operator.ParseEnvironments([]byte(data), "envs")
		if err != nil || len(got) != 0 {
			t.Errorf("ParseEnvironments(%q) = %v, %v; want none", data, got, err)
		}
	}
}

func TestLoadEnvironmentsFile(t *testing.T) {
	got, err := operator.LoadEnvironmentsFile(filepath.Join("testdata", "environments.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantFileEnvs, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	if _, err := operator.LoadEnvironmentsFile(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want it to name the file", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`[{"id": "a b", "type": "k8s"}]`), 0o600)
	if _, err := operator.LoadEnvironmentsFile(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": environments[0]") {
		t.Errorf("bad file: err = %v, want it to start with the file name", err)
	}
}

func TestParseEnvironmentsErrors(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		index int
		id    string
		field string
		msg   string
	}{
		{"duplicate id", `[{"id":"a","type":"k8s"},{"id":"b","type":"pm"},{"id":"a","type":"mock"}]`, 2, "a", "id", "duplicate id, already used by environments[0]"},
		{"bad id characters", `[{"id":"env.1","type":"k8s"}]`, 0, "env.1", "id", "is not 1–64 characters"},
		{"id too long", `[{"id":"` + strings.Repeat("x", 65) + `","type":"k8s"}]`, 0, strings.Repeat("x", 65), "id", "is not 1–64"},
		{"empty id", `[{"id":"","type":"k8s"}]`, 0, "", "id", "is not 1–64"},
		{"missing id", `[{"type":"k8s"}]`, 0, "", "id", "required"},
		{"id not a string", `[{"id":12,"type":"k8s"}]`, 0, "", "id", "must be a string, not 12"},
		{"unknown type", `[{"id":"e","type":"nomad"}]`, 0, "e", "type", `unknown operator type "nomad"`},
		{"missing type", `[{"id":"e"}]`, 0, "e", "type", "required"},
		{"url scheme", `[{"id":"e","type":"k8s","operator_url":"ftp://h"}]`, 0, "e", "operator_url", "scheme must be http or https"},
		{"url without host", `[{"id":"e","type":"k8s","operator_url":"http:///path"}]`, 0, "e", "operator_url", "no host"},
		{"url without scheme", `[{"id":"e","type":"pm","operator_url":"pm-op:8082"}]`, 0, "e", "operator_url", "scheme"},
		{"active not bool", `[{"id":"e","type":"k8s","active":"yes please"}]`, 0, "e", "active", "must be true or false"},
		{"unknown field", `[{"id":"e","type":"k8s","operator-url":"http://h"}]`, 0, "e", "operator-url", "unknown field"},
		{"not an object", `["env-1"]`, 0, "", "", "not a JSON object"},
		{"yaml entry", "environments:\n  - id: ok\n    type: k8s\n  - id: e2\n    type: docker\n", 1, "e2", "type", `"docker"`},
		{"yaml flow entry", "[{id: ok, type: k8s}, {id: e2, type: docker}]", 1, "e2", "type", `"docker"`},
		{"json object entry", `{"environments": [{"id":"ok","type":"k8s"},{"id":"e2","type":"docker"}]}`, 1, "e2", "type", `"docker"`},
		{"json null entry", `[{"id":"ok","type":"k8s"},null]`, 1, "", "", "not a JSON object"},
		{"json number among objects", `[{"id":"ok","type":"k8s"},{"id":"b","type":"pm"},7]`, 2, "", "", "not a JSON object"},
		{"json list entry", `[[{"id":"ok","type":"k8s"}]]`, 0, "", "", "not a JSON object"},
		{"json escaped id", `[{"id":"a\u0020b","type":"k8s"}]`, 0, "a b", "id", "is not 1–64 characters"},
		{"json name not a string", `[{"id":"e","type":"k8s","name":["x"]}]`, 0, "e", "name", `must be a string, not ["x"]`},
		{"json type not a string", `[{"id":"e","type":true}]`, 0, "e", "type", "must be a string, not true"},
		{"json active a string", `[{"id":"e","type":"k8s","active":"false"}]`, 0, "e", "active", `must be true or false, not "false"`},
		{"json key in capitals", `[{"id":"e","ID":"f","type":"k8s"}]`, 0, "e", "ID", "unknown field"},
		{"json duplicate after many", `[{"id":"a","type":"k8s"},{"id":"b","type":"k8s"},{"id":"c","type":"k8s"},{"id":"b","type":"pm"}]`, 3, "b", "id", "already used by environments[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := operator.ParseEnvironments([]byte(tt.data), "envs.yaml")
			var ee *operator.EnvironmentError
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v (%T), want a *EnvironmentError", err, err)
			}
			if ee.Source != "envs.yaml" || ee.Index != tt.index || ee.ID != tt.id || ee.Field != tt.field || !strings.Contains(ee.Message, tt.msg) {
				t.Errorf("got %+v, want index %d id %q field %q message containing %q", ee, tt.index, tt.id, tt.field, tt.msg)
			}
			s := err.Error()
			for _, part := range []string{"envs.yaml", "environments[", `field "` + tt.field + `"`} {
				if tt.field == "" && strings.HasPrefix(part, "field") {
					continue
				}
				if !strings.Contains(s, part) {
					t.Errorf("message %q does not name %s", s, part)
				}
			}
		})
	}
}

func TestParseEnvironmentsReportsEveryProblem(t *testing.T) {
	_, err := operator.ParseEnvironments([]byte(`[{"id":"a b","type":"x"},{"id":"ok","type":"k8s"},{"type":"pm"}]`), "f.json")
	want := []string{
		`f.json: environments[0] (id "a b"): field "id": "a b" is not 1–64 characters of A-Z a-z 0-9 _ -`,
		`f.json: environments[0] (id "a b"): field "type": unknown operator type "x" (want one of kubernetes, k8s, physical, pm, mock)`,
		`f.json: environments[2]: field "id": required`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseEnvironmentsDocumentErrors(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"scalar", `42`, "want a list"},
		{"unknown top-level", `{"envs": []}`, `unknown top-level field "envs"`},
		{"no list", `{"environments": 3}`, "not a list"},
		{"bad yaml", "- id: [unclosed", "neither YAML nor JSON: yaml: line 1"},
		{"json scalar entry list", `{"environments": {"id": "e"}}`, "not a list"},
		{"json missing comma", "[\n  {\"id\": \"a\", \"type\": \"k8s\"},\n  {\"id\": \"b\" \"type\": \"k8s\"}\n]",
			`neither YAML nor JSON: line 3, column 14: invalid character '"' after object key:value pair`},
		{"json unclosed", "  {\"environments\": [\n{\"id\": \"a\", \"type\": \"k8s\"}", "neither YAML nor JSON: line 2, column 26: unexpected end of JSON input"},
		{"json extra brace", `[{"id": "a", "type": "k8s"}}]`, "neither YAML nor JSON: line 1, column 28: invalid character '}' after array element"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := operator.ParseEnvironments([]byte(tt.data), "cfg/envs.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "cfg/envs.yaml: ") {
				t.Errorf("err = %v, want it to name the file and contain %q", err, tt.want)
			}
		})
	}
}

func TestParseEnvironment(t *testing.T) {
	got, err := operator.ParseEnvironment([]byte(`{"id":"env-001","name":"prod","type":"k8s","operator_url":"http://k8s:8081"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := operator.Environment{ID: "env-001", Name: "prod", Type: operator.Kubernetes, OperatorURL: "http://k8s:8081"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	_, err = operator.ParseEnvironment([]byte(`{"id":"env-001","type":"vm"}`))
	if err == nil || err.Error() != `environment "env-001": field "type": unknown operator type "vm" (want one of kubernetes, k8s, physical, pm, mock)` {
		t.Errorf("err = %v", err)
	}

	// UnmarshalJSON validates the same way and round-trips through MarshalJSON.
	var e operator.Environment
	if err := json.Unmarshal([]byte(`{"id":"x","type":"pm"}`), &e); err != nil || e.Type != operator.Physical || e.Inactive {
		t.Errorf("Unmarshal = %+v, %v", e, err)
	}
	data, _ := json.Marshal(e)
	var back operator.Environment
	if err := json.Unmarshal(data, &back); err != nil || back != e {
		t.Errorf("round trip of %s = %+v, %v", data, back, err)
	}
	if err := json.Unmarshal([]byte(`{"id":"x","type":"pm","active":1}`), &e); err == nil {
		t.Error("Unmarshal accepted active: 1")
	}
}

// The zero value of Environment is an active environment; records say
// "active" as files and buckets always have.
func TestEnvironmentActive(t *testing.T) {
	tests := []struct {
		name     string
		record   string
		inactive bool
		marshal  string
	}{
		{"absent", `{"id":"e","type":"k8s"}`, false, `{"id":"e","type":"kubernetes","active":true}`},
		{"true", `{"id":"e","type":"k8s","active":true}`, false, `{"id":"e","type":"kubernetes","active":true}`},
		{"false", `{"id":"e","type":"k8s","active":false}`, true, `{"id":"e","type":"kubernetes","active":false}`},
		{"null", `{"id":"e","type":"k8s","active":null}`, false, `{"id":"e","type":"kubernetes","active":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := operator.ParseEnvironment([]byte(tt.record))
			if err != nil {
				t.Fatal(err)
			}
			if env.Inactive != tt.inactive {
				t.Errorf("Inactive = %v, want %v", env.Inactive, tt.inactive)
			}
			data, err := json.Marshal(env)
			if err != nil || string(data) != tt.marshal {
				t.Errorf("Marshal = %s, %v; want %s", data, err, tt.marshal)
			}
		})
	}
	envs, err := operator.ParseEnvironments([]byte("- {id: a, type: mock, active: false}\n- {id: b, type: mock, active: true}\n"), "envs.yaml")
	if err != nil || len(envs) != 2 || !envs[0].Inactive || envs[1].Inactive {
		t.Errorf("YAML active: %+v, %v", envs, err)
	}

	// A literal made in Go, registered, is applied.
	m := operator.NewManager()
	m.RegisterOperator(operator.Environment{ID: "env-9", Type: operator.Mock}, operator.NewMockClient())
	if _, err := m.Apply(t.Context(), "env-9", operator.ApplyRequest{App: "a", Version: "v1"}); err != nil {
		t.Errorf("Apply to a literal environment: %v", err)
	}
	m.RegisterOperator(operator.Environment{ID: "env-9", Type: operator.Mock, Inactive: true}, operator.NewMockClient())
	if _, err := m.Apply(t.Context(), "env-9", operator.ApplyRequest{App: "a", Version: "v1"}); !errors.Is(err, operator.ErrEnvironmentInactive) {
		t.Errorf("Apply to an Inactive environment: %v, want ErrEnvironmentInactive", err)
	}
}
