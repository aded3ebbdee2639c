package bridge_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// load publishes n deploy requests over the k8s and pm environments and a
// few apps, each app's versions in time order, and returns their ids.
func (w *world) load(n int) []string {
	// One environment per operator: the fakes record versions per app, not
	// per environment.
	envs := []string{"env-k8s", "env-pm"}
	base := time.Now().Add(-time.Minute)
	ids := make([]string, n)
	for i := range n {
		ids[i] = w.deploy(envs[i%len(envs)], events.DeployRequest{App: fmt.Sprintf("app%d", i%7), Version: fmt.Sprintf("v%d", i)},
			events.WithTime(base.Add(time.Duration(i)*time.Millisecond)))
	}
	return ids
}

// exactlyOneResultEach waits until every id has a stored result and checks
// none has two.
func (w *world) exactlyOneResultEach(ids []string) {
	w.t.Helper()
	var stored map[string][]events.DeployResult
	w.eventually(60*time.Second, "a stored result for every request", func() bool {
		stored = w.storedResults()
		for _, id := range ids {
			if len(stored[id]) == 0 {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if n := len(stored[id]); n != 1 {
			w.t.Fatalf("request %s has %d stored results: %+v", id, n, stored[id])
		}
		if o := stored[id][0].Outcome; o != events.Succeeded && o != events.Superseded {
			w.t.Fatalf("request %s: %+v", id, stored[id][0])
		}
	}
}

func TestTwoBridgesOneResultEachAndOrderHolds(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFault(operatortest.Fault{Latency: time.Millisecond})
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	// A window long enough that a slow machine's operator timeouts are
	// retried rather than reported.
	w.startBridge(func(o *bridgeOpts) { o.cfg.Instance, o.cfg.Registerer, o.cfg.RetryWindow = "a", regs[0], time.Minute })
	w.startBridge(func(o *bridgeOpts) { o.cfg.Instance, o.cfg.Registerer, o.cfg.RetryWindow = "b", regs[1], time.Minute })
	ids := w.load(150)
	w.exactlyOneResultEach(ids)
	// A key's requests that reach the replica not holding it are handed to
	// the holder instead of waiting for its lease.
	var conflicts, forwarded float64
	for _, reg := range regs {
		conflicts += counter(t, reg, "operator_bridge_lease_conflicts_total")
		forwarded += counter(t, reg, "operator_bridge_forwarded_total")
	}
	t.Logf("150 requests: %v forwarded, %v lease conflicts", forwarded, conflicts)
	if conflicts > forwarded {
		t.Fatalf("%v requests forwarded and %v waited for another replica's lease", forwarded, conflicts)
	}
	// Per app, versions only moved forward on each operator.
	for app := range 7 {
		rank := map[string]int{}
		for i := app; i < 150; i += 7 {
			rank[fmt.Sprintf("v%d", i)] = i
		}
		name := fmt.Sprintf("app%d", app)
		versionsNeverGoBack(t, w.k8s.Applied(name), rank)
		versionsNeverGoBack(t, w.pm.Applied(name), rank)
	}
	// Both replicas did part of the work.
	stored := w.storedResults()
	sources := map[string]bool{}
	_ = stored
	m, err := w.js.Stream(t.Context(), events.StreamDeploy)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := m.Info(t.Context())
	for seq := info.State.LastSeq; seq > info.State.LastSeq-50 && seq > 0; seq-- {
		raw, err := m.GetMsg(t.Context(), seq)
		if err != nil || !strings.HasPrefix(raw.Subject, "deploy.result.") {
			continue
		}
		ev, err := events.Decode(raw.Header, raw.Data)
		if err == nil {
			sources[ev.Source()] = true
		}
	}
	if len(sources) == 0 {
		t.Fatal("no result sources found")
	}
}

// counter reads a counter's value from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestCrashMidLoadThenRestart(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFault(operatortest.Fault{Latency: 20 * time.Millisecond})
	w.pm.SetFault(operatortest.Fault{Latency: 20 * time.Millisecond})
	short := func(o *bridgeOpts) { o.cfg.AckWait = 2 * time.Second; o.cfg.RetryWindow = time.Minute }
	r := w.startBridge(short)
	ids := w.load(120)
	w.eventually(20*time.Second, "some results", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.res) > 10
	})
	// Crash: the connection goes away with requests in flight, unacked.
	r.nc.Close()
	r.cancel()
	<-r.done
	w.startBridge(short)
	w.exactlyOneResultEach(ids)
}

