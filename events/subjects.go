package events

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CloudEvent types of docs/contract.md, Subjects and event types.
const (
	TypeDeployRequest = "io.boreas.deploy.request.v1"
	TypeDeployResult  = "io.boreas.deploy.result.v1"
	TypeStatusQuery   = "io.boreas.status.query.v1"
	TypeStatusResult  = "io.boreas.status.result.v1"
	TypeHealth        = "io.boreas.operator.health.v1"
	// TypeDeployProgress is the rollout progress of an applied deploy
	// request (added in v1).
	TypeDeployProgress = "io.boreas.deploy.progress.v1"
)

// Subject prefixes; the environment ID is the last token.
const (
	PrefixDeployRequest = "deploy.request."
	PrefixDeployResult  = "deploy.result."
	// PrefixDeployProgress is the subject prefix of rollout progress events.
	PrefixDeployProgress = "deploy.progress."
	PrefixStatusQuery    = "status.query."
	PrefixStatusResult   = "status.result."
	PrefixHealth         = "operator.health."
	PrefixDeadLetter     = "deadletter."
)

// Subjects of the bridge's request/reply endpoints (docs/contract.md, Request/reply).
const (
	ServiceName          = "operator-bridge"
	PrefixStatusEndpoint = "operator-bridge.status."
	SubjectEnvironments  = "operator-bridge.environments"
)

const (
	maxEnvironmentIDLength  = 64
	maxEnvironmentIDMessage = "1-64 characters of A-Z a-z 0-9 _ -"
)

// Streams of docs/contract.md, Streams and consumers.
const (
	StreamDeploy     = "DEPLOY"
	StreamStatus     = "STATUS"
	StreamHealth     = "HEALTH"
	StreamDeadLetter = "DEADLETTER"
)

// Headers and extension attribute names of docs/contract.md.
const (
	HeaderMsgID         = "Nats-Msg-Id"
	HeaderBridgeError   = "Operator-Bridge-Error"
	HeaderBridgeSubject = "Operator-Bridge-Subject"
	// HeaderBridgeRollout is "tracked" on a deploy result whose request the
	// bridge follows to a final progress event (docs/rollouts.md).
	HeaderBridgeRollout = "Operator-Bridge-Rollout"
	HeaderContentType   = "Content-Type"

	ExtEnvironment = "environment"
	ExtRequestID   = "requestid"
	ExtTraceParent = "traceparent"
)

// Media types of docs/contract.md, CloudEvents on NATS.
const (
	ContentTypeStructured = "application/cloudevents+json"
	ContentTypeBatch      = "application/cloudevents-batch+json"
	ContentTypeJSON       = "application/json"
)

// DeployRequestSubject is where master-service asks for deploys to env.
func DeployRequestSubject(env string) string { return PrefixDeployRequest + env }

// DeployResultSubject is where the bridge publishes deploy results for env.
func DeployResultSubject(env string) string { return PrefixDeployResult + env }

// DeployProgressSubject is where the bridge publishes the rollout progress
// of deploys to env.
func DeployProgressSubject(env string) string { return PrefixDeployProgress + env }

// StatusQuerySubject is where anyone asks for an app's status in env.
func StatusQuerySubject(env string) string { return PrefixStatusQuery + env }

// StatusResultSubject is where the bridge publishes status results for env.
func StatusResultSubject(env string) string { return PrefixStatusResult + env }

// HealthSubject is where the bridge publishes env's operator health.
func HealthSubject(env string) string { return PrefixHealth + env }

// StatusEndpointSubject is the bridge's request/reply status endpoint for env.
func StatusEndpointSubject(env string) string { return PrefixStatusEndpoint + env }

// DeadLetterSubject is where an unidentifiable message from original goes.
func DeadLetterSubject(original string) string { return PrefixDeadLetter + original }

// ValidEnvironmentID reports whether id is an environment ID: 1–64
// characters of A-Z a-z 0-9 _ - (one NATS subject token).
func ValidEnvironmentID(id string) bool {
	if len(id) == 0 || len(id) > maxEnvironmentIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// EnvironmentFromSubject returns the environment ID of a subject: its last
// token, which must be a valid environment ID.
func EnvironmentFromSubject(subject string) (string, error) {
	i := strings.LastIndexByte(subject, '.')
	if i < 0 {
		return "", fmt.Errorf("subject %q names no environment", subject)
	}
	env := subject[i+1:]
	if !ValidEnvironmentID(env) {
		return "", fmt.Errorf("subject %q: environment %q is not %s", subject, env, maxEnvironmentIDMessage)
	}
	return env, nil
}

// typeForSubject gives the event type a subject carries ("" when the subject
// is not one of the contract's).
func typeForSubject(subject string) string {
	switch {
	case strings.HasPrefix(subject, PrefixDeployRequest):
		return TypeDeployRequest
	case strings.HasPrefix(subject, PrefixDeployResult):
		return TypeDeployResult
	case strings.HasPrefix(subject, PrefixDeployProgress):
		return TypeDeployProgress
	case strings.HasPrefix(subject, PrefixStatusQuery), strings.HasPrefix(subject, PrefixStatusEndpoint):
		return TypeStatusQuery
	case strings.HasPrefix(subject, PrefixStatusResult):
		return TypeStatusResult
	case strings.HasPrefix(subject, PrefixHealth):
		return TypeHealth
	}
	return ""
}

// StreamConfigs returns the four streams of docs/contract.md, in the order
// DEPLOY, STATUS, HEALTH, DEADLETTER.
func StreamConfigs() []jetstream.StreamConfig {
	const day = 24 * time.Hour
	return []jetstream.StreamConfig{
		{
			Name:        StreamDeploy,
			Description: "operator-bridge deploy requests and results",
			Subjects:    []string{"deploy.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      7 * day,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:        StreamStatus,
			Description: "operator-bridge status queries and results",
			Subjects:    []string{"status.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      day,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:              StreamHealth,
			Description:       "operator-bridge operator health; the last message of a subject is its environment's health",
			Subjects:          []string{"operator.health.>"},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.FileStorage,
			MaxMsgsPerSubject: 100,
		},
		{
			Name:        StreamDeadLetter,
			Description: "operator-bridge messages that could not be identified",
			Subjects:    []string{"deadletter.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      30 * day,
		},
	}
}
