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
// in the JetStream key-value bucket [OrderBucket]: a compare-and-set lease
// taken before the operator call and the id of the last applied request
// written after it. See order.go.
package bridge
