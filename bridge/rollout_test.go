package bridge_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// rolloutSettings are short rollout settings for tests: a poll of 50ms, a
// grace of 300ms, a timeout of 20s (requests set shorter ones).
func rolloutSettings(o *bridgeOpts) {
	o.cfg.RolloutPoll = 50 * time.Millisecond
	o.cfg.RolloutGrace = 300 * time.Millisecond
	o.cfg.RolloutTimeout = 20 * time.Second
}

// stored is one progress event as the DEPLOY stream stored it.
type stored struct {
	id, source string
	p          events.DeployProgress
}

// storedProgress reads every progress event stored in DEPLOY, by request id.
func (w *world) storedProgress() map[string][]stored {
	w.t.Helper()
	ctx := w.t.Context()
	cons, err := w.js.OrderedConsumer(ctx, events.StreamDeploy, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"deploy.progress.>"}})
	if err != nil {
		w.t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string][]stored{}
	for range ci.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			w.t.Fatalf("reading progress: %v", err)
		}
		e, p, err := events.DecodeDeployProgress(m.Headers(), m.Data())
		if err != nil {
			w.t.Fatalf("stored progress does not decode: %v: %s", err, m.Data())
		}
		if m.Headers().Get(events.HeaderMsgID) != e.ID() {
			w.t.Errorf("progress event %s stored with Nats-Msg-Id %q", e.ID(), m.Headers().Get(events.HeaderMsgID))
		}
		out[p.RequestID] = append(out[p.RequestID], stored{id: e.ID(), source: e.Source(), p: p})
	}
	return out
}

// progressOf waits until request id has a stored event that satisfies
// cond, and returns the request's stored events up to that one.
func (w *world) progressOf(id string, what string, d time.Duration, cond func(events.DeployProgress) bool) []stored {
	w.t.Helper()
	var got []stored
	w.eventually(d, what+" of "+id, func() bool {
		all := w.storedProgress()[id]
		for i, s := range all {
			if cond(s.p) {
				got = all[:i+1]
				return true
			}
		}
		return false
	})
	return got
}

func (w *world) finalOf(id string) []stored {
	w.t.Helper()
	return w.progressOf(id, "final progress event", 30*time.Second, func(p events.DeployProgress) bool { return p.Final })
}

// checkTrail checks what every tracked request's events must hold: one
// final event, last, with the deterministic id; events in between each
// differ from the one before; elapsed never goes back; the target is the
// request's.
func checkTrail(t *testing.T, id string, seq uint64, all []stored, target []events.Target) {
	t.Helper()
	if len(all) == 0 {
		t.Fatalf("%s: no progress events", id)
	}
	finals := 0
	for i, s := range all {
		if s.p.Final {
			finals++
			if s.id != events.FinalProgressID(id, seq) {
				t.Errorf("%s: final event id %s, want %s", id, s.id, events.FinalProgressID(id, seq))
			}
		}
		if diff := cmp.Diff(target, s.p.Target); diff != "" {
			t.Errorf("%s: event %d target (-want +got):\n%s", id, i, diff)
		}
		if i == 0 {
			continue
		}
		prev := all[i-1].p
		if s.p.ElapsedMS < prev.ElapsedMS {
			t.Errorf("%s: elapsed went back from %d to %d", id, prev.ElapsedMS, s.p.ElapsedMS)
		}
		prev.ElapsedMS = s.p.ElapsedMS
		if cmp.Equal(prev, s.p) {
			t.Errorf("%s: event %d repeats the one before: %+v", id, i, s.p)
		}
	}
	if finals != 1 || !all[len(all)-1].p.Final {
		t.Errorf("%s: %d final events, last final %v; want exactly one, last", id, finals, all[len(all)-1].p.Final)
	}
}

// requestSeq finds the stream sequence of a stored request.
func (w *world) requestSeq(env, id string) uint64 {
	w.t.Helper()
	cons, err := w.js.OrderedConsumer(w.t.Context(), events.StreamDeploy, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.DeployRequestSubject(env)}})
	if err != nil {
		w.t.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			w.t.Fatalf("request %s not found: %v", id, err)
		}
		e, err := events.Decode(m.Headers(), m.Data())
		if err == nil && e.ID() == id {
			meta, _ := m.Metadata()
			return meta.Sequence.Stream
		}
	}
}

func versionsAt(p events.DeployProgress) map[string]float64 {
	out := map[string]float64{}
	for _, v := range p.Observed.Versions {
		out[v.Version] = v.Percent
	}
	return out
}

