// Package bridge is the operator-bridge service: it consumes deploy requests
// and status queries from durable JetStream consumers, routes each by the
// environment token of its subject to an operator, and publishes one result
// event for every request it can identify. The rules it keeps are those of
// docs/contract.md; running it is described in docs/operations.md.
//
// # Flow
//
//	consume → decode → route (operator.Manager) → order step → call operator → publish result → ack
//
// # Acknowledgement rules
//
// One function, decide, turns what happened to a message into what is done
// with it:
//
//   - a result was stored (its publish acknowledged by JetStream): Ack;
//   - a retryable operator failure (5xx, timeout, refused connection), or an
//     operator whose circuit is open, or another replica still applying the
//     same environment and app, while the request is younger than
//     RetryWindow: NakWithDelay with a growing delay (the consumer's BackOff
//     only governs ack timeouts, so the delay is chosen here);
//   - the retry window is spent: a `failed` result is stored, then Ack;
//   - the message cannot be identified (no CloudEvent id): it is copied to
//     deadletter.<subject>, the copy is confirmed, then TermWithReason;
//   - the bridge is shutting down and the request has not started: Nak, so
//     another replica (or the next start) takes it at once.
//
// While a message is handled the bridge keeps telling JetStream it is in
// progress, so it is never redelivered while still being worked on.
//
// # Order
//
// Requests for one environment and app are applied one at a time, in the
// order of their CloudEvent time, across every replica. The order state lives
// in the JetStream key-value bucket [OrderBucket]: before every operator
// call one compare-and-set write takes the key's lease, marks the request
// sent and hands it its fence (Boreas-Fence); what the call answered is
// written with the key's next write. Leases are timed without comparing
// clocks across replicas; a key's waiting requests queue without a worker,
// and a replica hands requests of a key another replica holds to that one.
// See order.go, keys.go and forward.go, and docs/reliability.md.
//
// # Rollouts
//
// After a request's apply succeeded and its result is stored, the bridge
// follows the app's status on its operator and publishes
// deploy.progress.<env> events until the rollout converges, degrades, times
// out or is superseded (docs/rollouts.md). The state of each followed
// rollout lives in the bucket [RolloutBucket], one replica following it at a
// time. See rollout.go.
package bridge
