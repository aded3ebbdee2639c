package bridge_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// A burst for one environment and app behind a slow operator takes one
// worker: requests of other keys keep flowing instead of queueing behind it.
func TestHotKeyDoesNotStallOtherKeys(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFault(operatortest.Fault{Latency: 150 * time.Millisecond})
	w.startBridge(func(o *bridgeOpts) {
		o.cfg.MaxInFlight = 4
		o.cfg.RetryWindow = time.Minute
	})
	base := time.Now().Add(-time.Minute)
	var hot, other []string
	for i := range 30 {
		hot = append(hot, w.deploy("env-k8s", events.DeployRequest{App: "hot", Version: fmt.Sprintf("v%d", i)},
			events.WithTime(base.Add(time.Duration(i)*time.Millisecond))))
	}
	for i := range 8 {
		other = append(other, w.deploy("env-pm", events.DeployRequest{App: fmt.Sprintf("app%d", i), Version: "v1"}))
	}
	for _, id := range other {
		if r := w.result(id); r.Outcome != events.Succeeded {
			t.Fatalf("other key: %+v", r)
		}
	}
	// Every other key's result came while the hot key was still busy.
	w.mu.Lock()
	done := 0
	for _, id := range hot {
		done += len(w.res[id])
	}
	w.mu.Unlock()
	if done >= len(hot)/2 {
		t.Fatalf("other keys waited for %d of the hot key's %d requests", done, len(hot))
	}
	// And the hot key still applies every request in order, with one result each.
	for _, id := range hot {
		if r := w.result(id); r.Outcome != events.Succeeded && r.Outcome != events.Superseded {
			t.Fatalf("hot key: %+v", r)
		}
	}
	applied := w.k8s.Applied("hot")
	rank := map[string]int{}
	for i := range 30 {
		rank[fmt.Sprintf("v%d", i)] = i
	}
	versionsNeverGoBack(t, applied, rank)
}

// A burst over fewer keys than the bridge has workers fills what it holds
// with requests waiting for their keys' turn. The bridge then stops pulling;
// it never sends a request back for want of room, where it would come back
// after newer requests of its key and be superseded instead of applied.
func TestBurstOverFewKeysWaitsInsteadOfComingBack(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFault(operatortest.Fault{Latency: 20 * time.Millisecond})
	var logs syncBuffer
	w.startBridge(func(o *bridgeOpts) {
		o.cfg.MaxInFlight = 4 // holds 20; two keys' owners and 18 waiting
		o.cfg.RetryWindow = time.Minute
		o.cfg.OperatorTimeout = 10 * time.Second // a loaded machine's slow call is no retry
		o.cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	base := time.Now().Add(-time.Minute)
	var ids []string
	for i := range 60 {
		ids = append(ids, w.deploy("env-k8s", events.DeployRequest{App: fmt.Sprintf("burst-%d", i%2), Version: fmt.Sprintf("v%d", i)},
			events.WithTime(base.Add(time.Duration(i)*time.Millisecond))))
	}
	w.exactlyOneResultEach(ids)
	succeeded := 0
	for _, id := range ids {
		switch r := w.result(id); r.Outcome {
		case events.Succeeded:
			succeeded++
		case events.Superseded: // only after a retry, on a machine too loaded for its writes
		default:
			t.Errorf("%s: %s %s", id, r.Outcome, r.Message)
		}
	}
	t.Logf("%d of %d applied in turn", succeeded, len(ids))
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "already wait in this replica") {
			t.Fatalf("a request was sent back for want of room: %s", line)
		}
	}
}