func TestRolloutConvergesGradually(t *testing.T) {
	w := newWorld(t)
	w.startBridge(rolloutSettings)
	first := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v1"})
	w.finalOf(first)

	w.k8s.SetRollout(operatortest.Rollout{Step: 0.1, Every: 100 * time.Millisecond})
	req := events.DeployRequest{App: "shop", Version: "v2", Deployments: []events.Deployment{
		{Version: "v2", Percent: 0.5, Package: json.RawMessage(`{"image":"shop:v2"}`)}, {Version: "v1", Percent: 0.5},
	}}
	id := w.deploy("env-k8s", req)
	if r := w.result(id); r.Outcome != events.Succeeded {
		t.Fatalf("deploy: %s %s", r.Outcome, r.Message)
	}
	all := w.finalOf(id)
	checkTrail(t, id, w.requestSeq("env-k8s", id), all, []events.Target{{Version: "v2", Percent: 0.5}, {Version: "v1", Percent: 0.5}})
	final := all[len(all)-1].p
	if final.Phase != events.PhaseConverged || !strings.HasPrefix(final.Message, "converged") {
		t.Fatalf("final %s: %s", final.Phase, final.Message)
	}
	if diff := cmp.Diff(map[string]float64{"v2": 0.5, "v1": 0.5}, versionsAt(final)); diff != "" {
		t.Errorf("final observed (-want +got):\n%s", diff)
	}
	// The rollout was seen on its way: events before the final one, with
	// v2 below its share and saying so.
	if len(all) < 2 {
		t.Fatalf("only %d events; want progress before the final one", len(all))
	}
	if p := all[0].p; p.Phase != events.PhaseProgressing || !strings.Contains(p.Message, "of 50%") || p.Environment != "env-k8s" || p.App != "shop" {
		t.Errorf("first event: %+v", p)
	}
}

func TestRolloutPhases(t *testing.T) {
	w := newWorld(t)
	w.startBridge(rolloutSettings)
	tests := []struct {
		name    string
		env     string
		setup   func()
		rollout *events.Rollout
		phase   events.Phase
		message string
	}{
		{name: "mock converges at once", env: "env-mock", phase: events.PhaseConverged, message: "converged"},
		{name: "unhealthy beyond the grace", env: "env-pm", phase: events.PhaseDegraded, message: "v2-degraded at 100% has health 40",
			setup: func() { w.pm.SetRollout(operatortest.Rollout{Unhealthy: map[string]int{"v2-degraded": 40}}) }},
		{name: "healthy enough for min_healthy", env: "env-pm", phase: events.PhaseConverged, message: "health at least 40",
			rollout: &events.Rollout{MinHealthy: ptr(40)},
			setup:   func() { w.pm.SetRollout(operatortest.Rollout{Unhealthy: map[string]int{"v2-min": 40}}) }},
		{name: "stuck until the timeout", env: "env-k8s", phase: events.PhaseTimedOut, message: "not converged within 1s",
			rollout: &events.Rollout{Timeout: time.Second},
			setup:   func() { w.k8s.SetRollout(operatortest.Rollout{Stuck: true}) }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			version := strings.Fields(tc.message)[0]
			if !strings.HasPrefix(version, "v2") {
				version = fmt.Sprintf("v2-%d", i)
			}
			id := w.deploy(tc.env, events.DeployRequest{App: fmt.Sprintf("app-%d", i), Version: version, Rollout: tc.rollout})
			all := w.finalOf(id)
			checkTrail(t, id, w.requestSeq(tc.env, id), all, []events.Target{{Version: version, Percent: 1}})
			final := all[len(all)-1].p
			if final.Phase != tc.phase || !strings.Contains(final.Message, tc.message) {
				t.Errorf("final %s %q; want %s containing %q", final.Phase, final.Message, tc.phase, tc.message)
			}
			if tc.env == "env-mock" && len(all) != 1 {
				t.Errorf("mock: %d events, want only the final one", len(all))
			}
		})
	}
}

