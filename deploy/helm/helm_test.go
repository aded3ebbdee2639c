// Package helm_test keeps the operator-bridge chart honest: it renders the
// chart with helm, with its default values and with each ci/*-values.yaml,
// decodes every rendered object strictly into the Kubernetes API types (an
// unknown or misspelt field fails), and checks what the bridge needs of the
// objects: probes on the ops port, a restrictive security context, the
// environments file the bridge can parse, selectors that select the pods,
// references to Secrets and ConfigMaps that exist.
//
//	make helm-check                        # installs helm, lints, renders, runs this
//	HELM=/path/to/helm go test ./deploy/helm/
//
// Without helm (HELM unset, none on PATH or in GOPATH/bin) the test is
// skipped; `make test` installs helm first.
package helm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/boreas/operator-bridge/operator"
)

const chart = "operator-bridge"

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) the chart uses; other fields are errors.
type serviceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// rendered is one rendering of the chart, by kind.
type rendered struct {
	deployments []appsv1.Deployment
	configMaps  []corev1.ConfigMap
	secrets     []corev1.Secret
	services    []corev1.Service
	pdbs        []policyv1.PodDisruptionBudget
	policies    []networkingv1.NetworkPolicy
	monitors    []serviceMonitor
}

func helmPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HELM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	if p := filepath.Join(strings.Split(gopath, string(filepath.ListSeparator))[0], "bin", "helm"); fileExists(p) {
		return p
	}
	t.Skip("helm not found (HELM, PATH, GOPATH/bin): `make helm-check` installs it")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// helmTemplate renders the chart with the values files and --set pairs.
func helmTemplate(t *testing.T, helm string, values []string, set ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "bridge", chart, "--namespace", "deploy"}
	for _, v := range values {
		args = append(args, "--values", v)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(t.Context(), helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeStrict decodes one YAML object into v, failing on unknown fields.
func decodeStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func decodeAll(t *testing.T, out []byte) rendered {
	t.Helper()
	var r rendered
	for _, doc := range docSep.Split(string(out), -1) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		if meta.Kind == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				t.Errorf("an object without a kind:\n%s", doc)
			}
			continue
		}
		var err error
		switch gvk := meta.APIVersion + " " + meta.Kind; gvk {
		case "apps/v1 Deployment":
			err = decodeInto(doc, &r.deployments)
		case "v1 ConfigMap":
			err = decodeInto(doc, &r.configMaps)
		case "v1 Secret":
			err = decodeInto(doc, &r.secrets)
		case "v1 Service":
			err = decodeInto(doc, &r.services)
		case "policy/v1 PodDisruptionBudget":
			err = decodeInto(doc, &r.pdbs)
		case "networking.k8s.io/v1 NetworkPolicy":
			err = decodeInto(doc, &r.policies)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			err = decodeInto(doc, &r.monitors)
		default:
			t.Errorf("unexpected object %s", gvk)
		}
		if err != nil {
			t.Errorf("%s %s: %v\n%s", meta.APIVersion, meta.Kind, err, doc)
		}
	}
	return r
}

