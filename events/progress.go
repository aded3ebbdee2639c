package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// Phase is the phase of a rollout in a progress event (docs/contract.md, Deploy progress).
type Phase string

// The phases of docs/contract.md. Every phase but PhaseProgressing is final.
const (
	PhaseProgressing Phase = "progressing"
	PhaseConverged   Phase = "converged"
	PhaseDegraded    Phase = "degraded"
	PhaseTimedOut    Phase = "timed_out"
	PhaseSuperseded  Phase = "superseded"
)

// Final reports whether p ends a rollout's tracking.
func (p Phase) Final() bool {
	switch p {
	case PhaseConverged, PhaseDegraded, PhaseTimedOut, PhaseSuperseded:
		return true
	}
	return false
}

// Valid reports whether p is one of the contract's phases.
func (p Phase) Valid() bool { return p == PhaseProgressing || p.Final() }

// DefaultMinHealthy is the health level every target version must reach
// for a rollout to converge, unless the request says otherwise.
const DefaultMinHealthy = 100

// Rollout is a deploy request's optional "rollout" field: false turns
// tracking off for the request, an object overrides the bridge's rollout
// timeout and the health level a version must reach. An absent field (a
// nil *Rollout) means tracking with the bridge's defaults.
type Rollout struct {
	// Off is "rollout": false.
	Off bool
	// Timeout overrides ROLLOUT_TIMEOUT; 0 keeps it.
	Timeout time.Duration
	// MinHealthy overrides DefaultMinHealthy when not nil (0–100).
	MinHealthy *int
}

// Tracked reports whether a request with this rollout field is tracked.
func (r *Rollout) Tracked() bool { return r == nil || !r.Off }

// Threshold returns the health level the request's versions must reach.
func (r *Rollout) Threshold() int {
	if r == nil || r.MinHealthy == nil {
		return DefaultMinHealthy
	}
	return *r.MinHealthy
}

type rolloutJSON struct {
	Timeout    *string `json:"timeout,omitempty"`
	MinHealthy *int    `json:"min_healthy,omitempty"`
}

// MarshalJSON writes false, or the object with the fields that are set.
func (r Rollout) MarshalJSON() ([]byte, error) {
	if r.Off {
		return []byte("false"), nil
	}
	var j rolloutJSON
	if r.Timeout > 0 {
		s := r.Timeout.String()
		j.Timeout = &s
	}
	j.MinHealthy = r.MinHealthy
	return json.Marshal(j)
}

// UnmarshalJSON reads false or {"timeout": "5m", "min_healthy": 80}. A
// timeout that is not a positive Go duration is an *Error (invalid_data).
func (r *Rollout) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "false" {
		*r = Rollout{Off: true}
		return nil
	}
	var j rolloutJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return dataError("rollout", "want false or an object: "+err.Error())
	}
	out := Rollout{MinHealthy: j.MinHealthy}
	if j.Timeout != nil {
		d, err := time.ParseDuration(*j.Timeout)
		if err != nil || d <= 0 {
			return dataError("rollout.timeout", fmt.Sprintf("%q is not a positive duration (5m, 90s, 1h30m)", *j.Timeout))
		}
		out.Timeout = d
	}
	if m := j.MinHealthy; m != nil && (*m < 0 || *m > 100) {
		return dataError("rollout.min_healthy", fmt.Sprintf("%d is not a level from 0 to 100", *m))
	}
	*r = out
	return nil
}

// Target is one version's share in a progress event: a request's
// deployment without its package.
type Target struct {
	Version string  `json:"version"`
	Percent float64 `json:"percent"`
}

// Targets returns the target split of r: its effective deployments'
// versions and percents, in the request's order.
func (r DeployRequest) Targets() []Target {
	deps := r.Effective()
	out := make([]Target, len(deps))
	for i, d := range deps {
		out[i] = Target{Version: d.Version, Percent: d.Percent}
	}
	return out
}

// DeployProgress is the data of io.boreas.deploy.progress.v1.
type DeployProgress struct {
	RequestID   string    `json:"request_id"`
	Environment string    `json:"environment"`
	App         string    `json:"app"`
	Target      []Target  `json:"target"`
	Observed    AppStatus `json:"observed"`
	Phase       Phase     `json:"phase"`
	Final       bool      `json:"final"`
	Message     string    `json:"message"`
	ElapsedMS   int64     `json:"elapsed_ms"`
}