func TestRolloutOffAndReplaysAreNotTracked(t *testing.T) {
	w := newWorld(t)
	w.startBridge(rolloutSettings)
	off := w.deploy("env-mock", events.DeployRequest{App: "quiet", Version: "v1", Rollout: &events.Rollout{Off: true}})
	if r := w.result(off); r.Outcome != events.Succeeded {
		t.Fatalf("deploy: %s", r.Message)
	}
	tracked := w.deploy("env-mock", events.DeployRequest{App: "loud", Version: "v1"})
	w.finalOf(tracked)
	// A replay of the tracked request (a new message, same id) is answered
	// "already applied" and not tracked again.
	msg, _, err := events.NewDeployRequest("/test/master", "env-mock", events.DeployRequest{App: "loud", Version: "v1"}, events.WithID(tracked))
	if err != nil {
		t.Fatal(err)
	}
	msg.Header.Del(events.HeaderMsgID)
	w.publish(msg)
	if r := w.nthResult(tracked, 2); !strings.Contains(r.Message, "already applied") {
		t.Fatalf("replay: %s", r.Message)
	}
	after := w.deploy("env-mock", events.DeployRequest{App: "loud", Version: "v2"})
	w.finalOf(after)
	all := w.storedProgress()
	if n := len(all[off]); n != 0 {
		t.Errorf("rollout false: %d progress events", n)
	}
	if n := len(all[tracked]); n != 1 {
		t.Errorf("tracked then replayed: %d progress events, want 1", n)
	}
}

func TestRolloutSuperseded(t *testing.T) {
	w := newWorld(t)
	w.startBridge(rolloutSettings)
	w.k8s.SetRollout(operatortest.Rollout{Stuck: true})
	old := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v2"})
	w.progressOf(old, "a progressing event", 15*time.Second, func(p events.DeployProgress) bool { return p.Phase == events.PhaseProgressing })
	newer := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v3"})
	all := w.finalOf(old)
	checkTrail(t, old, w.requestSeq("env-k8s", old), all, []events.Target{{Version: "v2", Percent: 1}})
	if final := all[len(all)-1].p; final.Phase != events.PhaseSuperseded || !strings.Contains(final.Message, newer) {
		t.Errorf("final %s %q; want superseded naming %s", final.Phase, final.Message, newer)
	}
	w.k8s.SetRollout(operatortest.Rollout{})
	if final := w.finalOf(newer); final[len(final)-1].p.Phase != events.PhaseConverged {
		t.Errorf("newer request: %+v", final[len(final)-1].p)
	}
}

