package bridge_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

type healthLog struct {
	mu  sync.Mutex
	all []events.Health
}

func (h *healthLog) of(env string) []events.Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []events.Health
	for _, e := range h.all {
		if e.Environment == env {
			out = append(out, e)
		}
	}
	return out
}

func (w *world) watchHealth() *healthLog {
	h := &healthLog{}
	if _, err := w.nc.Subscribe("operator.health.>", func(m *nats.Msg) {
		ev, d, err := events.DecodeHealth(m.Header, m.Data)
		if err != nil {
			w.t.Errorf("undecodable health: %v", err)
			return
		}
		if ev.Subject() != d.Environment || m.Subject != "operator.health."+d.Environment {
			w.t.Errorf("health of %s on %s with subject %s", d.Environment, m.Subject, ev.Subject())
		}
		h.mu.Lock()
		h.all = append(h.all, d)
		h.mu.Unlock()
	}); err != nil {
		w.t.Fatal(err)
	}
	return h
}

func TestHealthEvents(t *testing.T) {
	w := newWorld(t)
	h := w.watchHealth()
	w.startBridge(func(o *bridgeOpts) { o.cfg.HealthInterval = 300 * time.Millisecond })

	w.eventually(5*time.Second, "two rounds of health", func() bool { return len(h.of("env-k8s")) >= 2 })
	first := h.of("env-k8s")
	if !first[0].Changed || !first[0].Healthy || first[1].Changed || first[0].Operator != "kubernetes" || first[0].Endpoint != w.k8s.URL {
		t.Fatalf("first events = %+v", first[:2])
	}
	mock := h.of("env-mock")
	if len(mock) == 0 || mock[0].Operator != "mock" || mock[0].Endpoint != "mock" || !mock[0].Healthy {
		t.Fatalf("mock health = %+v", mock)
	}
	if off := h.of("env-off"); len(off) != 0 {
		t.Fatalf("inactive environment reported: %+v", off)
	}
	// Environments sharing an endpoint share one check.
	k2 := h.of("env-k8s-2")
	if len(k2) == 0 || !k2[0].CheckedAt.Equal(first[0].CheckedAt) {
		t.Fatalf("env-k8s-2 checked apart from env-k8s: %+v vs %+v", k2, first[0])
	}

	w.k8s.SetFault(operatortest.Fault{HealthDown: true})
	w.eventually(5*time.Second, "an unhealthy change", func() bool {
		for _, e := range h.of("env-k8s") {
			if !e.Healthy && e.Changed {
				return true
			}
		}
		return false
	})
	for _, e := range h.of("env-k8s") {
		if !e.Healthy && (e.Error == "" || e.ConsecutiveFailures < 1) {
			t.Fatalf("unhealthy event without error or count: %+v", e)
		}
		// One failed check opens the endpoint's circuit.
		if !e.Healthy && e.Circuit != "open" {
			t.Fatalf("unhealthy event with the circuit %q, want open: %+v", e.Circuit, e)
		}
	}
	w.k8s.SetFault(operatortest.Fault{})
	w.eventually(5*time.Second, "healthy again", func() bool {
		evs := h.of("env-k8s")
		last := evs[len(evs)-1]
		return last.Healthy && last.ConsecutiveFailures == 0 && last.Circuit == "closed"
	})

	// The last health of each environment is in the environments reply and
	// is the last message on its HEALTH subject.
	stream, err := w.js.Stream(t.Context(), events.StreamHealth)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(t.Context(), "operator.health.env-pm")
	if err != nil {
		t.Fatal(err)
	}
	if _, d, err := events.DecodeHealth(m.Header, m.Data); err != nil || d.Environment != "env-pm" {
		t.Fatalf("last health of env-pm: %+v %v", d, err)
	}
	// Credentials never leave in the endpoint.
	for _, e := range h.of("env-pm") {
		if strings.Contains(e.Endpoint, "@") {
			t.Fatalf("endpoint with credentials: %s", e.Endpoint)
		}
	}
}

