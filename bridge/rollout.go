package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
)

// Rollout tracking (io.boreas.deploy.progress.v1, docs/rollouts.md). After a
// deploy request was applied and its result stored, the bridge follows the
// app's status on its operator until the rollout converges, degrades, times
// out or is superseded, and publishes deploy.progress.<env> events on the
// way.
//
// Each tracked request is one key of the bucket RolloutBucket, whose value
// (rolloutState) holds everything a replica needs to go on: the target, the
// start time and deadline, the last event, and the lease. One replica
// tracks a request at a time: the one named as owner, which rewrites the
// value (a compare-and-set on its revision) at least every lease/3. Another
// replica takes a request over when it has seen the same revision unchanged
// for a whole lease on its own monotonic clock (never by comparing clocks),
// or at once when its owner let it go on shutdown.
//
// Every event has a deterministic id (events.ProgressEventID, and
// events.FinalProgressID for the final one) and is recorded in the value as
// pending before it is published, so a replica that takes over publishes
// the pending event again under the same Nats-Msg-Id, which JetStream
// stores once. After the final event is stored the value says done and
// nothing more is published for the request.
//
// The first look at a rollout happens before the deploy request is
// acknowledged, in its key's turn, its status call overlapping the store of
// the result: a rollout already final then (the mock's) gets its final
// event and no state at all. A redelivery of the request finds its stored
// result, which says the rollout is tracked; it tracks the rollout only if
// neither its state nor its final event exists (the replica that stored
// the result may have ended right after).

// RolloutBucket holds the state of every tracked rollout.
const RolloutBucket = "operator-bridge-rollouts"

// RolloutBucketConfig is the bucket of tracked rollouts. Finished entries
// go with the bucket's max age; a tracked entry is rewritten far more often.
func RolloutBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      RolloutBucket,
		Description: "operator-bridge: rollouts being tracked (key = final progress event id)",
		History:     1,
		TTL:         24 * time.Hour,
		Storage:     jetstream.FileStorage,
	}
}

const (
	// maxRollouts bounds the rollouts one replica tracks at once; the rest
	// wait in the bucket for a replica with room.
	maxRollouts = 1000
	// natsWait bounds every wait on NATS of the tracker.
	natsWait = 5 * time.Second
	// handBackWait bounds the write that hands a rollout back at shutdown.
	handBackWait = 2 * time.Second
	// firstLook bounds the first status call, made before the deploy
	// request is acknowledged.
	firstLook = 2 * time.Second
	// percentTolerance is how close a version must be to its target percent.
	percentTolerance = 0.01 + 1e-9
)

// rolloutState is the value of a tracked request's key.
type rolloutState struct {
	RequestID   string          `json:"request_id"`
	Environment string          `json:"environment"`
	App         string          `json:"app"`
	TraceParent string          `json:"traceparent,omitempty"`
	Seq         uint64          `json:"seq"`  // the request's stream sequence
	Time        time.Time       `json:"time"` // the request's order time
	Target      []events.Target `json:"target"`
	MinHealthy  int             `json:"min_healthy"`
	Started     time.Time       `json:"started"` // when its result was stored
	Deadline    time.Time       `json:"deadline"`

	// Owner is the replica tracking it; empty when none does.
	Owner string `json:"owner,omitempty"`
	// Beat changes on every write, so a live owner's value never stays at
	// one revision for long.
	Beat uint64 `json:"beat"`

	// Sent counts the events made; Last is the last one, Pending while it
	// may not be stored yet.
	Sent    int                    `json:"sent"`
	Last    *events.DeployProgress `json:"last,omitempty"`
	Pending bool                   `json:"pending,omitempty"`
	// Unhealthy says since when each target version at its percent has been
	// below MinHealthy.
	Unhealthy map[string]time.Time `json:"unhealthy,omitempty"`
	// Done: the final event is stored.
	Done bool `json:"done,omitempty"`
}

func (s *rolloutState) envelope() events.Envelope {
	return events.Envelope{ID: s.RequestID, Environment: s.Environment, TraceParent: s.TraceParent}
}

// orderRef names a request in the order of its key.
type orderRef struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"` // zero when unknown
	Seq  uint64    `json:"seq"`
}