func decodeInto[T any](doc string, list *[]T) error {
	var v T
	if err := decodeStrict([]byte(doc), &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestChartRenders(t *testing.T) {
	helm := helmPath(t)
	ciValues, err := filepath.Glob(filepath.Join(chart, "ci", "*-values.yaml"))
	if err != nil || len(ciValues) == 0 {
		t.Fatalf("no ci values files: %v", err)
	}
	cases := [][]string{nil}
	for _, v := range ciValues {
		cases = append(cases, []string{v})
	}
	for _, values := range cases {
		name := "default values"
		if len(values) > 0 {
			name = filepath.Base(values[0])
		}
		t.Run(name, func(t *testing.T) {
			out, err := helmTemplate(t, helm, values)
			if err != nil {
				t.Fatal(err)
			}
			r := decodeAll(t, out)
			checkRendered(t, r, readValues(t, values))
		})
	}
}

// values is what the checks read of a values file.
type values struct {
	Nats struct {
		Auth struct {
			Method, ExistingSecret string
		}
		TLS struct {
			Enabled        bool
			ExistingSecret string
		}
	}
	Operator struct {
		TLSCA struct{ ExistingSecret string } `json:"tlsCA"`
		Token struct{ ExistingSecret string }
	}
	Environments struct{ List []map[string]any }
	Metrics      struct {
		ServiceMonitor struct{ Enabled bool } `json:"serviceMonitor"`
	}
	PodDisruptionBudget *struct{ Enabled *bool } `json:"podDisruptionBudget"`
}

func readValues(t *testing.T, files []string) values {
	t.Helper()
	var v values
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func checkRendered(t *testing.T, r rendered, v values) {
	t.Helper()
	if len(r.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(r.deployments))
	}
	d := r.deployments[0]
	pod := d.Spec.Template
	selects := func(what string, sel *metav1.LabelSelector) {
		t.Helper()
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() || !s.Matches(labels.Set(pod.Labels)) || !s.Matches(labels.Set(d.Spec.Selector.MatchLabels)) {
			t.Errorf("%s: selector %v does not select the pods %v (%v)", what, sel, pod.Labels, err)
		}
	}
	selects("Deployment", d.Spec.Selector)

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	spread := false
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if c.TopologyKey == "kubernetes.io/hostname" {
			spread = true
			selects("topologySpreadConstraints", c.LabelSelector)
		}
	}
	if a := pod.Spec.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		t.Errorf("no pod anti-affinity")
	} else {
		term := a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
		spread = spread || term.TopologyKey == "kubernetes.io/hostname"
		selects("podAntiAffinity", term.LabelSelector)
	}
	if !spread {
		t.Errorf("replicas not spread across nodes")
	}

	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context: %+v", psc)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("the service account token is mounted; the bridge does not call the Kubernetes API")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container security context: %+v", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: %+v", c.Resources)
	}

	// Every variable the chart sets is one the bridge reads (a misspelt one
	// would be ignored): docs/configuration.md names them all.
	docs, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("variable %s set twice", e.Name)
		}
		env[e.Name] = e
		if strings.HasPrefix(e.Name, "OPERATOR_BRIDGE_") && !bytes.Contains(docs, []byte("`"+e.Name+"`")) {
			t.Errorf("%s is not a variable of docs/configuration.md", e.Name)
		}
	}
	for name, want := range map[string]string{
		"OPERATOR_BRIDGE_HTTP_ADDR":         "0.0.0.0:8090",
		"OPERATOR_BRIDGE_REPLICAS":          "3",
		"OPERATOR_BRIDGE_ENVIRONMENTS_FILE": "/etc/operator-bridge/environments/environments.yaml",
	} {
		if got := env[name].Value; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if !strings.Contains(env["OPERATOR_BRIDGE_NATS_URL"].Value, "://") {
		t.Errorf("OPERATOR_BRIDGE_NATS_URL = %q: the bridge refuses to start in a pod without one", env["OPERATOR_BRIDGE_NATS_URL"].Value)
	}

	// The probes reach the ops port: /healthz for liveness, /readyz for readiness.
	var opsPort int32
	for _, p := range c.Ports {
		if p.Name == "ops" {
			opsPort = p.ContainerPort
		}
	}
	if opsPort != 8090 {
		t.Errorf("ops port %d, want 8090", opsPort)
	}
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"liveness", "/healthz", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "ops" {
			t.Errorf("%s probe: %+v, want GET %s on port ops", p.name, p.probe, p.path)
		}
	}

	// Every mount has its volume; every ConfigMap and Secret used is rendered
	// or one the values name as existing.
	vols := map[string]corev1.Volume{}
	for _, vol := range pod.Spec.Volumes {
		vols[vol.Name] = vol
	}
	mounted := map[string]string{} // file path -> volume
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("mount %s has no volume", m.Name)
		}
		mounted[m.MountPath] = m.Name
	}
	existingSecrets := map[string]bool{}
	for _, s := range []string{v.Nats.Auth.ExistingSecret, v.Operator.Token.ExistingSecret, v.Operator.TLSCA.ExistingSecret} {
		if s != "" {
			existingSecrets[s] = true
		}
	}
	if v.Nats.TLS.Enabled {
		existingSecrets[v.Nats.TLS.ExistingSecret] = true
	}
	secretKey := func(what, name, key string) {
		t.Helper()
		if existingSecrets[name] {
			return
		}
		for _, s := range r.secrets {
			if s.Name == name {
				if _, ok := s.StringData[key]; !ok {
					t.Errorf("%s: Secret %s has no key %s", what, name, key)
				}
				return
			}
		}
		t.Errorf("%s: Secret %s is neither rendered nor named in the values", what, name)
	}
	for _, vol := range pod.Spec.Volumes {
		switch {
		case vol.ConfigMap != nil:
			if !slices.ContainsFunc(r.configMaps, func(cm corev1.ConfigMap) bool { return cm.Name == vol.ConfigMap.Name }) {
				t.Errorf("volume %s: ConfigMap %s not rendered", vol.Name, vol.ConfigMap.Name)
			}
		case vol.Secret != nil:
			for _, item := range vol.Secret.Items {
				secretKey("volume "+vol.Name, vol.Secret.SecretName, item.Key)
			}
			if len(vol.Secret.Items) == 0 && !existingSecrets[vol.Secret.SecretName] {
				t.Errorf("volume %s: Secret %s not named in the values", vol.Name, vol.Secret.SecretName)
			}
		case vol.EmptyDir != nil:
		default:
			t.Errorf("volume %s: unexpected source", vol.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secretKey(e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		}
		// A file the bridge reads lies in a mounted volume.
		if strings.HasPrefix(e.Value, "/etc/operator-bridge/") {
			if _, ok := mounted[filepath.Dir(e.Value)]; !ok {
				t.Errorf("%s=%s: no volume mounted at %s", e.Name, e.Value, filepath.Dir(e.Value))
			}
		}
	}
	switch v.Nats.Auth.Method {
	case "creds":
		if env["OPERATOR_BRIDGE_NATS_CREDS"].Value == "" {
			t.Errorf("creds: OPERATOR_BRIDGE_NATS_CREDS not set")
		}
	case "userPassword":
		if env["OPERATOR_BRIDGE_NATS_USER"].Value == "" || env["OPERATOR_BRIDGE_NATS_PASSWORD"].ValueFrom == nil {
			t.Errorf("userPassword: user or password missing")
		}
	case "token":
		if env["OPERATOR_BRIDGE_NATS_TOKEN"].ValueFrom == nil {
			t.Errorf("token: OPERATOR_BRIDGE_NATS_TOKEN not from a Secret")
		}
	}
	for _, s := range r.secrets {
		if len(s.Data) > 0 {
			t.Errorf("Secret %s: data, want stringData", s.Name)
		}
	}

	// The environments file is one the bridge reads.
	if len(r.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(r.configMaps))
	}
	envs, err := operator.ParseEnvironments([]byte(r.configMaps[0].Data["environments.yaml"]), "environments.yaml")
	if err != nil || len(envs) != len(v.Environments.List) {
		t.Errorf("environments.yaml: %d environments, %v; want %d\n%s", len(envs), err, len(v.Environments.List), r.configMaps[0].Data["environments.yaml"])
	}

	wantPDB := v.PodDisruptionBudget == nil || v.PodDisruptionBudget.Enabled == nil || *v.PodDisruptionBudget.Enabled
	if got := len(r.pdbs); got != map[bool]int{true: 1}[wantPDB] {
		t.Errorf("%d PodDisruptionBudgets, want %v", got, wantPDB)
	}
	for _, p := range r.pdbs {
		selects("PodDisruptionBudget", p.Spec.Selector)
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() < 1 {
			t.Errorf("PodDisruptionBudget minAvailable %v", p.Spec.MinAvailable)
		}
	}

	if len(r.services) != 1 {
		t.Fatalf("%d Services, want 1 (metrics)", len(r.services))
	}
	svc := r.services[0]
	selects("metrics Service", &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "ops" || svc.Spec.Ports[0].TargetPort.String() != "ops" {
		t.Errorf("metrics Service ports: %+v", svc.Spec.Ports)
	}

	if got := len(r.monitors); got != map[bool]int{true: 1}[v.Metrics.ServiceMonitor.Enabled] {
		t.Errorf("%d ServiceMonitors, want one only when enabled (%v)", got, v.Metrics.ServiceMonitor.Enabled)
	}
	for _, m := range r.monitors {
		s, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		if err != nil || !s.Matches(labels.Set(svc.Labels)) {
			t.Errorf("ServiceMonitor selector %v does not select the metrics Service %v", m.Spec.Selector, svc.Labels)
		}
		if len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != "ops" || m.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints: %+v", m.Spec.Endpoints)
		}
	}

	if len(r.policies) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1", len(r.policies))
	}
	np := r.policies[0]
	selects("NetworkPolicy", &np.Spec.PodSelector)
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.String() != "ops" {
		t.Errorf("NetworkPolicy ingress: %+v, want the ops port only", np.Spec.Ingress)
	}
}

