// Package events is the NATS half of the operator-bridge contract
// (docs/contract.md) in Go: subjects and streams, the CloudEvents that
// travel on them, and a client for publishers and watchers.
//
// # Contract
//
// The subjects (DeployRequestSubject, HealthSubject, ...), the event types
// (TypeDeployRequest, ...), the four streams (StreamConfigs) and the data of
// each event (DeployRequest with its Rollout field, DeployResult,
// DeployProgress with its Phase, StatusQuery, StatusResult, Health) are the
// contract's, and the JSON Schemas of package schemas say the same.
//
// # Decoding
//
// DecodeDeployRequest and DecodeStatusQuery turn a NATS message into a
// validated request, in either CloudEvents content mode: structured (the
// body is the event) or binary (attributes in ce- headers, matched without
// regard to case and percent-decoded; Content-Type is datacontenttype). A
// Content-Type of application/cloudevents+json means structured; without
// Content-Type, a ce-id header means binary; batches are refused. Every
// failure is an *Error with the contract's code (invalid_event or
// invalid_data) and the field at fault. The returned Envelope carries what
// identifies the request even when it is invalid, so that it can be
// answered; when it has no ID the error wraps ErrUnidentifiable and the
// message belongs to the dead-letter stream.
//
// # Encoding
//
// NewDeployResult, NewDeployProgress, NewStatusResult and NewHealth make the
// bridge's events
// in structured mode, with the attributes of docs/contract.md (source, time,
// subject, the environment, requestid and traceparent extensions) and the
// Nats-Msg-Id header set to the event id; a result's id is ResultID of its
// request's id and stream sequence, and a final progress event's id is
// FinalProgressID of the same. NewDeployRequest and NewStatusQuery make
// requests for publishers.
//
// # Client
//
// Client publishes deploy requests and waits for their results, asks for
// status over the bridge's request/reply endpoint, lists environments,
// follows a deploy's rollout (Progress, WaitRollout), and watches results
// and health events from a point in time. A Batch (NewBatch) publishes many
// deploy requests without waiting for each and counts every result of each
// as the DEPLOY stream stores them, duplicates included: a load
// generator's view. The client does not depend on the bridge: it speaks
// only the contract.
//
// The package returns errors and never logs.
package events