// newerThan reports whether o comes after the tracked request st (an
// unknown time counts as newer: the order state only names newer ones).
func (o orderRef) newerThan(st *rolloutState) bool {
	if o.ID == "" || o.ID == st.RequestID {
		return false
	}
	return o.Time.IsZero() || (ref{ID: st.RequestID, Time: st.Time, Seq: st.Seq}).before(ref{ID: o.ID, Time: o.Time, Seq: o.Seq})
}

// orderView is what the order state of a key says about supersession.
type orderView struct {
	// Reached is the newest request known to have reached the operator
	// (applied, or sent with no answer recorded).
	Reached orderRef
	// Sending is the request being sent now, whose answer is not recorded
	// yet; it may still be refused.
	Sending orderRef
}

// orderLookup reads the order state of env and app. The order step may
// provide its own; the default reads the order bucket.
type orderLookup func(ctx context.Context, env, app string) (orderView, error)

// rollouts is the tracker of one replica.
type rollouts struct {
	b     *Bridge
	kv    jetstream.KeyValue
	order orderLookup
	lease time.Duration
	log   *slog.Logger

	tracked prometheus.Gauge
	finals  *prometheus.CounterVec

	mu      sync.Mutex
	running map[string]bool     // keys tracked here
	seen    map[string]seenItem // the bucket as the watcher saw it
	open    bool                // run is going: tracking may start here
	wg      sync.WaitGroup
	ctx     context.Context // run's, for tracking goroutines
}

// seenItem is one key of the bucket and since when (monotonic) this replica
// has seen its revision.
type seenItem struct {
	rev   uint64
	state rolloutState
	since time.Time
}

func newRollouts(b *Bridge) *rollouts {
	r := &rollouts{
		b: b, log: b.log,
		// One lease covers two rounds of a poll and a status call, and the
		// writes around them; the owner rewrites the value every third of it.
		lease: 2*(b.cfg.RolloutPoll+b.cfg.OperatorTimeout) + 2*time.Second,
		tracked: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "operator_bridge", Name: "rollouts_tracked",
			Help: "Rollouts this replica is following now.",
		}),
		finals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "operator_bridge", Name: "rollouts_total",
			Help: "Rollouts this replica ended, by final phase.",
		}, []string{"phase"}),
		running: make(map[string]bool),
		seen:    make(map[string]seenItem),
	}
	for _, c := range []prometheus.Collector{r.tracked, r.finals} {
		if err := b.cfg.Registerer.Register(c); err != nil {
			b.log.Warn("rollout metrics", "err", err)
		}
	}
	return r
}

// setup creates the rollouts bucket (the bridge's own state, whatever
// MANAGE_STREAMS says) and finds the order bucket.
func (r *rollouts) setup(ctx context.Context) error {
	kv, err := r.b.bucket(ctx, RolloutBucketConfig())
	if err != nil {
		return fmt.Errorf("key-value bucket %s: %w", RolloutBucket, err)
	}
	r.kv = kv
	if r.order == nil {
		order, err := r.b.js.KeyValue(ctx, OrderBucket)
		if err != nil {
			return fmt.Errorf("key-value bucket %s: %w", OrderBucket, err)
		}
		r.order = orderFromBucket(order)
	}
	return nil
}

// orderFromBucket reads a key's order state, {"applied": ref, "floor": ref,
// "sent": ref, ...} with ref {"id", "time", "seq"}, tolerating any other
// fields and any missing one.
func orderFromBucket(kv jetstream.KeyValue) orderLookup {
	return func(ctx context.Context, env, app string) (orderView, error) {
		ctx, cancel := context.WithTimeout(ctx, natsWait)
		defer cancel()
		e, err := kv.Get(ctx, orderKey(env, app))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return orderView{}, nil
		}
		if err != nil {
			return orderView{}, err
		}
		var st struct {
			Applied *orderRef `json:"applied"`
			Floor   *orderRef `json:"floor"`
			Sent    *orderRef `json:"sent"`
		}
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return orderView{}, nil // a shape we do not know: no supersession seen
		}
		var v orderView
		for _, r := range []*orderRef{st.Applied, st.Floor} {
			if r != nil && (v.Reached.ID == "" || (ref{Time: v.Reached.Time, Seq: v.Reached.Seq}).before(ref{Time: r.Time, Seq: r.Seq})) {
				v.Reached = *r
			}
		}
		if st.Sent != nil {
			v.Sending = *st.Sent
		}
		return v, nil
	}
}

