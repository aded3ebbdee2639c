// Package chaos is the bridge's fault suite, in the manner of Jepsen: it runs
// the real thing under faults, records everything that happened, and checks
// the recorded history against the bridge's promises.
//
// # What runs
//
//   - a 3-node NATS cluster of in-process nats-servers (routes and JetStream
//     on loopback, each node with its own store folder, so a node that is shut
//     down comes back on the same folder and ports), with the streams and the
//     buckets at 3 replicas ([Cluster]);
//   - two or three bridge replicas as processes (the operator-bridge binary,
//     built once, running `serve`), each reaching NATS through its own TCP
//     proxy that can stall or delay the connection ([Proxy], [Replica]);
//   - one fake operator per environment (operatortest, fencing on), which
//     records every apply with its arrival time, fence and request id;
//   - a load of deploy requests over many keys (environment × app) with rising
//     versions, some arriving late (an older CloudEvent time than the key's
//     newest), some sent again inside the duplicate window (same
//     Nats-Msg-Id), some replayed (an old request published again as a new
//     message) ([Load]).
//
// # Faults
//
// Each alone, one phase each, then mixed at random ([FaultKinds]): SIGKILL of
// a replica (then a restart), SIGSTOP and SIGCONT of a replica for longer
// than its order lease, shutting down the nats-server that leads the DEPLOY
// stream or the order bucket's stream and bringing it back 10 s later, a
// replica's NATS connection stalled or delayed by its proxy, and operator
// latency, hangs, 5xx and 409 answers. The random choices come from one seed,
// printed at the start; CHAOS_SEED replays it.
//
// # Checks
//
// [Check] reads a [History]: the DEPLOY stream as stored at the end (every
// request message and every result), every apply the fake operators
// received, the faults with their times, and the deploy consumer's state. It
// finds:
//
//   - missing results and duplicate results: every stored request message
//     has exactly one stored result, matched by the result id derivation
//     (events.ResultID of the request id and its stream sequence) and the
//     requestid extension;
//   - order violations: per key, the operator never accepted a request older
//     (by CloudEvent time) than one it had accepted before, and the last
//     accepted request is the newest whose result says succeeded;
//   - lying results: a result saying "superseded … not sent" for a request the
//     operator received, or "succeeded" for one it never accepted;
//   - late results: stored later than the retry window (plus slack) after
//     their request;
//   - messages left unacknowledged by the deploy consumer once the run
//     settled.
//
// [Report] writes the figures per phase (requests, results, missing,
// duplicates, order violations, lying results, late results, time to
// recover) as a Markdown table.
//
// # Running it
//
// The suite is behind the build tag chaos, so `go test ./...` runs only the
// checker's own tests. `make chaos-short` (part of `make test`) runs one
// phase per fault and a short mixed phase, about four to five minutes in
// all; `make chaos CHAOS_DURATION=10m` adds mixed phases until the faults
// have gone on that long. Variables: CHAOS_DURATION, CHAOS_SEED,
// CHAOS_REPLICAS, CHAOS_RATE, CHAOS_BURST, CHAOS_REPORT (a file to write the
// Markdown report to).
package chaos