func TestRolloutStatusErrorsAreReportedAndRetried(t *testing.T) {
	w := newWorld(t)
	w.startBridge(rolloutSettings)
	w.pm.SetRollout(operatortest.Rollout{Stuck: true})
	id := w.deploy("env-pm", events.DeployRequest{App: "api", Version: "v5"})
	if r := w.result(id); r.Outcome != events.Succeeded {
		t.Fatalf("deploy: %s", r.Message)
	}
	w.pm.SetFault(operatortest.Fault{Always503: true})
	w.progressOf(id, "a status error", 15*time.Second, func(p events.DeployProgress) bool {
		return p.Phase == events.PhaseProgressing && strings.Contains(p.Message, "status call failed")
	})
	w.pm.SetFault(operatortest.Fault{})
	w.pm.SetRollout(operatortest.Rollout{})
	all := w.finalOf(id)
	checkTrail(t, id, w.requestSeq("env-pm", id), all, []events.Target{{Version: "v5", Percent: 1}})
	if final := all[len(all)-1].p; final.Phase != events.PhaseConverged {
		t.Errorf("final %s %q", final.Phase, final.Message)
	}
	// The failing status calls were retried without an event each: one
	// event says the error, the next what came after it.
	errs := 0
	for _, s := range all {
		if strings.Contains(s.p.Message, "status call failed") {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("%d events about the same status error, want 1", errs)
	}
}

func TestRolloutSurvivesRestart(t *testing.T) {
	w := newWorld(t)
	b1 := w.startBridge(rolloutSettings)
	w.k8s.SetRollout(operatortest.Rollout{Stuck: true})
	id := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v7"})
	w.result(id)
	resultSeen := time.Now()
	before := w.progressOf(id, "a progressing event", 15*time.Second, func(p events.DeployProgress) bool { return p.Phase == events.PhaseProgressing })
	b1.stop(t)
	time.Sleep(time.Second) // the bridge is down a while
	restarted := time.Now()
	w.startBridge(rolloutSettings)
	w.k8s.SetRollout(operatortest.Rollout{})
	all := w.finalOf(id)
	checkTrail(t, id, w.requestSeq("env-k8s", id), all, []events.Target{{Version: "v7", Percent: 1}})
	final := all[len(all)-1].p
	if final.Phase != events.PhaseConverged {
		t.Fatalf("final %s %q", final.Phase, final.Message)
	}
	// Elapsed counts from the stored result, not from the restart.
	if down := restarted.Sub(resultSeen); time.Duration(final.ElapsedMS)*time.Millisecond < down {
		t.Errorf("final elapsed %dms, less than the %s from the result to the restart: reset by the restart", final.ElapsedMS, down)
	}
	if len(all) <= len(before) {
		t.Errorf("no event after the restart")
	}
}

func TestRolloutFailsOverToAnotherReplica(t *testing.T) {
	w := newWorld(t)
	a := w.startBridge(rolloutSettings, func(o *bridgeOpts) { o.cfg.Instance = "a" })
	b := w.startBridge(rolloutSettings, func(o *bridgeOpts) { o.cfg.Instance = "b" })
	w.k8s.SetRollout(operatortest.Rollout{Stuck: true})
	id := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v8"})
	seq := w.requestSeq("env-k8s", id)
	before := w.progressOf(id, "a progressing event", 15*time.Second, func(p events.DeployProgress) bool { return p.Phase == events.PhaseProgressing })
	owner := before[0].source

	// The replica tracking it loses NATS for good, as if it died: it
	// cannot hand the rollout back, and the other one takes it over once
	// the lease has passed unchanged.
	survivor := events.SourceFor("b")
	if owner == events.SourceFor("b") {
		b.nc.Close()
		survivor = events.SourceFor("a")
	} else {
		a.nc.Close()
	}
	w.k8s.SetRollout(operatortest.Rollout{})
	all := w.finalOf(id)
	checkTrail(t, id, seq, all, []events.Target{{Version: "v8", Percent: 1}})
	final := all[len(all)-1]
	if final.p.Phase != events.PhaseConverged || final.source != survivor {
		t.Errorf("final %s from %s; want converged from %s", final.p.Phase, final.source, survivor)
	}
	kv, err := w.js.KeyValue(t.Context(), bridge.RolloutBucket)
	if err != nil {
		t.Fatal(err)
	}
	w.eventually(10*time.Second, "rollout state done", func() bool {
		e, err := kv.Get(t.Context(), events.FinalProgressID(id, seq))
		return err == nil && strings.Contains(string(e.Value()), `"done":true`)
	})
}

func ptr[T any](v T) *T { return &v }

// TestRolloutExactlyOneFinalUnderFaults follows many rollouts while one
// replica is restarted and another loses NATS for good: every applied
// request still gets exactly one final event, last, and none after it.
func TestRolloutExactlyOneFinalUnderFaults(t *testing.T) {
	w := newWorld(t)
	a := w.startBridge(rolloutSettings, func(o *bridgeOpts) { o.cfg.Instance = "a" })
	b := w.startBridge(rolloutSettings, func(o *bridgeOpts) { o.cfg.Instance = "b" })
	w.k8s.SetRollout(operatortest.Rollout{Step: 0.1, Every: 150 * time.Millisecond})
	w.pm.SetRollout(operatortest.Rollout{Step: 0.2, Every: 100 * time.Millisecond})
	var ids []string
	envOf := map[string]string{}
	for i := range 24 {
		// Not the mock: each replica has its own, in its memory.
		env := []string{"env-k8s", "env-pm"}[i%2]
		id := w.deploy(env, events.DeployRequest{App: fmt.Sprintf("app-%d", i%10), Version: fmt.Sprintf("v%d", i)})
		ids = append(ids, id)
		envOf[id] = env
	}
	results := map[string]events.DeployResult{}
	for _, id := range ids {
		results[id] = w.result(id)
	}
	// Mid-rollout: one replica restarts, the other dies.
	a.stop(t) // hands its rollouts back
	w.startBridge(rolloutSettings, func(o *bridgeOpts) { o.cfg.Instance = "a2" })
	b.nc.Close() // cannot hand back: its rollouts wait out the lease
	applied := 0
	for _, id := range ids {
		r := results[id]
		if r.Outcome != events.Succeeded || strings.Contains(r.Message, "already applied") {
			continue // superseded before it was sent, or held back: not tracked
		}
		applied++
		all := w.finalOf(id)
		if last := all[len(all)-1].p; last.Phase == events.PhaseTimedOut || last.Phase == events.PhaseDegraded {
			t.Errorf("%s: %s: %s", id, last.Phase, last.Message)
		}
	}
	if applied == 0 {
		t.Fatal("no request was applied")
	}
	// Let anything that would come after a final event come, then check
	// every stored trail.
	time.Sleep(time.Second)
	stored := w.storedProgress()
	for _, id := range ids {
		trail := stored[id]
		if len(trail) == 0 {
			continue
		}
		finals := 0
		for _, s := range trail {
			if s.p.Final {
				finals++
			}
		}
		if finals != 1 || !trail[len(trail)-1].p.Final {
			t.Errorf("%s: %d final events, last one final: %v", id, finals, trail[len(trail)-1].p.Final)
		}
		if trail[len(trail)-1].id != events.FinalProgressID(id, w.requestSeq(envOf[id], id)) {
			t.Errorf("%s: final event id %s", id, trail[len(trail)-1].id)
		}
	}
}

// A replica can end (killed, its node lost) right after an apply, before
// the rollout is tracked: after storing the result, or before it. The
// message then comes back to another replica, which tracks the rollout as
// the first would have: one final event, under the request's own id.
func TestRolloutOfAReplicaThatDiedIsTracked(t *testing.T) {
	tests := []struct {
		name string
		// died leaves what the dead replica wrote: the operator call is
		// made by then.
		died        func(w *world, id string, seq uint64)
		wantMessage string
	}{
		{"after storing its result", func(w *world, id string, seq uint64) {
			w.storeResultOfDeadReplica(id, seq, "shop", "v7", true)
		}, "applied"},
		{"before storing its result", func(w *world, id string, seq uint64) {
			kv, err := w.js.KeyValue(w.t.Context(), bridge.OrderBucket)
			if err != nil {
				w.t.Fatal(err)
			}
			applied := fmt.Sprintf(`{"applied":{"id":%q,"time":%q,"seq":%d},"floor":{"id":%q,"time":%q,"seq":%d},"fence":1}`,
				id, time.Time{}.Format(time.RFC3339Nano), seq, id, time.Time{}.Format(time.RFC3339Nano), seq)
			if _, err := kv.Put(w.t.Context(), "env-k8s.shop", []byte(applied)); err != nil {
				w.t.Fatal(err)
			}
		}, "already applied by an earlier delivery"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.startBridge(rolloutSettings).stop(t) // streams, consumers and buckets made
			w.k8s.SetRollout(operatortest.Rollout{Step: 0.5, Every: 100 * time.Millisecond})
			id := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v7"}, events.WithTime(time.Time{}))
			seq := w.requestSeq("env-k8s", id)

			// The dead replica: it took the delivery, applied it, wrote what
			// tc.died says, and never acknowledged it.
			m := w.takeDelivery()
			if _, err := operator.NewK8sClient(w.k8s.URL).Apply(t.Context(), operator.ApplyRequest{App: "shop", Version: "v7",
				Deployments: []operator.Deployment{{Version: "v7", Percent: 1}}, RequestID: id, Fence: 1}); err != nil {
				t.Fatal(err)
			}
			tc.died(w, id, seq)
			if err := m.Nak(); err != nil { // its ack wait ended, in short
				t.Fatal(err)
			}

			w.startBridge(rolloutSettings)
			all := w.finalOf(id)
			checkTrail(t, id, seq, all, []events.Target{{Version: "v7", Percent: 1}})
			if final := all[len(all)-1].p; final.Phase != events.PhaseConverged {
				t.Errorf("final %s %q", final.Phase, final.Message)
			}
			results := w.storedResults()[id]
			if len(results) != 1 || !strings.HasPrefix(results[0].Message, tc.wantMessage) || results[0].Outcome != events.Succeeded {
				t.Fatalf("results %+v; want one, succeeded, saying %q", results, tc.wantMessage)
			}
			if got := w.k8s.Applied("shop"); len(got) != 1 {
				t.Errorf("applied %v; want once, by the dead replica", got)
			}
		})
	}
}

// takeDelivery takes the next delivery of the deploy consumer, as a replica
// that is about to die would: the caller decides whether it is ever settled.
func (w *world) takeDelivery() jetstream.Msg {
	w.t.Helper()
	cons, err := w.js.Consumer(w.t.Context(), events.StreamDeploy, bridge.DeployConsumer)
	if err != nil {
		w.t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		w.t.Fatal(err)
	}
	return m
}

// storeResultOfDeadReplica stores the succeeded result that a replica which
// applied request id (stream sequence seq) stored before it died; tracked
// marks its rollout as followed, as the bridge does.
func (w *world) storeResultOfDeadReplica(id string, seq uint64, app, version string, tracked bool) {
	w.t.Helper()
	res, err := events.NewDeployResult("/test/dead-replica", events.Envelope{ID: id, Environment: "env-k8s"}, seq,
		events.DeployResult{RequestID: id, Environment: "env-k8s", App: app, Version: version, Operator: string(operator.Kubernetes),
			Outcome: events.Succeeded, Success: true, Message: "applied", Attempts: 1})
	if err != nil {
		w.t.Fatal(err)
	}
	if tracked {
		res.Header.Set(events.HeaderBridgeRollout, "tracked")
	}
	w.publish(res)
}
