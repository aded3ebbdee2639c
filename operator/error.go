package operator

import (
	"errors"
	"fmt"
	"strings"
)

// Reason classifies an operator call's failure.
type Reason int

// The reasons of a failed operator call, each mapping to a contract error code.
const (
	// Rejected: the operator answered 4xx or success: false. Not retryable.
	Rejected Reason = iota + 1
	// InvalidResponse: a 2xx whose body is not the documented JSON (or too
	// large). Not retryable.
	InvalidResponse
	// Unavailable: 5xx, refused or reset connection, any other transport
	// failure. Retryable.
	Unavailable
	// Timeout: the call ran past its timeout. Retryable.
	Timeout
	// Stale: an operator that supports fencing answered 409 Conflict to an
	// apply, refusing it as older than one it already accepted for the app
	// (see ApplyRequest.Fence). Not retryable; its code is "superseded".
	Stale
)

var reasonNames = map[Reason]string{
	Rejected:        "rejected",
	InvalidResponse: "invalid response",
	Unavailable:     "unavailable",
	Timeout:         "timeout",
	Stale:           "stale",
}

// String returns a short description ("rejected", "invalid response",
// "unavailable", "timeout").
func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Code returns the contract's error code for r: "operator_rejected",
// "operator_invalid_response", "operator_unavailable", "operator_timeout",
// or "superseded" for Stale; "" for an unknown reason.
func (r Reason) Code() string {
	if _, ok := reasonNames[r]; !ok {
		return ""
	}
	if r == Stale {
		return "superseded"
	}
	return "operator_" + strings.ReplaceAll(r.String(), " ", "_")
}

// Retryable reports whether a call failing for r may succeed when tried again.
func (r Reason) Retryable() bool { return r == Unavailable || r == Timeout }

// Error is every failure of an operator call.
//
// A call cancelled by its caller's context returns an *Error whose Err is
// ctx.Err(), so errors.Is(err, context.Canceled) holds; it is Unavailable when
// cancelled and Timeout when the caller's deadline passed. A call that ran
// past the client's own per-call timeout is Timeout.
type Error struct {
	Op         string // "apply", "status", "health"
	Kind       Kind   // the operator's kind
	Endpoint   string // the operator's base URL without credentials, "mock" for the mock
	Reason     Reason
	StatusCode int    // HTTP status, 0 when there was none
	Message    string // the operator's message, or a description of the failure
	Err        error  // underlying error, may be nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Kind != "" {
		b.WriteString(" on ")
		b.WriteString(string(e.Kind))
		b.WriteString(" operator")
	}
	if e.Endpoint != "" {
		b.WriteString(" ")
		b.WriteString(e.Endpoint)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason.String())
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the call may succeed when tried again: true for
// Unavailable and Timeout.
func (e *Error) Retryable() bool { return e.Reason.Retryable() }

// Sentinel errors of the Manager.
var (
	ErrUnknownEnvironment  = errors.New("unknown environment")
	ErrEnvironmentInactive = errors.New("environment inactive")
)
