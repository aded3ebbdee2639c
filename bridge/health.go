package bridge

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
)

// healthBoard remembers each environment's last health event and each
// endpoint's run of failed checks.
//
// It holds only what the current environments use: forgetGone drops the
// rest when environments go away, and a check that ends after its
// environments went away records nothing.
type healthBoard struct {
	mu       sync.Mutex
	env      map[string]events.Health
	failures map[operator.Operator]int  // consecutive failed checks
	checking map[operator.Operator]bool // operators with a check under way
	gauged   map[string]bool            // endpoints with an operator_healthy series
	slots    chan struct{}              // one per check under way, healthChecksAtOnce at most
}

// healthChecksAtOnce bounds the health checks under way: with an operator
// per environment, a round is as many checks as environments.
const healthChecksAtOnce = 256

func newHealthBoard() *healthBoard {
	return &healthBoard{env: make(map[string]events.Health), failures: make(map[operator.Operator]int),
		checking: make(map[operator.Operator]bool), gauged: make(map[string]bool),
		slots: make(chan struct{}, healthChecksAtOnce)}
}

// start marks op's check as under way; false if one already is.
func (h *healthBoard) start(op operator.Operator) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checking[op] {
		return false
	}
	h.checking[op] = true
	return true
}

func (h *healthBoard) finish(op operator.Operator) {
	h.mu.Lock()
	delete(h.checking, op)
	h.mu.Unlock()
}

// changed reports whether health differs from the last one stored for its
// environment (the first one always does).
func (h *healthBoard) changed(health events.Health) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, seen := h.env[health.Environment]
	return !seen || prev.Healthy != health.Healthy
}

// last returns env's last health data, or nil before its first check.
func (h *healthBoard) last(env string) *events.Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.env[env]; ok {
		return &v
	}
	return nil
}

// healthLoop checks every distinct operator (operator.GroupByOperator: one
// per endpoint, each mock its own) once per HealthInterval, and publishes
// operator.health for each active environment after its operator's check.
// The first round checks every endpoint at once (healthChecksAtOnce at a
// time) as soon as the bridge is ready, so that health is known within one
// check's time of the start and thousands of events do not hold up the
// start; later rounds spread the checks over the interval instead of firing
// them in a burst. A change of the environment set starts a check at once
// for environments not reported yet.
func (b *Bridge) healthLoop(ctx context.Context) {
	interval := b.cfg.HealthInterval
	// The first round waits for the bridge to be ready (for healthStartWait
	// at most): the events of thousands of environments must not hold up
	// the consumers' start on the same connection.
	start := time.NewTimer(healthStartWait)
	select {
	case <-b.firstReady:
	case <-start.C:
	case <-ctx.Done():
		start.Stop()
		return
	}
	start.Stop()
	// The first round covers the environments loaded at start.
	select {
	case <-b.envs.changed:
	default:
	}
	for first := true; ; first = false {
		round := time.Now()
		groups := operator.GroupByOperator(b.manager.Entries())
		var checks sync.WaitGroup
		for i, g := range groups {
			at := round // the first round checks every endpoint at once: health is known soon after start
			if !first {
				at = round.Add(time.Duration(i) * interval / time.Duration(len(groups)))
			}
			if !b.waitUntil(ctx, at, func() { b.checkNew(ctx, &checks) }) {
				checks.Wait()
				return
			}
			if !b.goCheck(ctx, &checks, g) {
				checks.Wait()
				return
			}
		}
		if !b.waitUntil(ctx, round.Add(interval), func() { b.checkNew(ctx, &checks) }) {
			checks.Wait()
			return
		}
		checks.Wait()
	}
}

// waitUntil waits until t, running onKick whenever the environment set
// changes meanwhile; it reports false when ctx ends.
func (b *Bridge) waitUntil(ctx context.Context, t time.Time, onKick func()) bool {
	for {
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-b.envs.changed:
			timer.Stop()
			onKick()
		case <-timer.C:
			return true
		}
	}
}

// checkNew checks, at once, the endpoints of environments that have no
// health event yet.
func (b *Bridge) checkNew(ctx context.Context, wg *sync.WaitGroup) {
	var fresh []operator.Entry
	for e := range b.manager.All() {
		if !e.Environment.Inactive && b.health.last(e.Environment.ID) == nil {
			fresh = append(fresh, e)
		}
	}
	for _, g := range operator.GroupByOperator(fresh) {
		if !b.goCheck(ctx, wg, g) {
			return
		}
	}
}