// Values that cannot work stop the rendering with a message saying why.
func TestChartRefusesBadValues(t *testing.T) {
	helm := helmPath(t)
	tests := []struct {
		name string
		set  []string
		want string
	}{
		{"no NATS URL", []string{"nats.url="}, "nats.url is required"},
		{"unknown auth method", []string{"nats.auth.method=kerberos"}, `nats.auth.method "kerberos"`},
		{"password missing", []string{"nats.auth.method=userPassword", "nats.auth.user=bridge"}, "nats.auth.password is required"},
		{"user missing", []string{"nats.auth.method=userPassword", "nats.auth.password=p"}, "nats.auth.user is required"},
		{"creds missing", []string{"nats.auth.method=creds"}, "nats.auth.creds is required"},
		{"TLS without a Secret", []string{"nats.tls.enabled=true"}, "nats.tls.enabled needs nats.tls.existingSecret"},
		{"certificate without key", []string{"nats.tls.enabled=true", "nats.tls.existingSecret=s", "nats.tls.certKey=tls.crt"}, "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := helmTemplate(t, helm, nil, tt.set...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// The decoding is strict: a misspelt field fails.
func TestDecodeStrict(t *testing.T) {
	var d appsv1.Deployment
	err := decodeStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n"), &d)
	if err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("err = %v, want an unknown field", err)
	}
	var sm serviceMonitor
	err = decodeStrict([]byte("apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nspec:\n  endpoints: [{port: ops, honorLabels: true}]\n"), &sm)
	if err == nil {
		t.Errorf("a ServiceMonitor field the chart does not use decoded")
	}
}
