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
type healthBoard struct {
	mu       sync.Mutex
	env      map[string]events.Health
	failures map[operator.Operator]int  // consecutive failed checks
	checking map[operator.Operator]bool // operators with a check under way
}

func newHealthBoard() *healthBoard {
	return &healthBoard{env: make(map[string]events.Health), failures: make(map[operator.Operator]int), checking: make(map[operator.Operator]bool)}
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
// per endpoint, each mock its own) once per HealthInterval, spreading the
// checks over the interval instead of firing them in a burst, and publishes
// operator.health for each active environment after its operator's check. A change of the environment set starts a round at once
// for environments not reported yet.
func (b *Bridge) healthLoop(ctx context.Context) {
	interval := b.cfg.HealthInterval
	// The first round covers the environments loaded at start.
	select {
	case <-b.envs.changed:
	default:
	}
	for {
		round := time.Now()
		groups := operator.GroupByOperator(b.manager.Entries())
		var checks sync.WaitGroup
		for i, g := range groups {
			at := round.Add(time.Duration(i) * interval / time.Duration(len(groups)))
			if !b.waitUntil(ctx, at, func() { b.checkNew(ctx, &checks) }) {
				checks.Wait()
				return
			}
			checks.Go(func() { b.checkGroup(ctx, g) })
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
	for _, e := range b.manager.Entries() {
		if !e.Environment.Inactive && b.health.last(e.Environment.ID) == nil {
			fresh = append(fresh, e)
		}
	}
	for _, g := range operator.GroupByOperator(fresh) {
		wg.Go(func() { b.checkGroup(ctx, g) })
	}
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
	b.circuits.Done(g.Endpoint, err)
	healthy := 0.0
	if err == nil {
		healthy = 1
	}
	b.metrics.healthy.WithLabelValues(g.Endpoint).Set(healthy)

	b.health.mu.Lock()
	if err == nil {
		b.health.failures[g.Operator] = 0
	} else {
		b.health.failures[g.Operator]++
	}
	failures := b.health.failures[g.Operator]
	b.health.mu.Unlock()

	now := time.Now().UTC()
	circuit := b.circuits.State(g.Endpoint).String()
	// One check may stand for thousands of environments: their events go
	// out together and are confirmed together.
	futures := make([]jetstream.PubAckFuture, 0, len(g.Entries))
	for _, e := range g.Entries {
		h := events.Health{
			Environment: e.Environment.ID, Operator: string(e.Operator.Kind()), Endpoint: e.Endpoint,
			Healthy: err == nil, LatencyMS: latency.Milliseconds(), CheckedAt: now,
			ConsecutiveFailures: failures, Circuit: circuit,
		}
		if err != nil {
			h.Error = err.Error()
		}
		b.health.mu.Lock()
		prev, seen := b.health.env[e.Environment.ID]
		h.Changed = !seen || prev.Healthy != h.Healthy
		b.health.env[e.Environment.ID] = h
		b.health.mu.Unlock()
		if h.Changed {
			b.log.Info("operator health changed", "environment", h.Environment, "endpoint", h.Endpoint,
				"healthy", h.Healthy, "error", h.Error)
		}
		msg, merr := events.NewHealth(b.source, h)
		if merr != nil {
			b.log.Error("encode health", "environment", h.Environment, "err", merr)
			continue
		}
		f, perr := b.js.PublishMsgAsync(msg)
		if perr != nil {
			b.log.Warn("health not stored", "environment", h.Environment, "err", perr)
			continue
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case perr := <-f.Err():
			b.log.Warn("health not stored", "subject", f.Msg().Subject, "err", perr)
		case <-ctx.Done():
			return
		}
	}
}