// rolloutTracked is the value of events.HeaderBridgeRollout on the result
// of a request whose rollout is followed.
const rolloutTracked = "tracked"

// rolloutFor is the rollout of j's request, counted from started.
func (b *Bridge) rolloutFor(j *deployJob, started time.Time) rolloutState {
	when := j.env.Time
	if when.IsZero() {
		when = j.meta.Timestamp
	}
	timeout := b.cfg.RolloutTimeout
	if j.req.Rollout != nil && j.req.Rollout.Timeout > 0 {
		timeout = j.req.Rollout.Timeout
	}
	return rolloutState{
		RequestID: j.env.ID, Environment: j.env.Environment, App: j.req.App, TraceParent: j.env.TraceParent,
		Seq: j.meta.Sequence.Stream, Time: when, Target: j.req.Targets(), MinHealthy: j.req.Rollout.Threshold(),
		Started: started, Deadline: started.Add(timeout),
	}
}

// lookAhead starts the first look at the rollout of j's request on its own
// goroutine, so that the status call overlaps the store of j's result;
// trackRollout takes what it saw. Nothing newer can be applied meanwhile:
// this replica holds the key's turn.
func (b *Bridge) lookAhead(ctx context.Context, j *deployJob) func() *follower {
	seen := make(chan *follower, 1)
	st := b.rolloutFor(j, time.Now())
	go func() { seen <- b.rollouts.look(ctx, st, false) }()
	return func() *follower { return <-seen }
}

// trackRollout hands a request whose apply succeeded and whose result is
// stored to the tracker, unless its rollout field turns tracking off: with
// the first look lookAhead made, or, for a message an earlier delivery
// applied (j.ensure), once it is sure that delivery did not track it.
func (b *Bridge) trackRollout(ctx context.Context, j *deployJob, ahead func() *follower) error {
	if !j.req.Rollout.Tracked() {
		return nil
	}
	var err error
	switch {
	case j.ensure:
		started := time.Now()
		if !j.resultAt.IsZero() {
			started = j.resultAt // the rollout counts from its stored result
		}
		err = b.rollouts.ensure(ctx, b.rolloutFor(j, started))
	case ahead != nil:
		f := ahead()
		// The rollout counts from its stored result: now.
		timeout := f.st.Deadline.Sub(f.st.Started)
		f.st.Started = time.Now()
		f.st.Deadline = f.st.Started.Add(timeout)
		if f.st.Last != nil {
			f.st.Last.ElapsedMS = 0
		}
		err = b.rollouts.record(ctx, f)
	default:
		err = b.rollouts.track(ctx, b.rolloutFor(j, time.Now()), false)
	}
	if err != nil {
		b.log.Error("rollout not tracked", "environment", j.env.Environment, "app", j.req.App, "request_id", j.env.ID, "err", err)
	}
	return err
}

// ensure tracks st unless an earlier delivery of its request did: its
// state is in the bucket, or its final event is stored (a rollout final
// at its first look leaves no state).
func (r *rollouts) ensure(ctx context.Context, st rolloutState) error {
	key := events.FinalProgressID(st.RequestID, st.Seq)
	gctx, cancel := context.WithTimeout(ctx, natsWait)
	_, err := r.kv.Get(gctx, key)
	cancel()
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("rollout state %s: %w", key, err)
	}
	final, err := r.b.answered(ctx, events.StreamDeploy, events.DeployProgressSubject(st.Environment), key, st.Seq)
	if err != nil {
		return fmt.Errorf("looking for its final progress event: %w", err)
	}
	if final != nil {
		return nil
	}
	// Newer requests may have been applied since: the first look checks.
	return r.track(ctx, st, true)
}

// track looks at a rollout (checking supersession with checkOrder) and
// records it.
func (r *rollouts) track(ctx context.Context, st rolloutState, checkOrder bool) error {
	return r.record(ctx, r.look(ctx, st, checkOrder))
}

