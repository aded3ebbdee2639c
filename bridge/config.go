package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/boreas/operator-bridge/operator"
)

// Names of the JetStream state the bridge owns.
const (
	// DeployConsumer is the durable consumer of deploy.request.>.
	DeployConsumer = "operator-bridge-deploy"
	// StatusConsumer is the durable consumer of status.query.>.
	StatusConsumer = "operator-bridge-status"
	// OrderBucket holds the per environment-and-app order state.
	OrderBucket = "operator-bridge-order"
	// ServiceName is the NATS micro service of docs/contract.md, Request/reply.
	ServiceName = "operator-bridge"
)

// DefaultAckWait is the consumers' ack wait when Config.AckWait is zero.
const DefaultAckWait = 30 * time.Second

// Config is the bridge's configuration. Zero values take the documented
// defaults (those of the contract's variables).
type Config struct {
	// Instance names this replica in the `source` of the events it creates.
	Instance string
	// Version is reported by the micro service (default "dev").
	Version string

	// ExternalStreams says the four streams and the environments bucket are
	// managed outside the bridge: start only checks that they exist and
	// fails if one is missing. The zero value (false) is the documented
	// default, MANAGE_STREAMS=true: the bridge creates or updates them.
	ExternalStreams bool
	// Replicas is the replica count of the streams and buckets the bridge
	// creates, 1 to 5 (default 1; 3 on a 3-node cluster). Existing ones keep
	// theirs.
	Replicas int
	// EnvironmentsFile is an optional YAML or JSON file of environments.
	EnvironmentsFile string
	// FileEnvironments, when not nil, is what EnvironmentsFile holds, read
	// and checked by the caller (serve does so before it starts anything):
	// Run does not read the file again.
	FileEnvironments []operator.Environment
	// EnvironmentsBucket is the key-value bucket of environments, watched
	// live; empty turns it off.
	EnvironmentsBucket string

	// OperatorTimeout is the bound of one operator call (default 10s); the
	// order lease outlasts it.
	OperatorTimeout time.Duration
	// RetryWindow bounds how long a deploy request is retried (default 10m).
	RetryWindow time.Duration
	// HealthInterval is the period of operator.health events (default 30s).
	HealthInterval time.Duration
	// MaxInFlight bounds the requests handled at once (default 256).
	MaxInFlight int
	// AckWait is the consumers' ack wait (default DefaultAckWait, 30s,
	// well inside the streams' 2 minute duplicate window).
	AckWait time.Duration
	// ShutdownGrace is how long in-flight requests may take to finish once
	// Run's context is cancelled (default 15s).
	ShutdownGrace time.Duration
	// MaxClockSkew is how far a request's time may lie after the time
	// JetStream stored it (contract: 60s).
	MaxClockSkew time.Duration

	// RolloutTimeout is how long a rollout is followed before it is
	// timed_out (default 10m); a request's rollout.timeout overrides it.
	RolloutTimeout time.Duration
	// RolloutPoll is the interval of status calls per tracked rollout
	// (default 5s, with jitter); at most one progress event per interval.
	RolloutPoll time.Duration
	// RolloutGrace is how long a target version may stay below min_healthy
	// before the rollout is degraded (default 2m).
	RolloutGrace time.Duration

	// HTTPAddr serves /healthz, /readyz, /metrics and the status page
	// (package statuspage); empty serves nothing.
	HTTPAddr string
	// PProf also serves Go's profiles under /debug/pprof/ on HTTPAddr.
	PProf bool
	// ReadyNote is a line /readyz adds to its answer, ready or not (serve
	// says there that NATS is its embedded server).
	ReadyNote string
	// Gatherer serves /metrics (default: the Registerer when it is a
	// *prometheus.Registry).
	Gatherer prometheus.Gatherer
	// OpsToken, when set, protects the ops address: everything but /healthz
	// and /readyz needs "Authorization: Bearer <OpsToken>" (browsers sign
	// in once on the status page; see statuspage.RequireToken).
	OpsToken string

	// Logger receives one line per message outcome; nil discards.
	Logger *slog.Logger
	// Registerer receives the bridge's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// TracerProvider receives a span per request and per step (see
	// docs/configuration.md, Traces); nil traces nothing, and results copy
	// their request's traceparent.
	TracerProvider trace.TracerProvider
}

func (c *Config) setDefaults() error {
	if c.Instance == "" {
		c.Instance = "operator-bridge"
	}
	if c.Version == "" {
		c.Version = "0.0.0-dev"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.OperatorTimeout == 0 {
		c.OperatorTimeout = 10 * time.Second
	}
	if c.RetryWindow == 0 {
		c.RetryWindow = 10 * time.Minute
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = 30 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 15 * time.Second
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = 60 * time.Second
	}
	if c.RolloutTimeout == 0 {
		c.RolloutTimeout = 10 * time.Minute
	}
	if c.RolloutPoll == 0 {
		c.RolloutPoll = 5 * time.Second
	}
	if c.RolloutGrace == 0 {
		c.RolloutGrace = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Gatherer == nil {
		if g, ok := c.Registerer.(prometheus.Gatherer); ok {
			c.Gatherer = g
		}
	}
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"OperatorTimeout", c.OperatorTimeout}, {"RetryWindow", c.RetryWindow},
		{"HealthInterval", c.HealthInterval}, {"AckWait", c.AckWait},
		{"ShutdownGrace", c.ShutdownGrace}, {"MaxClockSkew", c.MaxClockSkew},
		{"RolloutTimeout", c.RolloutTimeout}, {"RolloutPoll", c.RolloutPoll}, {"RolloutGrace", c.RolloutGrace},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative: leave it zero for the default, or make it positive", d.name, d.v))
		}
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("MaxInFlight %d is negative: leave it zero for the default, or make it positive", c.MaxInFlight))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("Replicas %d: JetStream takes 1 to 5", c.Replicas))
	}
	if c.AckWait >= 2*time.Minute {
		errs = append(errs, fmt.Errorf("ack wait %v must stay inside the 2m duplicate window", c.AckWait))
	}
	return errors.Join(errs...)
}
