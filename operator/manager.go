package operator

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strings"
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
	snap atomic.Pointer[table]
	mu   sync.Mutex // serializes writers
}

// table is one snapshot: the entries sorted by ID, and where each ID is.
type table struct {
	sorted []Entry
	index  map[string]int
}

// newTable makes the table of sorted, entries sorted by ID with unique IDs.
func newTable(sorted []Entry) *table {
	t := &table{sorted: sorted, index: make(map[string]int, len(sorted))}
	for i, e := range sorted {
		t.index[e.Environment.ID] = i
	}
	return t
}

func (t *table) lookup(id string) (Entry, bool) {
	if t == nil {
		return Entry{}, false
	}
	i, ok := t.index[id]
	if !ok {
		return Entry{}, false
	}
	return t.sorted[i], true
}

func (t *table) entries() []Entry {
	if t == nil {
		return nil
	}
	return t.sorted
}

func compareIDs(a, b Entry) int { return strings.Compare(a.Environment.ID, b.Environment.ID) }

// sortedUnique reports whether entries are sorted by ID, each ID once.
func sortedUnique(entries []Entry) bool {
	for i := 1; i < len(entries); i++ {
		if entries[i-1].Environment.ID >= entries[i].Environment.ID {
			return false
		}
	}
	return true
}

// NewManager returns an empty manager.
func NewManager() *Manager { return new(Manager) }

// RegisterOperator adds op as the operator of env, replacing any entry with
// the same ID.
func (m *Manager) RegisterOperator(env Environment, op Operator) {
	e := Entry{Environment: env, Operator: op, Endpoint: endpointOf(env, op)}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.snap.Load().entries()
	i, found := slices.BinarySearchFunc(old, e, compareIDs)
	next := make([]Entry, 0, len(old)+1)
	next = append(append(append(next, old[:i]...), e), old[i:]...)
	if found {
		next = slices.Delete(next, i+1, i+2)
	}
	m.snap.Store(newTable(next))
}

// Replace makes entries the manager's whole set, atomically. For the same
// ID, the later entry wins. An entry without an Endpoint gets one as in
// RegisterOperator.
func (m *Manager) Replace(entries []Entry) {
	m.replaceWith(slices.Clone(entries))
}

// replaceWith is Replace of entries that m may keep, and sort in place.
func (m *Manager) replaceWith(sorted []Entry) {
	for i, e := range sorted {
		if e.Endpoint == "" {
			sorted[i].Endpoint = endpointOf(e.Environment, e.Operator)
		}
	}
	// Entries sorted by ID with unique IDs, as Factory.Build makes them,
	// need no sorting.
	if !sortedUnique(sorted) {
		slices.SortStableFunc(sorted, compareIDs)
		// The last of each run of one ID wins.
		out := sorted[:0]
		for i, e := range sorted {
			if i+1 < len(sorted) && sorted[i+1].Environment.ID == e.Environment.ID {
				continue
			}
			out = append(out, e)
		}
		clear(sorted[len(out):])
		sorted = out
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.Store(newTable(sorted))
}

// Take makes from's set m's whole set, atomically, as Replace(from.Entries())
// would, without copying it (a Manager's snapshot never changes once made).
func (m *Manager) Take(from *Manager) {
	t := from.snap.Load()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.Store(t)
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
	e, ok := m.snap.Load().lookup(envID)
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
	cur := m.snap.Load().entries()
	return append(make([]Entry, 0, len(cur)), cur...)
}

// All yields every entry, sorted by environment ID, as the set was when All
// was called, without copying them.
func (m *Manager) All() iter.Seq[Entry] {
	cur := m.snap.Load().entries()
	return func(yield func(Entry) bool) {
		for _, e := range cur {
			if !yield(e) {
				return
			}
		}
	}
}

// Len returns the number of environments.
func (m *Manager) Len() int { return len(m.snap.Load().entries()) }

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
	type groupKey struct {
		kind          Kind
		endpoint, env string
	}
	idx := map[groupKey]int{}
	var groups []OperatorGroup
	for _, e := range entries {
		if e.Environment.Inactive {
			continue
		}
		key := groupKey{kind: e.Operator.Kind(), endpoint: e.Endpoint}
		if e.Endpoint == "" || e.Endpoint == MockEndpoint {
			key = groupKey{env: e.Environment.ID} // each mock is its own operator
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