// look makes the first observation of st's rollout, pending in the
// follower it returns (none when the status call failed).
func (r *rollouts) look(ctx context.Context, st rolloutState, checkOrder bool) *follower {
	f := &follower{r: r, key: events.FinalProgressID(st.RequestID, st.Seq), st: st}
	lctx, cancel := context.WithTimeout(ctx, min(r.b.cfg.OperatorTimeout, firstLook))
	first := f.observe(lctx, checkOrder)
	cancel()
	if f.statusErr == nil && ctx.Err() == nil {
		first.Final = first.Phase.Final()
		f.st.Sent, f.st.Last, f.st.Pending = 1, &first, true
	}
	return f
}

// record records a rollout after its first look and, when this replica has
// room, starts following it at once. One already final (the mock's, or an
// operator that applies at once) needs no state, only its final event;
// another starts with its first event recorded, which the follower
// publishes.
func (r *rollouts) record(ctx context.Context, f *follower) error {
	if f.st.Pending && f.st.Last.Final && f.publish(ctx) {
		return nil
	}
	key, st := f.key, f.st
	r.mu.Lock()
	mine := r.open && len(r.running) < maxRollouts
	if mine {
		st.Owner = r.b.owner
		r.running[key] = true // reserved, so the watcher does not race us
	}
	r.mu.Unlock()
	data, err := json.Marshal(st)
	if err != nil {
		r.release(key)
		return err
	}
	var rev uint64
	for attempt := range 3 {
		cctx, cancel := context.WithTimeout(ctx, natsWait)
		rev, err = r.kv.Create(cctx, key, data)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrKeyExists) || ctx.Err() != nil {
			break
		}
		if !sleep(ctx, time.Duration(attempt+1)*100*time.Millisecond) {
			break
		}
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Tracked already (this delivery's twin got here first).
		r.release(key)
		return nil
	}
	if err != nil {
		r.release(key)
		return fmt.Errorf("rollout state %s: %w", key, err)
	}
	if mine {
		r.start(key, rev, st)
	}
	return nil
}

// start follows key on its own goroutine; running[key] is already set.
func (r *rollouts) start(key string, rev uint64, st rolloutState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.open {
		delete(r.running, key)
		return
	}
	r.tracked.Inc()
	r.wg.Go(func() {
		defer r.tracked.Dec()
		defer r.release(key)
		r.follow(r.ctx, key, rev, st)
	})
}

func (r *rollouts) release(key string) {
	r.mu.Lock()
	delete(r.running, key)
	r.mu.Unlock()
}

// run watches the bucket and takes over the rollouts nobody follows, until
// ctx ends; then it stops following, hands its rollouts back (owner
// cleared, so another replica goes on at once) and returns.
func (r *rollouts) run(ctx context.Context) {
	r.mu.Lock()
	r.ctx, r.open = ctx, true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.open = false
		r.mu.Unlock()
		r.wg.Wait()
	}()
	tick := time.NewTicker(max(r.lease/4, 10*time.Millisecond))
	defer tick.Stop()
	for ctx.Err() == nil {
		w, err := r.kv.WatchAll(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("rollouts watch", "err", err)
			}
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		r.watch(ctx, w, tick.C)
		_ = w.Stop()
	}
}

// watch keeps r.seen up to date from w and looks for rollouts to take at
// every tick, until ctx ends or w stops.
func (r *rollouts) watch(ctx context.Context, w jetstream.KeyWatcher, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				r.saw(e)
			}
		case <-tick:
			r.takeOver(ctx)
		}
	}
}

// saw records one update of the bucket.
func (r *rollouts) saw(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := e.Key()
	var st rolloutState
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &st) != nil || st.Done {
		delete(r.seen, key)
		return
	}
	if old, ok := r.seen[key]; ok && old.rev == e.Revision() {
		return
	}
	r.seen[key] = seenItem{rev: e.Revision(), state: st, since: time.Now()}
}

