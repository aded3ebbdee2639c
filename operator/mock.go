package operator

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// MockEndpoint is the Endpoint of every MockClient.
const MockEndpoint = "mock"

// mockNodes is how many nodes the mock reports for each version.
const mockNodes = 3

// MockClient is the in-process operator used with USE_MOCK and for demos. It
// remembers the last apply of each app, so its Status reflects it: each
// version with its percent, three healthy nodes and health level 100. An app
// never applied has health level 0 and no versions. It can be told to fail
// (FailNext, SetFailing). It honours fencing like an operator that supports
// it: an apply whose Fence is lower than the highest it accepted for the app
// fails with Reason Stale (HTTP 409); an apply without a Fence is never
// refused as stale. It is safe for concurrent use.
type MockClient struct {
	mu       sync.Mutex
	apps     map[string]Status
	applied  map[string][]string
	fences   map[string]uint64 // app → highest fence accepted
	failNext int
	nextWhy  Reason
	failing  Reason
	observer Observer
}

var _ Operator = (*MockClient)(nil)

// NewMockClient returns a mock operator with no apps.
func NewMockClient() *MockClient {
	return &MockClient{apps: make(map[string]Status), applied: make(map[string][]string), fences: make(map[string]uint64)}
}

// Kind returns Mock.
func (m *MockClient) Kind() Kind { return Mock }

// Endpoint returns MockEndpoint.
func (m *MockClient) Endpoint() string { return MockEndpoint }

// FailNext makes the next n Apply and Status calls fail with reason.
func (m *MockClient) FailNext(n int, reason Reason) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failNext, m.nextWhy = n, reason
}

// SetFailing makes every call, health checks included, fail with reason
// until SetFailing(0).
func (m *MockClient) SetFailing(reason Reason) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failing = reason
}

// Applied returns the versions applied to app, oldest first.
func (m *MockClient) Applied(app string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.applied[app])
}

// Apply records req as app's deployment. Without deployments, req.Version
// gets all traffic.
func (m *MockClient) Apply(ctx context.Context, req ApplyRequest) (resp ApplyResponse, err error) {
	defer m.observe("apply", &err)()
	if err := ctx.Err(); err != nil {
		return ApplyResponse{}, m.fail("apply", Unavailable, "call cancelled by caller", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.injected("apply", true); err != nil {
		return ApplyResponse{}, err
	}
	if req.App == "" || req.Version == "" {
		return ApplyResponse{}, m.fail("apply", Rejected, "app and version are required", nil)
	}
	if high := m.fences[req.App]; req.Fence != 0 && req.Fence < high {
		return ApplyResponse{}, m.fail("apply", Stale, staleMessage(fmt.Sprintf("stale fence %d < %d", req.Fence, high)), nil)
	}
	m.fences[req.App] = max(m.fences[req.App], req.Fence)
	m.apps[req.App] = MockStatus(req)
	m.applied[req.App] = append(m.applied[req.App], req.Version)
	return ApplyResponse{Success: true, Message: fmt.Sprintf("applied %s to %s", req.Version, req.App)}, nil
}

// Status returns app's status after its last apply.
func (m *MockClient) Status(ctx context.Context, app string) (st Status, err error) {
	defer m.observe("status", &err)()
	if err := ctx.Err(); err != nil {
		return Status{}, m.fail("status", Unavailable, "call cancelled by caller", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.injected("status", true); err != nil {
		return Status{}, err
	}
	if app == "" {
		return Status{}, m.fail("status", Rejected, "empty app name", nil)
	}
	st, ok := m.apps[app]
	if !ok {
		return Status{App: app, Versions: []VersionStatus{}}, nil
	}
	return cloneStatus(st), nil
}

// HealthCheck fails only while SetFailing is in effect.
func (m *MockClient) HealthCheck(ctx context.Context) (err error) {
	defer m.observe("health", &err)()
	if err := ctx.Err(); err != nil {
		return m.fail("health", Unavailable, "call cancelled by caller", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.injected("health", false)
}

// injected returns the error the mock was told to fail with, if any. m.mu is held.
func (m *MockClient) injected(op string, countsNext bool) error {
	if m.failing != 0 {
		return m.fail(op, m.failing, "mock operator told to fail", nil)
	}
	if countsNext && m.failNext > 0 {
		m.failNext--
		return m.fail(op, m.nextWhy, "mock operator told to fail", nil)
	}
	return nil
}

func (m *MockClient) fail(op string, r Reason, msg string, err error) *Error {
	code := 0
	switch r {
	case Rejected:
		code = http.StatusBadRequest
	case Stale:
		code = http.StatusConflict
	case Unavailable:
		if err == nil {
			code = http.StatusServiceUnavailable
		}
	}
	return &Error{Op: op, Kind: Mock, Endpoint: MockEndpoint, Reason: r, StatusCode: code, Message: msg, Err: err}
}

func (m *MockClient) observe(op string, err *error) func() {
	m.mu.Lock()
	obs := m.observer
	m.mu.Unlock()
	if obs == nil {
		return func() {}
	}
	start := time.Now()
	return func() {
		code := http.StatusOK
		if e, ok := (*err).(*Error); ok {
			code = e.StatusCode
		}
		obs(Call{Op: op, Kind: Mock, Endpoint: MockEndpoint, StatusCode: code, Duration: time.Since(start), Err: *err})
	}
}

// MockStatus is the status the mock (and operatortest's fake operators)
// report after req was applied: each deployment (or req.Version with
// percent 1 when there are none) with three nodes named
// "<app>-<version>-<n>", every health level 100.
func MockStatus(req ApplyRequest) Status {
	deps := req.Deployments
	if len(deps) == 0 {
		deps = []Deployment{{Version: req.Version, Percent: 1}}
	}
	st := Status{App: req.App, Healthy: Health{Level: 100}, Versions: make([]VersionStatus, 0, len(deps))}
	for _, d := range deps {
		v := VersionStatus{Version: d.Version, Percent: d.Percent, Healthy: Health{Level: 100}, Nodes: make([]NodeStatus, 0, mockNodes)}
		for i := 1; i <= mockNodes; i++ {
			v.Nodes = append(v.Nodes, NodeStatus{Node: fmt.Sprintf("%s-%s-%d", req.App, d.Version, i), Healthy: Health{Level: 100}})
		}
		st.Versions = append(st.Versions, v)
	}
	return st
}

func cloneStatus(st Status) Status {
	c := st
	c.Versions = make([]VersionStatus, len(st.Versions))
	for i, v := range st.Versions {
		c.Versions[i] = v
		c.Versions[i].Nodes = slices.Clone(v.Nodes)
	}
	return c
}