func TestEnvironmentsFromBucketLive(t *testing.T) {
	w := newWorld(t)
	r := w.startBridge()
	kv, err := w.js.KeyValue(t.Context(), "environments")
	if err != nil {
		t.Fatal(err)
	}
	// A new environment, put while the bridge runs.
	if _, err := kv.Put(t.Context(), "env-new", []byte(`{"id":"env-new","name":"n","type":"pm","operator_url":"`+w.pm.URL+`"}`)); err != nil {
		t.Fatal(err)
	}
	w.eventually(5*time.Second, "env-new registered", func() bool { _, err := r.b.Manager().Lookup("env-new"); return err == nil })
	if res := w.result(w.deploy("env-new", events.DeployRequest{App: "a", Version: "v1"})); res.Outcome != events.Succeeded || res.Operator != "physical" {
		t.Fatalf("env-new: %+v", res)
	}
	// The bucket's entry wins over the file's: env-k8s becomes inactive.
	if _, err := kv.Put(t.Context(), "env-k8s", []byte(`{"id":"env-k8s","type":"k8s","operator_url":"`+w.k8s.URL+`","active":false}`)); err != nil {
		t.Fatal(err)
	}
	w.eventually(5*time.Second, "env-k8s inactive", func() bool {
		e, err := r.b.Manager().Lookup("env-k8s")
		return err != nil && e.Environment.Inactive
	})
	if res := w.result(w.deploy("env-k8s", events.DeployRequest{App: "a", Version: "v1"})); res.Error == nil || res.Error.Code != events.CodeEnvironmentInactive {
		t.Fatalf("inactive: %+v", res)
	}
	// Deleting the bucket's entry brings the file's back; deleting one only
	// in the bucket makes it unknown.
	if err := kv.Delete(t.Context(), "env-k8s"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), "env-new"); err != nil {
		t.Fatal(err)
	}
	w.eventually(5*time.Second, "file's env-k8s back, env-new gone", func() bool {
		_, err1 := r.b.Manager().Lookup("env-k8s")
		_, err2 := r.b.Manager().Lookup("env-new")
		return err1 == nil && err2 != nil
	})
	if res := w.result(w.deploy("env-new", events.DeployRequest{App: "a", Version: "v2"})); res.Error == nil || res.Error.Code != events.CodeUnknownEnvironment {
		t.Fatalf("deleted env: %+v", res)
	}
	// A broken entry is left out, and the rest keeps working.
	if _, err := kv.Put(t.Context(), "env-bad", []byte(`{"type":"submarine"}`)); err != nil {
		t.Fatal(err)
	}
	if res := w.result(w.deploy("env-k8s", events.DeployRequest{App: "b", Version: "v1"})); res.Outcome != events.Succeeded {
		t.Fatalf("after a broken entry: %+v", res)
	}
	if _, err := r.b.Manager().Lookup("env-bad"); err == nil {
		t.Fatal("broken entry registered")
	}
}

