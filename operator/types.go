package operator

import (
	"context"
	"encoding/json"
)

// Deployment is one version's share of an apply request. Percent is in [0, 1].
type Deployment struct {
	Version string          `json:"version"`
	Percent float64         `json:"percent"`
	Package json.RawMessage `json:"package,omitempty"`
}

// ApplyRequest is the body of an apply call (docs/operators.md, HTTP API).
type ApplyRequest struct {
	App         string       `json:"app"`
	Version     string       `json:"version"`
	Deployments []Deployment `json:"deployments"`
}

// ApplyResponse is an operator's answer to an apply call.
type ApplyResponse struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

// Health is a health level from 0 (down) to 100 (healthy).
type Health struct {
	Level int `json:"level"`
}

// NodeStatus is the health of one node running a version.
type NodeStatus struct {
	Node    string `json:"node"`
	Healthy Health `json:"healthy"`
}

// VersionStatus is one deployed version of an app.
type VersionStatus struct {
	Version string       `json:"version"`
	Percent float64      `json:"percent"`
	Healthy Health       `json:"healthy"`
	Nodes   []NodeStatus `json:"nodes"`
}

// Status is an operator's answer to a status call.
type Status struct {
	App      string          `json:"app"`
	Healthy  Health          `json:"healthy"`
	Versions []VersionStatus `json:"versions"`
}

// DegradedStatus is the status reported for app when its operator cannot be
// asked: health level 0 and no versions (docs/contract.md, status results with
// degraded: true).
func DegradedStatus(app string) Status {
	return Status{App: app, Healthy: Health{Level: 0}, Versions: []VersionStatus{}}
}

// Operator is a deployment operator: something that applies deployments of an
// app and reports its status. *Client and *MockClient are Operators.
//
// Every method returns a *Error when the call fails; Apply also returns one
// (Reason Rejected) when the operator answered success: false.
type Operator interface {
	Apply(ctx context.Context, req ApplyRequest) (ApplyResponse, error)
	Status(ctx context.Context, app string) (Status, error)
	HealthCheck(ctx context.Context) error
	Kind() Kind
}
