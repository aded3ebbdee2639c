package operator

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one environment and its operator.
type Entry struct {
	Environment Environment // OperatorURL holds the effective operator URL
	Operator    Operator
	// Endpoint is where the operator is, without credentials: its base URL,
	// or MockEndpoint. Environments sharing a client have the same Endpoint.
	Endpoint string
}

// Manager maps environment IDs to their operators. Lookups read an immutable
// snapshot through an atomic pointer, so they never wait; Replace swaps the
// whole set at once and RegisterOperator copies it. The zero Manager is
// empty and ready to use; it is safe for concurrent use.
type Manager struct {
	snap atomic.Pointer[map[string]Entry]
	mu   sync.Mutex // serializes writers
}

// NewManager returns an empty manager.
func NewManager() *Manager { return new(Manager) }

func (m *Manager) entries() map[string]Entry {
	if p := m.snap.Load(); p != nil {
		return *p
	}
	return nil
}

// RegisterOperator adds op as the operator of env, replacing any entry with
// the same ID.
func (m *Manager) RegisterOperator(env Environment, op Operator) {
	e := Entry{Environment: env, Operator: op, Endpoint: endpointOf(env, op)}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.entries()
	next := make(map[string]Entry, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[env.ID] = e
	m.snap.Store(&next)
}

// Replace makes entries the manager's whole set, atomically. For the same
// ID, the later entry wins. An entry without an Endpoint gets one as in
// RegisterOperator.
func (m *Manager) Replace(entries []Entry) {
	next := make(map[string]Entry, len(entries))
	for _, e := range entries {
		if e.Endpoint == "" {
			e.Endpoint = endpointOf(e.Environment, e.Operator)
		}
		next[e.Environment.ID] = e
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.Store(&next)
}

// endpointOf is op's Endpoint when it has one, else env's URL without
// credentials.
func endpointOf(env Environment, op Operator) string {
	if ep, ok := op.(interface{ Endpoint() string }); ok {
		return ep.Endpoint()
	}
	if op != nil && op.Kind() == Mock {
		return MockEndpoint
	}
	return redactString(env.OperatorURL)
}

// Lookup returns the entry of envID. It fails with ErrUnknownEnvironment
// when there is none, and with ErrEnvironmentInactive (returning the entry
// too) when the environment is inactive.
func (m *Manager) Lookup(envID string) (Entry, error) {
	e, ok := m.entries()[envID]
	if !ok {
		return Entry{}, fmt.Errorf("%w %q", ErrUnknownEnvironment, envID)
	}
	if e.Environment.Inactive {
		return e, fmt.Errorf("%w %q", ErrEnvironmentInactive, envID)
	}
	return e, nil
}

// Entries returns every entry, sorted by environment ID.
func (m *Manager) Entries() []Entry {
	cur := m.entries()
	out := make([]Entry, 0, len(cur))
	for _, e := range cur {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Environment.ID < out[j].Environment.ID })
	return out
}

// Len returns the number of environments.
func (m *Manager) Len() int { return len(m.entries()) }

// Apply applies req with envID's operator.
func (m *Manager) Apply(ctx context.Context, envID string, req ApplyRequest) (ApplyResponse, error) {
	e, err := m.Lookup(envID)
	if err != nil {
		return ApplyResponse{}, err
	}
	return e.Operator.Apply(ctx, req)
}

// Status asks envID's operator for app's status.
func (m *Manager) Status(ctx context.Context, envID, app string) (Status, error) {
	e, err := m.Lookup(envID)
	if err != nil {
		return Status{}, err
	}
	return e.Operator.Status(ctx, app)
}

// StatusOrDegraded is Status that, when the environment or its operator
// fails, returns DegradedStatus(app), true and the error.
func (m *Manager) StatusOrDegraded(ctx context.Context, envID, app string) (st Status, degraded bool, err error) {
	st, err = m.Status(ctx, envID, app)
	if err != nil {
		return DegradedStatus(app), true, err
	}
	return st, false, nil
}

// HealthCheck checks envID's operator.
func (m *Manager) HealthCheck(ctx context.Context, envID string) error {
	e, err := m.Lookup(envID)
	if err != nil {
		return err
	}
	return e.Operator.HealthCheck(ctx)
}

// HealthResult is the outcome of one environment's health check.
type HealthResult struct {
	Entry     Entry
	Err       error // nil when healthy
	Latency   time.Duration
	CheckedAt time.Time
}

// healthConcurrency bounds the health checks CheckHealth runs at once.
const healthConcurrency = 8

// CheckHealth checks the operator of every active environment once, for a
// periodic health report: environments sharing an endpoint share one check.
// The results are sorted by environment ID. The caller's ctx bounds the whole
// round; each check is also bounded by its client's timeout.
func (m *Manager) CheckHealth(ctx context.Context) []HealthResult {
	groups := GroupByOperator(m.Entries())
	results := make([]HealthResult, len(groups))
	sem := make(chan struct{}, healthConcurrency)
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			err := g.Operator.HealthCheck(ctx)
			results[i] = HealthResult{Err: err, Latency: time.Since(start), CheckedAt: start}
		})
	}
	wg.Wait()
	var out []HealthResult
	for i, g := range groups {
		for _, e := range g.Entries {
			r := results[i]
			r.Entry = e
			out = append(out, r)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Entry.Environment.ID < out[b].Entry.Environment.ID })
	return out
}

// OperatorGroup is the active environments that share one operator, and so
// one health check: every environment on one HTTP endpoint, or one
// environment's own mock.
type OperatorGroup struct {
	Endpoint string   // the shared endpoint ("mock" for a mock)
	Operator Operator // the shared operator
	Entries  []Entry
}

// GroupByOperator groups the active entries by the operator they share,
// sorted by endpoint, then by the first environment's ID.
func GroupByOperator(entries []Entry) []OperatorGroup {
	idx := map[string]int{}
	var groups []OperatorGroup
	for _, e := range entries {
		if e.Environment.Inactive {
			continue
		}
		key := string(e.Operator.Kind()) + " " + e.Endpoint
		if e.Endpoint == "" || e.Endpoint == MockEndpoint {
			key = "env " + e.Environment.ID // each mock is its own operator
		}
		i, ok := idx[key]
		if !ok {
			i = len(groups)
			idx[key] = i
			groups = append(groups, OperatorGroup{Endpoint: e.Endpoint, Operator: e.Operator})
		}
		groups[i].Entries = append(groups[i].Entries, e)
	}
	sort.SliceStable(groups, func(a, b int) bool {
		if groups[a].Endpoint != groups[b].Endpoint {
			return groups[a].Endpoint < groups[b].Endpoint
		}
		return groups[a].Entries[0].Environment.ID < groups[b].Entries[0].Environment.ID
	})
	return groups
}