// takeOver takes the rollouts whose owner let them go, or whose value has
// not changed for a whole lease, as far as this replica has room.
func (r *rollouts) takeOver(ctx context.Context) {
	type candidate struct {
		key string
		it  seenItem
	}
	var due []candidate
	r.mu.Lock()
	room := maxRollouts - len(r.running)
	for key, it := range r.seen {
		if room <= 0 {
			break
		}
		if r.running[key] {
			continue
		}
		if it.state.Owner == "" || it.state.Owner == r.b.owner || time.Since(it.since) >= r.lease {
			due = append(due, candidate{key, it})
			r.running[key] = true
			room--
		}
	}
	r.mu.Unlock()
	for _, c := range due {
		st := c.it.state
		prev := st.Owner
		st.Owner = r.b.owner
		st.Beat++
		rev, err := r.write(ctx, c.key, c.it.rev, st)
		if err != nil {
			// Someone else wrote first (a live owner, or a faster replica).
			r.release(c.key)
			continue
		}
		r.log.Info("rollout taken over", "environment", st.Environment, "app", st.App, "request_id", st.RequestID, "from", prev)
		r.start(c.key, rev, st)
	}
}

// write stores st under key if the key is still at rev.
func (r *rollouts) write(ctx context.Context, key string, rev uint64, st rolloutState) (uint64, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, natsWait)
	defer cancel()
	return r.kv.Update(ctx, key, data, rev)
}

// follower is one rollout being followed by this replica.
type follower struct {
	r         *rollouts
	key       string
	rev       uint64
	st        rolloutState
	dirty     bool      // st has changes not yet written
	statusErr error     // the last status call's error
	lastWrite time.Time // monotonic: when the last successful write started
	sending   sendSeen  // a newer request seen being sent, and since when
}

// sendSeen is a request seen, and since when (monotonic).
type sendSeen struct {
	id    string
	since time.Time
}

// follow tracks one rollout until its final event is stored, the lease is
// lost, or ctx ends (then it hands the rollout back). Each round: write
// what is not written, publish what is pending, then observe once and, when
// something changed, record the new event as pending and publish it. An
// event is published only after the write that records it, and a write
// succeeds only while this replica still holds the lease.
func (r *rollouts) follow(ctx context.Context, key string, rev uint64, st rolloutState) {
	f := &follower{r: r, key: key, rev: rev, st: st, lastWrite: time.Now()}
	poll := r.b.cfg.RolloutPoll
	wait := time.Duration(0)
	if st.Sent > 0 && !st.Pending {
		wait = jitter(poll) // taken over: keep to one event per poll
	}
	for {
		if !sleep(ctx, wait) {
			f.handBack(ctx)
			return
		}
		wait = jitter(poll)
		if f.dirty {
			if !f.save(ctx) {
				return
			}
			if f.dirty {
				continue // NATS trouble: try again next round
			}
		}
		if f.st.Done {
			return
		}
		if f.st.Pending {
			// Published again (the same id) or for the first time: either
			// way this round's event; the next observation waits a poll.
			f.publish(ctx)
			continue
		}
		next := f.observe(ctx, true)
		next.Final = next.Phase.Final()
		if ctx.Err() != nil {
			f.handBack(ctx)
			return
		}
		if f.st.Last != nil && sameProgress(*f.st.Last, next) {
			if f.dirty || time.Since(f.lastWrite) >= r.lease/3 {
				f.dirty = true
				if !f.save(ctx) {
					return
				}
			}
			continue
		}
		f.st.Sent++
		f.st.Last, f.st.Pending, f.dirty = &next, true, true
		if !f.save(ctx) {
			return
		}
		if !f.dirty && f.publish(ctx) && f.st.Done {
			if !f.save(ctx) || !f.dirty {
				return
			}
		}
	}
}

// save writes the follower's state; false when the lease is lost. On other
// trouble it leaves f.dirty set.
func (f *follower) save(ctx context.Context) bool {
	f.st.Beat++
	start := time.Now()
	rev, err := f.r.write(ctx, f.key, f.rev, f.st)
	if err == nil {
		f.rev, f.lastWrite, f.dirty = rev, start, false
		return true
	}
	if isConflict(err) {
		f.r.log.Info("rollout lease lost", "environment", f.st.Environment, "app", f.st.App, "request_id", f.st.RequestID)
		return false
	}
	f.r.log.Warn("rollout state not saved; will retry", "environment", f.st.Environment, "app", f.st.App, "request_id", f.st.RequestID, "err", err)
	return true
}

