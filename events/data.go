package events

import (
	"encoding/json"
	"time"
)

// ErrorCode is a result's error.code (docs/contract.md, Error codes).
type ErrorCode string

// The error codes of docs/contract.md.
const (
	CodeInvalidEvent            ErrorCode = "invalid_event"
	CodeInvalidData             ErrorCode = "invalid_data"
	CodeUnknownEnvironment      ErrorCode = "unknown_environment"
	CodeEnvironmentInactive     ErrorCode = "environment_inactive"
	CodeOperatorRejected        ErrorCode = "operator_rejected"
	CodeOperatorInvalidResponse ErrorCode = "operator_invalid_response"
	CodeOperatorUnavailable     ErrorCode = "operator_unavailable"
	CodeOperatorTimeout         ErrorCode = "operator_timeout"
	CodeSuperseded              ErrorCode = "superseded"
)

// Retryable reports whether sending the same request again later could
// succeed: true for operator_unavailable and operator_timeout only.
func (c ErrorCode) Retryable() bool {
	return c == CodeOperatorUnavailable || c == CodeOperatorTimeout
}

// Valid reports whether c is one of the contract's codes.
func (c ErrorCode) Valid() bool {
	switch c {
	case CodeInvalidEvent, CodeInvalidData, CodeUnknownEnvironment, CodeEnvironmentInactive,
		CodeOperatorRejected, CodeOperatorInvalidResponse, CodeOperatorUnavailable,
		CodeOperatorTimeout, CodeSuperseded:
		return true
	}
	return false
}

// Outcome is a deploy result's outcome (docs/contract.md, Outcomes).
type Outcome string

// The outcomes of docs/contract.md.
const (
	Succeeded  Outcome = "succeeded"
	Failed     Outcome = "failed"
	Rejected   Outcome = "rejected"
	Superseded Outcome = "superseded"
)

// Deployment is one version's share of an app's traffic.
type Deployment struct {
	Version string  `json:"version"`
	Percent float64 `json:"percent"`
	// Package is passed to the operator unchanged.
	Package json.RawMessage `json:"package,omitempty"`
}

// DeployRequest is the data of io.boreas.deploy.request.v1.
type DeployRequest struct {
	App         string       `json:"app"`
	Version     string       `json:"version"`
	Deployments []Deployment `json:"deployments,omitempty"`
}

// Effective returns the deployments the operator gets: r.Deployments, or
// [{Version: r.Version, Percent: 1}] when there are none.
func (r DeployRequest) Effective() []Deployment {
	if len(r.Deployments) == 0 {
		return []Deployment{{Version: r.Version, Percent: 1}}
	}
	return r.Deployments
}

// ErrorInfo is a result's error.
type ErrorInfo struct {
	Code      ErrorCode `json:"code"`
	Message   string    `json:"message"`
	Retryable bool      `json:"retryable"`
}

// DeployResult is the data of io.boreas.deploy.result.v1.
type DeployResult struct {
	RequestID   string     `json:"request_id"`
	Environment string     `json:"environment"`
	App         string     `json:"app"`
	Version     string     `json:"version"`
	Operator    string     `json:"operator"`
	Outcome     Outcome    `json:"outcome"`
	Success     bool       `json:"success"`
	Message     string     `json:"message"`
	Attempts    int        `json:"attempts"`
	DurationMS  int64      `json:"duration_ms"`
	Error       *ErrorInfo `json:"error,omitempty"`
}

// StatusQuery is the data of io.boreas.status.query.v1.
type StatusQuery struct {
	App string `json:"app"`
}

// AppHealth is a health level, 0–100.
type AppHealth struct {
	Level int `json:"level"`
}

// NodeStatus is one node running a version.
type NodeStatus struct {
	Node    string    `json:"node"`
	Healthy AppHealth `json:"healthy"`
}

// VersionStatus is one deployed version of an app.
type VersionStatus struct {
	Version string       `json:"version"`
	Percent float64      `json:"percent"`
	Healthy AppHealth    `json:"healthy"`
	Nodes   []NodeStatus `json:"nodes"`
}

// AppStatus is an app's status as its operator reports it (the same JSON as
// the operator's status answer, docs/operators.md).
type AppStatus struct {
	App      string          `json:"app"`
	Healthy  AppHealth       `json:"healthy"`
	Versions []VersionStatus `json:"versions"`
}

// StatusResult is the data of io.boreas.status.result.v1.
type StatusResult struct {
	RequestID   string     `json:"request_id"`
	Environment string     `json:"environment"`
	App         string     `json:"app"`
	Operator    string     `json:"operator"`
	Degraded    bool       `json:"degraded"`
	Status      AppStatus  `json:"status"`
	Error       *ErrorInfo `json:"error,omitempty"`
}

// Health is the data of io.boreas.operator.health.v1.
type Health struct {
	Environment         string    `json:"environment"`
	Operator            string    `json:"operator"`
	Endpoint            string    `json:"endpoint"`
	Healthy             bool      `json:"healthy"`
	LatencyMS           int64     `json:"latency_ms"`
	CheckedAt           time.Time `json:"checked_at"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	Changed             bool      `json:"changed"`
	Error               string    `json:"error,omitempty"`
	// Circuit is the state of the bridge's circuit breaker for the
	// endpoint: closed, open or half_open; empty when not reported.
	Circuit string `json:"circuit,omitempty"`
}

// EnvironmentInfo is one item of the operator-bridge.environments reply.
type EnvironmentInfo struct {
	ID       string  `json:"id"`
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Endpoint string  `json:"endpoint"`
	Active   bool    `json:"active"`
	Health   *Health `json:"health"`
}