// A request whose result was stored but whose ack was lost, delivered again
// long after the duplicate window, gets no second result and is not applied
// again.
func TestRedeliveryAfterTheDuplicateWindowStoresNoSecondResult(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	// The streams as an operator might make them, with a short duplicate
	// window standing in for the 2 minutes.
	for _, sc := range events.StreamConfigs() {
		sc.Duplicates = 200 * time.Millisecond
		if _, err := w.js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.js.CreateKeyValue(ctx, bridge.EnvironmentsBucketConfig("environments")); err != nil {
		t.Fatal(err)
	}
	const ackWait = time.Second
	msg, id, err := events.NewDeployRequest("/test", "env-k8s", events.DeployRequest{App: "late", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := w.js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	// A bridge took it (first delivery), stored its result and died before
	// its ack.
	cons, err := w.js.CreateOrUpdateConsumer(ctx, events.StreamDeploy, bridge.ConsumerConfigs(ackWait, 8)[events.StreamDeploy])
	if err != nil {
		t.Fatal(err)
	}
	first, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	env, _, err := events.DecodeDeployRequest(first.Subject(), first.Headers(), first.Data())
	if err != nil {
		t.Fatal(err)
	}
	res, err := events.NewDeployResult("/operator-bridge/dead", env, ack.Sequence, events.DeployResult{
		RequestID: id, Environment: "env-k8s", App: "late", Version: "v1", Operator: "kubernetes",
		Outcome: events.Succeeded, Success: true, Message: "applied v1 to late", Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	w.publish(res)
	time.Sleep(300 * time.Millisecond) // past the duplicate window

	w.startBridge(func(o *bridgeOpts) {
		o.cfg.ExternalStreams = true
		o.cfg.AckWait = ackWait
	})
	w.eventually(20*time.Second, "the redelivery acknowledged", func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 && ci.Delivered.Consumer >= 2
	})
	// Looking left no consumer behind: after a crash hundreds of
	// redeliveries look, and a stream's consumers are limited.
	st, err := w.js.Stream(ctx, events.StreamDeploy)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range st.ConsumerNames(ctx).Name() {
		names = append(names, n)
	}
	if len(names) != 1 || names[0] != bridge.DeployConsumer {
		t.Fatalf("consumers of DEPLOY after the look: %v", names)
	}
	if got := w.storedResults()[id]; len(got) != 1 {
		t.Fatalf("%d stored results, want the one stored before: %+v", len(got), got)
	}
	if got := w.k8s.Applied("late"); len(got) != 0 {
		t.Fatalf("applied again: %v", got)
	}
}

// An operator that supports fencing refuses an apply older than one it
// accepted; the bridge reports that request superseded, saying it was sent.
func TestStaleApplyRefusedByAFencingOperatorIsSuperseded(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFencing(true)
	w.startBridge()
	id := w.deploy("env-k8s", events.DeployRequest{App: "fenced", Version: "v1"})
	if r := w.result(id); r.Outcome != events.Succeeded {
		t.Fatalf("first: %+v", r)
	}
	var last operatortest.Request // the last apply (rollout tracking also asks for status)
	for _, r := range w.k8s.Requests() {
		if r.Method == http.MethodPost {
			last = r
		}
	}
	if last.Fence == 0 || last.RequestID != id {
		t.Fatalf("apply without fencing headers: %+v", last)
	}
	// Another replica's newer apply reached the operator (here: sent by
	// hand with a higher fence), so the bridge's next fence is stale.
	op := operator.NewK8sClient(w.k8s.URL)
	if _, err := op.Apply(t.Context(), operator.ApplyRequest{App: "fenced", Version: "v9",
		Deployments: []operator.Deployment{{Version: "v9", Percent: 1}}, Fence: last.Fence + 100}); err != nil {
		t.Fatal(err)
	}
	id2 := w.deploy("env-k8s", events.DeployRequest{App: "fenced", Version: "v2"})
	r := w.result(id2)
	if r.Outcome != events.Superseded || r.Error == nil || r.Error.Code != events.CodeSuperseded || r.Error.Retryable {
		t.Fatalf("stale apply: %+v", r)
	}
	if !strings.Contains(r.Message, "refused it as stale") || strings.Contains(r.Message, "not sent") {
		t.Fatalf("message does not say the operator refused it: %q", r.Message)
	}
}

// A request that never reached its operator within the retry window says
// what held it and how often the operator was called, instead of reporting
// an operator failure.
func TestWindowSpentWaitingSaysWhatHeldIt(t *testing.T) {
	w := newWorld(t)
	r := w.startBridge(func(o *bridgeOpts) { o.cfg.RetryWindow = 2 * time.Second })
	_ = r
	kv, err := w.js.KeyValue(t.Context(), bridge.OrderBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Another replica holds the key's lease and never lets go.
	if _, err := kv.Put(t.Context(), "env-pm.held", []byte(`{"lease":{"owner":"ghost","ttl_ms":3600000}}`)); err != nil {
		t.Fatal(err)
	}
	id := w.deploy("env-pm", events.DeployRequest{App: "held", Version: "v1"})
	res := w.result(id)
	if res.Outcome != events.Failed || res.Attempts != 0 || res.Error == nil || !res.Error.Retryable {
		t.Fatalf("result: %+v", res)
	}
	for _, want := range []string{"retry window of 2s spent waiting on another replica", "after 0 operator calls"} {
		if !strings.Contains(res.Message, want) {
			t.Fatalf("message %q does not say %q", res.Message, want)
		}
	}
	if got := w.pm.Applied("held"); len(got) != 0 {
		t.Fatalf("applied while another replica held the key: %v", got)
	}
}

// A request handed to a lease holder that is gone comes back and takes the
// ordinary way: it waits the lease out and is applied, once.
func TestForwardToAGoneHolderFallsBack(t *testing.T) {
	w := newWorld(t)
	w.startBridge(func(o *bridgeOpts) { o.cfg.RetryWindow = 30 * time.Second })
	kv, err := w.js.KeyValue(t.Context(), bridge.OrderBucket)
	if err != nil {
		t.Fatal(err)
	}
	// A replica that died holding the key, with a short lease.
	if _, err := kv.Put(t.Context(), "env-pm.gone", []byte(`{"lease":{"owner":"ghost","ttl_ms":300,"forward":"operator-bridge.forward.ghost"}}`)); err != nil {
		t.Fatal(err)
	}
	id := w.deploy("env-pm", events.DeployRequest{App: "gone", Version: "v1"})
	if r := w.result(id); r.Outcome != events.Succeeded || r.Attempts != 1 {
		t.Fatalf("result: %+v", r)
	}
	if got := w.pm.Applied("gone"); len(got) != 1 {
		t.Fatalf("applied %v, want once", got)
	}
}

// A first delivery of a request whose key another replica holds is handed
// to that replica, which stores the result and answers how to settle it:
// the delivering replica neither calls the operator nor publishes anything.
func TestRequestOfAHeldKeyIsHandedToItsHolder(t *testing.T) {
	w := newWorld(t)
	w.startBridge(func(o *bridgeOpts) { o.cfg.RetryWindow = 30 * time.Second })
	kv, err := w.js.KeyValue(t.Context(), bridge.OrderBucket)
	if err != nil {
		t.Fatal(err)
	}
	// The holder is this test, listening where the lease says.
	holder := bridge.ForwardPrefix + "test"
	handed, err := w.nc.SubscribeSync(holder)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "env-pm.held", []byte(`{"lease":{"owner":"holder","ttl_ms":600000,"forward":"`+holder+`"}}`)); err != nil {
		t.Fatal(err)
	}
	id := w.deploy("env-pm", events.DeployRequest{App: "held", Version: "v1"})
	m, err := handed.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("nothing handed to the holder: %v", err)
	}
	env, req, err := events.DecodeDeployRequest(m.Header.Get("Operator-Bridge-Fwd-Subject"), m.Header, m.Data)
	if err != nil || env.ID != id || req.Version != "v1" {
		t.Fatalf("handed over: %+v %+v %v", env, req, err)
	}
	if err := m.Respond([]byte("ack")); err != nil {
		t.Fatal(err)
	}
	cons, err := w.js.Consumer(t.Context(), events.StreamDeploy, bridge.DeployConsumer)
	if err != nil {
		t.Fatal(err)
	}
	w.eventually(10*time.Second, "the request acknowledged", func() bool {
		ci, err := cons.Info(t.Context())
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	if got := w.pm.Applied("held"); len(got) != 0 {
		t.Fatalf("the delivering replica applied it too: %v", got)
	}
	if got := w.storedResults()[id]; len(got) != 0 {
		t.Fatalf("the delivering replica stored a result of its own: %+v", got)
	}
}

// A request that outlasts the shutdown grace (its operator hangs) is
// cancelled, and the replica still frees its order lease: the next replica
// need not wait it out.
func TestLeaseFreedAfterTheGrace(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFault(operatortest.Fault{Hang: true})
	r := w.startBridge(func(o *bridgeOpts) {
		o.cfg.OperatorTimeout = 10 * time.Second
		o.cfg.ShutdownGrace = time.Second
	})
	w.deploy("env-k8s", events.DeployRequest{App: "hung", Version: "v1"})
	kv, err := w.js.KeyValue(t.Context(), bridge.OrderBucket)
	if err != nil {
		t.Fatal(err)
	}
	w.eventually(10*time.Second, "the lease taken", func() bool {
		e, err := kv.Get(t.Context(), "env-k8s.hung")
		return err == nil && strings.Contains(string(e.Value()), `"lease"`)
	})
	start := time.Now()
	r.stop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("stopped in %v", d) // a figure for the log, not an assertion
	}
	e, err := kv.Get(t.Context(), "env-k8s.hung")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value()), `"lease"`) {
		t.Fatalf("lease left after shutdown: %s", e.Value())
	}
}

// A request waiting in its key's queue longer than the ack wait is kept in
// progress: JetStream never delivers it again while the bridge holds it.
func TestQueuedRequestIsNotRedelivered(t *testing.T) {
	w := newWorld(t)
	w.k8s.SetFault(operatortest.Fault{Latency: 300 * time.Millisecond})
	reg := prometheus.NewRegistry()
	w.startBridge(func(o *bridgeOpts) {
		o.cfg.AckWait = time.Second
		o.cfg.OperatorTimeout = 2 * time.Second
		o.cfg.RetryWindow = time.Minute
		o.cfg.Registerer = reg
	})
	base := time.Now().Add(-time.Minute)
	var ids []string
	for i := range 8 { // the last waits over 2 s behind the others
		ids = append(ids, w.deploy("env-k8s", events.DeployRequest{App: "queued", Version: fmt.Sprintf("v%d", i)},
			events.WithTime(base.Add(time.Duration(i)*time.Millisecond))))
	}
	w.exactlyOneResultEach(ids)
	t.Logf("applied %v; last result after %v", w.k8s.Applied("queued"), w.result(ids[len(ids)-1]).DurationMS)
	// The counter has a series only once something was delivered again.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "operator_bridge_redeliveries_total" {
			t.Fatalf("requests the bridge held were delivered again: %v", mf.GetMetric())
		}
	}
}

