package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Deployment is one version's share of an apply request. Percent is in [0, 1].
type Deployment struct {
	Version string          `json:"version"`
	Percent float64         `json:"percent"`
	Package json.RawMessage `json:"package,omitempty"`
}

// ApplyRequest is an apply call: its JSON body (docs/operators.md, HTTP API)
// and its fencing, which travels in headers (see FencingHeaders) and not in
// the body.
type ApplyRequest struct {
	App         string       `json:"app"`
	Version     string       `json:"version"`
	Deployments []Deployment `json:"deployments"`

	// RequestID is the id of the deploy request being applied, sent as
	// Boreas-Request-Id. Empty: the header is not sent.
	RequestID string `json:"-"`
	// RequestTime is the request's order time (its CloudEvent time), sent as
	// Boreas-Request-Time in RFC 3339 with nanoseconds, UTC. Zero: not sent.
	RequestTime time.Time `json:"-"`
	// Fence is the request's fencing token, sent as Boreas-Fence: per
	// environment and app it strictly grows from one request to the next,
	// across replicas and restarts, and retries of one request repeat it. An
	// operator that supports fencing refuses (409) an apply whose Fence is
	// lower than the highest it accepted for the app. Zero: not sent.
	Fence uint64 `json:"-"`
}

// The fencing headers of an apply call (docs/operators.md, Fencing).
const (
	HeaderRequestID   = "Boreas-Request-Id"
	HeaderRequestTime = "Boreas-Request-Time"
	HeaderFence       = "Boreas-Fence"
)

// FencingHeaders returns the fencing headers of req: those of its RequestID,
// RequestTime and Fence that are set.
func (req ApplyRequest) FencingHeaders() http.Header {
	h := make(http.Header, 3)
	if req.RequestID != "" {
		h.Set(HeaderRequestID, req.RequestID)
	}
	if !req.RequestTime.IsZero() {
		h.Set(HeaderRequestTime, req.RequestTime.UTC().Format(time.RFC3339Nano))
	}
	if req.Fence != 0 {
		h.Set(HeaderFence, strconv.FormatUint(req.Fence, 10))
	}
	return h
}

// Fencing is what an operator reads from an apply's fencing headers.
type Fencing struct {
	RequestID   string    // Boreas-Request-Id, "" when absent
	RequestTime time.Time // Boreas-Request-Time, zero when absent
	Fence       uint64    // Boreas-Fence, 0 when absent
}

// ParseFencing reads the fencing headers of an apply call, for operators
// (operatortest's fake ones). An absent header leaves its field zero; a
// Boreas-Fence that is not a decimal integer or a Boreas-Request-Time that is
// not RFC 3339 is an error naming the header.
func ParseFencing(h http.Header) (Fencing, error) {
	f := Fencing{RequestID: h.Get(HeaderRequestID)}
	if v := h.Get(HeaderFence); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return f, fmt.Errorf("%s %q is not a decimal integer", HeaderFence, v)
		}
		f.Fence = n
	}
	if v := h.Get(HeaderRequestTime); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, fmt.Errorf("%s %q is not an RFC 3339 time", HeaderRequestTime, v)
		}
		f.RequestTime = t
	}
	return f, nil
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
