// Package demo is operator-bridge's scripted demonstration, runnable on one
// machine with nothing installed: Start brings up a World (an embedded NATS
// server with JetStream, a fake Kubernetes and a fake physical-machine
// operator from operator/operatortest, and the bridge with short timings),
// and Run plays a script of deploy requests and status queries against it,
// each step with the outcome it expects: successes, rejections, an operator
// that says no, an operator outage the bridge rides out, a late request that
// is superseded, and rollouts followed to their final phase.
//
// The script speaks only the wire contract, through events.Client: Deploy
// waits for a request's result, WaitRollout for its rollout's final phase,
// Status asks over request/reply, and Watch reads a status result from the
// STATUS stream. Run tells an Observer what happens as it happens and
// returns a Report of every step; `operator-bridge demo` is a printer of
// those events.
//
// Like net/http/httptest, the World is for demonstrations and tests: it
// listens on loopback only and keeps its data in a temporary folder.
package demo