// publish stores the pending event (under its deterministic id) and, for a
// final one, marks the rollout done (to be written). It reports whether
// the event is stored.
func (f *follower) publish(ctx context.Context) bool {
	ev := *f.st.Last
	msg, err := events.NewDeployProgress(f.r.b.source, f.st.envelope(), f.st.Seq, f.st.Sent, ev)
	if err != nil {
		// Cannot happen with the phases this file makes; do not loop on it.
		f.r.log.Error("progress event cannot be made", "request_id", f.st.RequestID, "err", err)
		f.st.Pending, f.dirty = false, true
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, natsWait)
	_, err = f.r.b.js.PublishMsg(pctx, msg)
	cancel()
	if err != nil {
		f.r.log.Warn("progress event not stored; will retry", "environment", f.st.Environment, "app", f.st.App, "request_id", f.st.RequestID, "err", err)
		return false
	}
	// Pending is cleared in the next write that happens anyway; a replica
	// taking over before then publishes it again under the same id.
	f.st.Pending = false
	level := slog.LevelDebug
	if ev.Final {
		level = slog.LevelInfo
		f.st.Done, f.dirty = true, true
		f.r.finals.WithLabelValues(string(ev.Phase)).Inc()
	}
	f.r.log.Log(ctx, level, "rollout "+string(ev.Phase), "environment", ev.Environment, "app", ev.App,
		"request_id", ev.RequestID, "message", ev.Message, "elapsed", time.Duration(ev.ElapsedMS)*time.Millisecond)
	return true
}

// handBack clears the owner so that another replica goes on at once.
func (f *follower) handBack(ctx context.Context) {
	// Short: it runs inside the bridge's shutdown grace.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handBackWait)
	defer cancel()
	f.st.Owner = ""
	f.st.Beat++
	_, _ = f.r.write(ctx, f.key, f.rev, f.st)
}

// observe makes the progress event the rollout's state calls for now: it
// checks supersession (unless told not to), asks the operator for the app's
// status once, and judges the answer.
func (f *follower) observe(ctx context.Context, checkOrder bool) events.DeployProgress {
	st := &f.st
	now := time.Now()
	p := events.DeployProgress{
		RequestID: st.RequestID, Environment: st.Environment, App: st.App, Target: st.Target,
		Observed:  appStatus(operator.DegradedStatus(st.App)),
		ElapsedMS: max(now.Sub(st.Started).Milliseconds(), 0),
	}
	if st.Last != nil {
		p.Observed = st.Last.Observed
	}
	if checkOrder {
		if msg := f.superseded(ctx, now); msg != "" {
			p.Phase, p.Message = events.PhaseSuperseded, msg
			return p
		}
	}
	status, err := f.status(ctx)
	f.statusErr = err
	if err != nil {
		p.Phase = events.PhaseProgressing
		p.Message = fmt.Sprintf("status call failed: %v; retrying every %s", err, f.r.b.cfg.RolloutPoll)
		if !now.Before(st.Deadline) {
			p.Phase = events.PhaseTimedOut
			p.Message = fmt.Sprintf("not converged within %s; last status call failed: %v", st.Deadline.Sub(st.Started).Round(time.Millisecond), err)
		}
		return p
	}
	p.Observed = status
	p.Phase, p.Message = judge(st, status, now, f.r.b.cfg.RolloutGrace)
	return p
}

// superseded says, when it is so, that a newer request of the key reached
// the operator: applied, or sent with no answer recorded. A newer request
// being sent counts once it has been seen sending for a whole lease (the
// replica sending it may have died after the call); before that it may
// still be refused.
func (f *follower) superseded(ctx context.Context, now time.Time) string {
	st := &f.st
	v, err := f.r.order(ctx, st.Environment, st.App)
	if err != nil {
		return "" // asked again next poll
	}
	if v.Reached.newerThan(st) {
		return fmt.Sprintf("superseded by request %s, applied for %s/%s after this one", v.Reached.ID, st.Environment, st.App)
	}
	if !v.Sending.newerThan(st) {
		f.sending = sendSeen{}
		return ""
	}
	if f.sending.id != v.Sending.ID {
		f.sending = sendSeen{id: v.Sending.ID, since: now}
		return ""
	}
	if now.Sub(f.sending.since) < f.r.lease {
		return ""
	}
	return fmt.Sprintf("superseded by request %s, sent to the operator for %s/%s after this one", v.Sending.ID, st.Environment, st.App)
}