// A redelivery whose look for its stored result fails is nak'd, and the
// delivery after it looks again: an earlier delivery's result may be
// stored, and the request must be neither applied again nor answered twice
// (inside the duplicate window JetStream would drop the second result, but
// not the second apply).
func TestLookAgainAfterAFailedLook(t *testing.T) {
	w := newWorld(t)
	w.startBridge().stop(t) // streams, consumers and buckets made
	id := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v1", Rollout: &events.Rollout{Off: true}})
	seq := w.requestSeq("env-k8s", id)
	// A replica applied it, stored its result and ended before its ack.
	m := w.takeDelivery()
	w.storeResultOfDeadReplica(id, seq, "shop", "v1", false)
	cons, err := w.js.Consumer(t.Context(), events.StreamDeploy, bridge.DeployConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.NakWithDelay(2 * time.Second); err != nil { // its ack wait ends, in short
		t.Fatal(err)
	}
	w.startBridge()
	// The redelivery's look fails: the stream takes no more consumers.
	stream, err := w.js.Stream(t.Context(), events.StreamDeploy)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxConsumers = stream.CachedInfo().State.Consumers
	if _, err := w.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatalf("limiting the stream's consumers: %v", err)
	}
	w.eventually(10*time.Second, "the redelivery", func() bool {
		ci, err := cons.Info(t.Context())
		return err == nil && ci.Delivered.Consumer >= 2
	})
	time.Sleep(100 * time.Millisecond) // its look failed
	cfg.MaxConsumers = -1
	if _, err := w.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	w.eventually(15*time.Second, "the request acknowledged", func() bool {
		ci, err := cons.Info(t.Context())
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	if got := w.storedResults()[id]; len(got) != 1 {
		t.Fatalf("%d stored results, want the first one only: %+v", len(got), got)
	}
	if got := w.k8s.Applied("shop"); len(got) != 0 {
		t.Errorf("applied again: %v", got)
	}
}
