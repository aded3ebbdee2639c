package bridge_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
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
	}
	w.k8s.SetFault(operatortest.Fault{})
	w.eventually(5*time.Second, "healthy again", func() bool {
		evs := h.of("env-k8s")
		last := evs[len(evs)-1]
		return last.Healthy && last.ConsecutiveFailures == 0
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