// goCheck runs g's check on a goroutine of wg once fewer than
// healthChecksAtOnce are under way; false when ctx ends first.
func (b *Bridge) goCheck(ctx context.Context, wg *sync.WaitGroup, g operator.OperatorGroup) bool {
	select {
	case b.health.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	wg.Go(func() {
		defer func() { <-b.health.slots }()
		b.checkGroup(ctx, g)
	})
	return true
}

// checkGroup runs one health check for an endpoint and publishes the health
// of each of its environments.
func (b *Bridge) checkGroup(ctx context.Context, g operator.OperatorGroup) {
	if !b.health.start(g.Operator) {
		return // its check is under way; it reports every environment of the endpoint it knew of
	}
	defer b.health.finish(g.Operator)
	cctx, cancel := context.WithTimeout(ctx, b.cfg.OperatorTimeout)
	start := time.Now()
	err := g.Operator.HealthCheck(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	latency := time.Since(start)
	b.metrics.callSeconds.WithLabelValues(string(g.Operator.Kind()), "health").Observe(latency.Seconds())
	entries, failures := b.noteCheck(g, err)
	if len(entries) == 0 {
		return // its environments went away meanwhile
	}

	now := time.Now().UTC()
	circuit := b.circuits.State(g.Endpoint).String()
	// One check may stand for thousands of environments: their events go
	// out a window at a time and are confirmed in order, so that they never
	// stall the connection's asynchronous publishing. An event's health
	// counts as known only once it is stored: one that is not is published
	// again at the next check, and still says changed.
	type sent struct {
		h events.Health
		f jetstream.PubAckFuture
	}
	wait := min(b.cfg.HealthInterval, healthStoreWait)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	handled := 0 // events stored or given up
	confirm := func(p sent) bool {
		select {
		case <-p.f.Ok():
			if b.recordHealth(p.h) {
				b.log.Info("operator health changed", "environment", p.h.Environment, "endpoint", p.h.Endpoint,
					"healthy", p.h.Healthy, "error", p.h.Error)
			}
		case perr := <-p.f.Err():
			b.log.Warn("health not stored", "environment", p.h.Environment, "err", perr)
		case <-deadline.C:
			b.log.Warn("health not stored: no acknowledgement", "endpoint", g.Endpoint,
				"environments", len(entries)-handled, "waited", wait)
			return false
		case <-ctx.Done():
			return false
		}
		handled++
		return true
	}
	pending := make([]sent, 0, min(len(entries), healthWindow))
	for _, e := range entries {
		h := events.Health{
			Environment: e.Environment.ID, Operator: string(e.Operator.Kind()), Endpoint: e.Endpoint,
			Healthy: err == nil, LatencyMS: latency.Milliseconds(), CheckedAt: now,
			ConsecutiveFailures: failures, Circuit: circuit,
		}
		if err != nil {
			h.Error = err.Error()
		}
		h.Changed = b.health.changed(h)
		msg, merr := events.NewHealth(b.source, h)
		if merr != nil {
			b.log.Error("encode health", "environment", h.Environment, "err", merr)
			handled++
			continue
		}
		if len(pending) == healthWindow {
			if !confirm(pending[0]) {
				return
			}
			pending = pending[1:] // append moves the window when it reaches its array's end
		}
		f, perr := b.js.PublishMsgAsync(msg)
		if perr != nil {
			b.log.Warn("health not stored", "environment", h.Environment, "err", perr)
			handled++
			continue
		}
		pending = append(pending, sent{h, f})
	}
	for _, p := range pending {
		if !confirm(p) {
			return
		}
	}
}

// healthStartWait bounds how long the first health round waits for the
// bridge to be ready.
const healthStartWait = 5 * time.Second

// healthWindow bounds a check's health events published and not yet
// confirmed: well below the JetStream client's bound on asynchronous
// publishes (4,000), which would otherwise fail the publishes beyond it.
const healthWindow = 1000

// healthStoreWait bounds the wait for a check's events to be stored (or the
// health interval, when shorter); what is not confirmed by then is sent
// again at the next check. Without it, a publish that no stream answers
// while someone listens live would hold the health loop for good.
const healthStoreWait = 10 * time.Second

// current reports whether e is still the active entry of its environment.
func (b *Bridge) current(e operator.Entry) bool {
	cur, err := b.manager.Lookup(e.Environment.ID)
	return err == nil && cur.Operator == e.Operator
}

// noteCheck records the outcome of g's health check (circuit, gauge, run of
// failures) for the entries of g that are still current, and returns them
// with the run of failures. Holding the board's lock, it cannot bring back
// what forgetGone drops.
func (b *Bridge) noteCheck(g operator.OperatorGroup, err error) ([]operator.Entry, int) {
	h := b.health
	h.mu.Lock()
	defer h.mu.Unlock()
	entries := make([]operator.Entry, 0, len(g.Entries))
	for _, e := range g.Entries {
		if b.current(e) {
			entries = append(entries, e)
		}
	}
	if len(entries) == 0 {
		return nil, 0
	}
	b.circuits.Checked(g.Endpoint, err)
	healthy := 0.0
	if err == nil {
		healthy = 1
	}
	b.metrics.healthy.WithLabelValues(g.Endpoint).Set(healthy)
	h.gauged[g.Endpoint] = true
	if err == nil {
		h.failures[g.Operator] = 0
	} else {
		h.failures[g.Operator]++
	}
	return entries, h.failures[g.Operator]
}

// recordHealth keeps health, stored, as its environment's last, unless the
// environment went away meanwhile; it reports whether the health changed.
func (b *Bridge) recordHealth(health events.Health) bool {
	h := b.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := b.manager.Lookup(health.Environment); err != nil {
		return false
	}
	prev, seen := h.env[health.Environment]
	h.env[health.Environment] = health
	return !seen || prev.Healthy != health.Healthy
}

// forgetGone drops the last health of environments that are gone or
// inactive, and the failure counts, circuits and per-endpoint series of
// operators and endpoints that no active environment uses any more. An
// environment that comes back starts afresh: its first event says changed.
func (b *Bridge) forgetGone() {
	ops := map[operator.Operator]bool{}
	endpoints := map[string]bool{}
	for e := range b.manager.All() {
		if !e.Environment.Inactive {
			ops[e.Operator], endpoints[e.Endpoint] = true, true
		}
	}
	h := b.health
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range h.env {
		if _, err := b.manager.Lookup(id); err != nil { // gone or inactive
			delete(h.env, id)
		}
	}
	for op := range h.failures {
		if !ops[op] {
			delete(h.failures, op)
		}
	}
	for ep := range h.gauged {
		if !endpoints[ep] {
			delete(h.gauged, ep)
			b.metrics.healthy.DeleteLabelValues(ep)
		}
	}
	for _, ep := range b.circuits.forget(endpoints) {
		b.metrics.circuit.DeleteLabelValues(ep)
	}
}