// progressNamespace is the UUID namespace of progress event IDs.
var progressNamespace = [16]byte{0x3c, 0x8a, 0x41, 0xd2, 0x07, 0x6f, 0x4e, 0x19, 0x9b, 0x25, 0xe0, 0x73, 0x5d, 0xa8, 0x11, 0xc4}

// FinalProgressID returns the id of the final progress event of the
// request with id requestID stored at stream sequence streamSeq: a
// name-based UUID of both, like ResultID's but never equal to it (both
// events live in the DEPLOY stream, whose duplicate window would otherwise
// drop one), so a crash, a restart or a failover that publishes the final
// event again stores it once.
func FinalProgressID(requestID string, streamSeq uint64) string {
	return nameUUID(progressNamespace, requestID+"\x00"+strconv.FormatUint(streamSeq, 10)+"\x00final", requestID)
}

// ProgressEventID returns the id of the n-th (from 1) non-final progress
// event of a request, deterministic for the same reason as
// FinalProgressID: a replica that takes a rollout over and publishes the
// last event again stores it once.
func ProgressEventID(requestID string, streamSeq uint64, n int) string {
	return nameUUID(progressNamespace, requestID+"\x00"+strconv.FormatUint(streamSeq, 10)+"\x00"+strconv.Itoa(n), requestID)
}

// NewDeployProgress returns progress event number n (from 1) of the request
// req, stored at stream sequence streamSeq, ready to publish on
// deploy.progress.<req.Environment>: id FinalProgressID when data.Final, else
// ProgressEventID(n); CE subject the app; extensions environment, requestid
// and (if the request had one) traceparent; Nats-Msg-Id the id. Final is
// set from the phase; data.RequestID and data.Environment are filled from
// req when empty, nil lists are sent empty.
func NewDeployProgress(source string, req Envelope, streamSeq uint64, n int, data DeployProgress) (*nats.Msg, error) {
	return defaultEncoder.deployProgress(source, req, streamSeq, n, data)
}

func (enc encoder) deployProgress(source string, req Envelope, streamSeq uint64, n int, data DeployProgress) (*nats.Msg, error) {
	if req.ID == "" {
		return nil, errors.New("deploy progress: the request has no id")
	}
	if streamSeq == 0 {
		return nil, errors.New("deploy progress: the request has no stream sequence")
	}
	if !data.Phase.Valid() {
		return nil, fmt.Errorf("deploy progress: phase %q is not one of the contract's", data.Phase)
	}
	if data.RequestID == "" {
		data.RequestID = req.ID
	}
	if data.Environment == "" {
		data.Environment = req.Environment
	}
	data.Final = data.Phase.Final()
	if data.Target == nil {
		data.Target = []Target{}
	}
	data.Observed = data.Observed.withLists()
	id := ProgressEventID(req.ID, streamSeq, n)
	if data.Final {
		id = FinalProgressID(req.ID, streamSeq)
	}
	ext := extensions{environment: req.Environment, requestID: req.ID, traceParent: req.TraceParent}
	return enc.build(DeployProgressSubject, req.Environment, TypeDeployProgress, source, id, enc.now(), data.App, ext, data)
}

// withLists returns s with nil versions and nodes as empty lists, without
// writing to the caller's slices.
func (s AppStatus) withLists() AppStatus {
	versions := make([]VersionStatus, len(s.Versions))
	for i, v := range s.Versions {
		if v.Nodes == nil {
			v.Nodes = []NodeStatus{}
		}
		versions[i] = v
	}
	s.Versions = versions
	return s
}

// DecodeDeployProgress decodes a deploy progress event and validates its
// data against the schema.
func DecodeDeployProgress(h nats.Header, body []byte) (event.Event, DeployProgress, error) {
	var p DeployProgress
	e, err := decodeOf(TypeDeployProgress, h, body, &p)
	return e, p, err
}

// DeployProgress decodes the data of a deploy progress event.
func (w Watched) DeployProgress() (DeployProgress, error) {
	_, p, err := DecodeDeployProgress(w.Header, w.Data)
	return p, err
}