func (f *follower) status(ctx context.Context) (events.AppStatus, error) {
	entry, err := f.r.b.manager.Lookup(f.st.Environment)
	if err != nil {
		return events.AppStatus{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.r.b.cfg.OperatorTimeout)
	defer cancel()
	start := time.Now()
	st, err := entry.Operator.Status(ctx, f.st.App)
	f.r.b.metrics.callSeconds.WithLabelValues(string(entry.Operator.Kind()), "status").Observe(time.Since(start).Seconds())
	if err != nil {
		return events.AppStatus{}, err
	}
	return appStatus(st), nil
}

// judge gives the phase and message of an observed status, and keeps
// st.Unhealthy: since when each target version at its percent has been
// below st.MinHealthy.
func judge(st *rolloutState, obs events.AppStatus, now time.Time, grace time.Duration) (events.Phase, string) {
	var waiting, unhealthy, stray []string
	degraded := ""
	inTarget := make(map[string]bool, len(st.Target))
	for _, t := range st.Target {
		inTarget[t.Version] = true
		var v events.VersionStatus
		found := false
		for _, o := range obs.Versions {
			if o.Version == t.Version {
				v, found = o, true
				break
			}
		}
		if abs(v.Percent-t.Percent) > percentTolerance {
			waiting = append(waiting, fmt.Sprintf("%s at %s of %s", t.Version, pct(v.Percent), pct(t.Percent)))
			delete(st.Unhealthy, t.Version)
			continue
		}
		if !found || t.Percent <= 0 || v.Healthy.Level >= st.MinHealthy {
			// A version meant to have no traffic has no health to judge.
			delete(st.Unhealthy, t.Version)
			continue
		}
		if st.Unhealthy == nil {
			st.Unhealthy = map[string]time.Time{}
		}
		since, ok := st.Unhealthy[t.Version]
		if !ok {
			since = now
			st.Unhealthy[t.Version] = now
		}
		unhealthy = append(unhealthy, fmt.Sprintf("%s at %s with health %d below %d", t.Version, pct(v.Percent), v.Healthy.Level, st.MinHealthy))
		if now.Sub(since) > grace && degraded == "" {
			degraded = fmt.Sprintf("%s at %s has health %d, below %d for longer than %s", t.Version, pct(v.Percent), v.Healthy.Level, st.MinHealthy, grace)
		}
	}
	for _, o := range obs.Versions {
		if !inTarget[o.Version] && o.Percent > 0 {
			stray = append(stray, fmt.Sprintf("%s still at %s", o.Version, pct(o.Percent)))
		}
	}
	if len(waiting)+len(unhealthy)+len(stray) == 0 {
		var parts []string
		for _, t := range st.Target {
			parts = append(parts, fmt.Sprintf("%s at %s", t.Version, pct(t.Percent)))
		}
		return events.PhaseConverged, fmt.Sprintf("converged: %s, health at least %d", strings.Join(parts, ", "), st.MinHealthy)
	}
	if degraded != "" {
		return events.PhaseDegraded, "degraded: " + degraded
	}
	msg := strings.Join(append(append(waiting, unhealthy...), stray...), ", ")
	if !now.Before(st.Deadline) {
		return events.PhaseTimedOut, fmt.Sprintf("not converged within %s: %s", st.Deadline.Sub(st.Started).Round(time.Millisecond), msg)
	}
	return events.PhaseProgressing, msg
}

// sameProgress reports whether two events tell the same (the elapsed time
// aside): no event is due while nothing changes.
func sameProgress(a, b events.DeployProgress) bool {
	a.ElapsedMS, b.ElapsedMS = 0, 0
	aj, err1 := json.Marshal(a)
	bj, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(aj) == string(bj)
}

// jitter spreads the status calls of many rollouts: d to d + 20 %, never
// less than d, so that events stay at most one per poll.
func jitter(d time.Duration) time.Duration {
	if d < 5 {
		return d
	}
	return d + rand.N(d/5)
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// pct writes a fraction as a percentage: 0.2 -> "20%".
func pct(f float64) string {
	s := fmt.Sprintf("%.1f", f*100)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return s + "%"
}