func TestNATSRestartMidLoad(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFault(operatortest.Fault{Latency: 5 * time.Millisecond})
	r := w.startBridge(func(o *bridgeOpts) { o.cfg.RetryWindow = time.Minute })
	ids := w.load(90)
	addr := strings.TrimPrefix(w.srv.ClientURL(), "nats://")
	w.srv.Stop()
	w.eventually(5*time.Second, "not ready while NATS is down", func() bool { return !r.b.Ready() })
	w.startNATS(addr)
	w.eventually(20*time.Second, "ready again after NATS is back", r.b.Ready)
	// Requests published before the restart, and after it, all get results.
	ids = append(ids, w.load(30)...)
	w.exactlyOneResultEach(ids)
}

func TestCircuitKeepsOtherEnvironmentsFlowing(t *testing.T) {
	w := newWorld(t)
	w.startBridge(func(o *bridgeOpts) { o.cfg.RetryWindow = 20 * time.Second })
	w.pm.SetFault(operatortest.Fault{Always503: true})
	var down []string
	for i := range 8 {
		down = append(down, w.deploy("env-pm", events.DeployRequest{App: fmt.Sprintf("a%d", i), Version: "v1"}))
	}
	// While the physical operator is down, Kubernetes requests flow.
	for i := range 5 {
		if r := w.result(w.deploy("env-k8s", events.DeployRequest{App: fmt.Sprintf("k%d", i), Version: "v1"})); r.Outcome != events.Succeeded {
			t.Fatalf("k8s request during pm outage: %+v", r)
		}
	}
	// Once every request has made its first call, the circuit is open.
	applies := func() int { // health checks aside
		n := 0
		for _, r := range w.pm.Requests() {
			if r.Path == "/api/deploy" {
				n++
			}
		}
		return n
	}
	w.eventually(10*time.Second, "first calls made", func() bool { return applies() >= len(down) })
	time.Sleep(100 * time.Millisecond)
	before := applies()
	time.Sleep(2 * time.Second) // the circuit is open: the waiting requests do not hammer the operator
	if calls := applies() - before; calls > 2 {
		t.Fatalf("%d calls to a down operator in 2s with its circuit open", calls)
	}
	// The operator comes back: every waiting request ends well, within its window.
	w.pm.SetFault(operatortest.Fault{})
	for _, id := range down {
		if r := w.result(id); r.Outcome != events.Succeeded {
			t.Fatalf("after recovery: %+v", r)
		}
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFault(operatortest.Fault{Latency: 400 * time.Millisecond})
	r := w.startBridge(func(o *bridgeOpts) { o.cfg.OperatorTimeout = 2 * time.Second })
	id := w.deploy("env-k8s", events.DeployRequest{App: "slow", Version: "v1"})
	w.eventually(5*time.Second, "the call started", func() bool {
		for _, req := range w.k8s.Requests() {
			if req.Path == "/api/apply" {
				return true
			}
		}
		return false
	})
	start := time.Now()
	r.stop(t)
	t.Logf("stopped in %v", time.Since(start))
	// The in-flight request finished and stored its result before Run returned.
	got := w.storedResults()[id]
	if len(got) != 1 || got[0].Outcome != events.Succeeded {
		t.Fatalf("result after shutdown: %+v", got)
	}
}

func TestOpsEndpoints(t *testing.T) {
	w := newWorld(t)
	addr := "127.0.0.1:" + freePort(t)
	r := w.startBridge(func(o *bridgeOpts) { o.cfg.HTTPAddr = addr })
	w.result(w.deploy("env-mock", events.DeployRequest{App: "m", Version: "v1"}))
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, `operator_bridge_events_total{outcome="succeeded",type="io.boreas.deploy.request.v1"} 1`) ||
		!strings.Contains(body, "operator_bridge_operator_call_seconds_bucket") || !strings.Contains(body, "operator_bridge_in_flight") {
		t.Fatalf("/metrics = %d\n%s", code, body)
	}
	// A deleted consumer makes the bridge unready until it has made it again.
	if err := w.js.DeleteConsumer(t.Context(), events.StreamDeploy, "operator-bridge-deploy"); err != nil {
		t.Fatal(err)
	}
	w.eventually(10*time.Second, "consumer made again", func() bool {
		_, err := w.js.Consumer(t.Context(), events.StreamDeploy, "operator-bridge-deploy")
		return err == nil && r.b.Ready()
	})
	if res := w.result(w.deploy("env-mock", events.DeployRequest{App: "m", Version: "v2"})); res.Outcome != events.Succeeded {
		t.Fatalf("after consumer loss: %+v", res)
	}
}
