// Package statuspage is the bridge's status page for on-call engineers: one
// server-rendered HTML page on the ops address showing every environment's
// operator health and circuit, recent deploy results, rollouts in progress,
// the version applied last per environment and app, and the dead letters,
// updated live over server-sent events.
//
// The page reads JetStream, not the replica it runs in, so every replica
// shows the same cluster-wide picture: the last health event of each
// environment (stream HEALTH), the recent deploy results and progress
// events (stream DEPLOY) and the dead letters (stream DEADLETTER). Each
// replica follows these streams once, with ordered consumers, into a
// bounded in-memory board that every open page shares; a page view or a
// live update reads the board and never the bridge's request path.
//
// [RequireToken] protects an ops handler with a bearer token; browsers
// sign in once through a small form and carry an HttpOnly session cookie.
package statuspage