func TestBucketEnvironmentsAtStart(t *testing.T) {
	w := newWorld(t)
	// The bucket exists with an entry before the bridge starts.
	kv, err := w.js.CreateKeyValue(t.Context(), bridge.EnvironmentsBucketConfig("environments"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "env-early", []byte(`{"id":"env-early","type":"mock"}`)); err != nil {
		t.Fatal(err)
	}
	r := w.startBridge()
	if _, err := r.b.Manager().Lookup("env-early"); err != nil {
		t.Fatalf("env-early not loaded at start: %v", err)
	}
}

// Many changes to the bucket in a row (a script registering environments)
// all take effect, in the order they were made, with the file's
// environments kept where the bucket has none.
func TestEnvironmentsFromBucketInBulk(t *testing.T) {
	w := newWorld(t)
	r := w.startBridge()
	kv, err := w.js.KeyValue(t.Context(), "environments")
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	entry := func(id string, active bool) []byte {
		return []byte(fmt.Sprintf(`{"id":%q,"type":"pm","operator_url":%q,"active":%v}`, id, w.pm.URL, active))
	}
	for i := range n {
		if _, err := kv.Put(t.Context(), fmt.Sprintf("bulk-%03d", i), entry(fmt.Sprintf("bulk-%03d", i), true)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 3 { // every third deleted, every third made inactive
		if err := kv.Delete(t.Context(), fmt.Sprintf("bulk-%03d", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), fmt.Sprintf("bulk-%03d", i+1), entry(fmt.Sprintf("bulk-%03d", i+1), false)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Put(t.Context(), "env-pm", entry("env-pm", false)); err != nil { // over the file's
		t.Fatal(err)
	}
	want := map[string]string{"env-k8s": "active", "env-k8s-2": "active", "env-mock": "active", "env-off": "inactive", "env-pm": "inactive"}
	for i := range n {
		switch i % 3 {
		case 1:
			want[fmt.Sprintf("bulk-%03d", i)] = "inactive"
		case 2:
			want[fmt.Sprintf("bulk-%03d", i)] = "active"
		}
	}
	state := func() map[string]string {
		got := map[string]string{}
		for _, e := range r.b.Manager().Entries() {
			got[e.Environment.ID] = map[bool]string{false: "active", true: "inactive"}[e.Environment.Inactive]
		}
		return got
	}
	w.eventually(10*time.Second, "every change applied", func() bool { return cmp.Diff(want, state()) == "" })
	if _, err := r.b.Manager().Lookup("bulk-000"); !errors.Is(err, operator.ErrUnknownEnvironment) {
		t.Errorf("deleted bulk-000: %v, want unknown", err)
	}
	if e, err := r.b.Manager().Lookup("bulk-002"); err != nil || e.Endpoint != w.pm.URL {
		t.Errorf("bulk-002 = %+v, %v", e, err)
	}
}

// Config.FileEnvironments stands for the file, read by the caller: Run does
// not read the file again.
func TestFileEnvironmentsGiven(t *testing.T) {
	w := newWorld(t)
	envs, err := operator.LoadEnvironmentsFile(w.file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(w.file); err != nil {
		t.Fatal(err)
	}
	r := w.startBridge(func(o *bridgeOpts) { o.cfg.FileEnvironments = envs })
	var got []string
	for _, e := range r.b.Manager().Entries() {
		got = append(got, e.Environment.ID)
	}
	if diff := cmp.Diff([]string{"env-k8s", "env-k8s-2", "env-mock", "env-off", "env-pm"}, got); diff != "" {
		t.Errorf("environments (-want +got):\n%s", diff)
	}
	if res := w.result(w.deploy("env-pm", events.DeployRequest{App: "a", Version: "v1"})); res.Outcome != events.Succeeded {
		t.Fatalf("env-pm: %+v", res)
	}
}

// One check that stands for more environments than the client publishes
// at once stores the health of every one of them, once.
func TestHealthOfManyEnvironmentsOnOneEndpoint(t *testing.T) {
	w := newWorld(t)
	const n = 3000
	file := w.manyEnvironments("many", n, func(int) string { return w.k8s.URL })
	w.startBridge(func(o *bridgeOpts) { o.cfg.EnvironmentsFile = file })
	counts := w.healthStored(n)
	for i := range n {
		if c := counts[events.HealthSubject(fmt.Sprintf("many-%04d", i))]; c != 1 {
			t.Fatalf("many-%04d: %d health events stored, want 1", i, c)
		}
	}
}

// manyEnvironments writes a file of n Kubernetes environments, <prefix>-0000
// on, the i-th's operator at url(i), and returns its path.
func (w *world) manyEnvironments(prefix string, n int, url func(i int) string) string {
	w.t.Helper()
	var list []string
	for i := range n {
		list = append(list, fmt.Sprintf(`{"id":"%s-%04d","type":"k8s","operator_url":%q}`, prefix, i, url(i)))
	}
	file := filepath.Join(w.dir, prefix+".json")
	if err := os.WriteFile(file, []byte("["+strings.Join(list, ",")+"]"), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return file
}

// healthStored waits until the HEALTH stream holds events of n
// environments, and returns the number of each one's.
func (w *world) healthStored(n int) map[string]uint64 {
	w.t.Helper()
	stream, err := w.js.Stream(w.t.Context(), events.StreamHealth)
	if err != nil {
		w.t.Fatal(err)
	}
	var counts map[string]uint64
	w.eventually(30*time.Second, "every environment's health stored", func() bool {
		info, err := stream.Info(w.t.Context(), jetstream.WithSubjectFilter(events.HealthSubject(">")))
		if err != nil {
			w.t.Fatal(err)
		}
		counts = info.State.Subjects
		return len(counts) == n
	})
	return counts
}

// With an operator per environment, a round is as many checks as
// environments: they reach the operators a bounded number at a time, and
// every environment's health is stored.
func TestHealthChecksOfManyOperatorsAreBounded(t *testing.T) {
	w := newWorld(t)
	var now, most atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		n := now.Add(1)
		defer now.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(srv.Close)
	const n = 1000
	file := w.manyEnvironments("own", n, func(i int) string { return fmt.Sprintf("%s/own-%04d", srv.URL, i) })
	w.startBridge(func(o *bridgeOpts) { o.cfg.EnvironmentsFile = file; o.cfg.OperatorTimeout = 5 * time.Second })
	w.healthStored(n)
	if m := most.Load(); m > 256 {
		t.Errorf("%d health checks at once, want at most 256", m)
	}
}

// Health is known soon after start, whatever the interval: the first round
// checks every endpoint at once.
func TestHealthKnownAtStart(t *testing.T) {
	w := newWorld(t)
	h := w.watchHealth()
	w.startBridge(func(o *bridgeOpts) { o.cfg.HealthInterval = time.Hour })
	w.eventually(10*time.Second, "health of every active environment", func() bool {
		for _, env := range []string{"env-k8s", "env-k8s-2", "env-pm", "env-mock"} {
			if len(h.of(env)) == 0 {
				return false
			}
		}
		return true
	})
}

// storedHealth reads env's health events stored in HEALTH, oldest first.
func (w *world) storedHealth(env string) []events.Health {
	w.t.Helper()
	ctx := w.t.Context()
	cons, err := w.js.OrderedConsumer(ctx, events.StreamHealth, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"operator.health." + env}})
	if err != nil {
		w.t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []events.Health
	for range ci.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			w.t.Fatalf("reading stored health: %v", err)
		}
		_, h, err := events.DecodeHealth(m.Headers(), m.Data())
		if err != nil {
			w.t.Fatalf("stored health: %v", err)
		}
		out = append(out, h)
	}
	return out
}

// A health event that could not be stored is published again at the next
// check, still saying the health changed: no change is lost.
func TestHealthChangeNotStoredIsSentAgain(t *testing.T) {
	w := newWorld(t)
	h := w.watchHealth()
	w.startBridge(func(o *bridgeOpts) { o.cfg.HealthInterval = 200 * time.Millisecond })
	w.eventually(10*time.Second, "a stored healthy event of env-k8s", func() bool {
		s := w.storedHealth("env-k8s")
		return len(s) > 0 && s[0].Healthy
	})
	// HEALTH goes away: the bridge's events reach live subscribers, but
	// nothing stores them.
	if err := w.js.DeleteStream(t.Context(), events.StreamHealth); err != nil {
		t.Fatal(err)
	}
	seen := len(h.of("env-k8s"))
	w.k8s.SetFault(operatortest.Fault{HealthDown: true})
	w.eventually(10*time.Second, "an unhealthy event, not stored", func() bool {
		evs := h.of("env-k8s")
		for _, e := range evs[seen:] {
			if !e.Healthy {
				return true
			}
		}
		return false
	})
	for _, sc := range events.StreamConfigs() {
		if sc.Name == events.StreamHealth {
			if _, err := w.js.CreateStream(t.Context(), sc); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.eventually(10*time.Second, "a stored unhealthy event of env-k8s", func() bool { return len(w.storedHealth("env-k8s")) > 0 })
	if got := w.storedHealth("env-k8s")[0]; got.Healthy || !got.Changed {
		t.Fatalf("first stored event after the failed publish = %+v, want unhealthy and changed", got)
	}
}

// gaugeOf reports the value of a per-endpoint gauge, and whether the series
// exists.
func gaugeOf(t *testing.T, reg *prometheus.Registry, name, endpoint string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "endpoint" && l.GetValue() == endpoint {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// When an environment goes away, so do its health, and the circuit and the
// series of an endpoint no environment uses any more; one that comes back
// starts afresh.
func TestRemovedEnvironmentsAreForgotten(t *testing.T) {
	w := newWorld(t)
	h := w.watchHealth()
	reg := prometheus.NewRegistry()
	w.startBridge(func(o *bridgeOpts) {
		o.cfg.HealthInterval = 200 * time.Millisecond
		o.cfg.Registerer = reg
	})
	extra := operatortest.NewServer(operator.Physical)
	t.Cleanup(extra.Close)
	extra.SetFault(operatortest.Fault{HealthDown: true})
	kv, err := w.js.KeyValue(t.Context(), "environments")
	if err != nil {
		t.Fatal(err)
	}
	entry := []byte(`{"id":"env-gone","type":"pm","operator_url":"` + extra.URL + `"}`)
	if _, err := kv.Put(t.Context(), "env-gone", entry); err != nil {
		t.Fatal(err)
	}
	const healthy, circuit = "operator_bridge_operator_healthy", "operator_bridge_circuit_state"
	w.eventually(10*time.Second, "env-gone unhealthy, its endpoint's circuit open", func() bool {
		hv, hok := gaugeOf(t, reg, healthy, extra.URL)
		cv, cok := gaugeOf(t, reg, circuit, extra.URL)
		return len(h.of("env-gone")) > 0 && hok && hv == 0 && cok && cv == 1
	})

	if err := kv.Delete(t.Context(), "env-gone"); err != nil {
		t.Fatal(err)
	}
	w.eventually(10*time.Second, "the series of env-gone's endpoint gone", func() bool {
		_, hok := gaugeOf(t, reg, healthy, extra.URL)
		_, cok := gaugeOf(t, reg, circuit, extra.URL)
		return !hok && !cok
	})
	// Endpoints still in use keep theirs.
	if _, ok := gaugeOf(t, reg, healthy, w.k8s.URL); !ok {
		t.Fatal("the series of an endpoint still in use went away")
	}

	back := time.Now()
	if _, err := kv.Put(t.Context(), "env-gone", entry); err != nil {
		t.Fatal(err)
	}
	var first events.Health
	w.eventually(10*time.Second, "env-gone's health after it came back", func() bool {
		for _, e := range h.of("env-gone") {
			if e.CheckedAt.After(back) {
				first = e
				return true
			}
		}
		return false
	})
	if first.Healthy || !first.Changed {
		t.Fatalf("first health after coming back = %+v, want unhealthy and changed", first)
	}
}
