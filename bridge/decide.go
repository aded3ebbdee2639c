package bridge

import "time"

// finding is what handling a message found, before anything is done with it.
type finding int

const (
	// settled: a result is ready to be stored; then the message is acked.
	settled finding = iota
	// retryable: the operator failed in a way that may pass (5xx, timeout,
	// refused connection, infrastructure trouble).
	retryable
	// blocked: the request could not start now (another replica holds its
	// key, or its operator's circuit is open); it has not spent an attempt.
	blocked
	// unidentifiable: no CloudEvent id, so no result can name it.
	unidentifiable
	// notStarted: the bridge is stopping and the request was not started.
	notStarted
	// routed: decoded and routed, waiting for its key's turn (not a final
	// finding: prepare hands it to the order step).
	routed
	// answered: a redelivery whose result is already stored.
	answered
	// handedOver: another replica holds the key and takes the request
	// (forward.go), which then settles it.
	handedOver
)

// action is what is done with a message.
type action int

const (
	ackAfterResult  action = iota // store the result, then Ack
	failAfterWindow               // the retry window is spent: store a failed result, then Ack
	nakWithDelay                  // NakWithDelay(delay)
	nakNow                        // Nak: let another replica or the next start take it
	deadLetter                    // copy to deadletter.<subject>, confirm, then TermWithReason
	ackOnly                       // its result is stored already: Ack
)

// Retry delays: growing from retryBase, never above retryMax, and never past
// the end of the retry window (so the last try happens as the window closes).
const (
	retryBase = 500 * time.Millisecond
	retryMax  = 30 * time.Second
	retryMin  = 50 * time.Millisecond
)

// decide is the one place that turns what handling found into what is done
// with the message. age is how long ago JetStream stored the message, window
// the retry window, delivered the delivery count (1 on the first), hint how
// long a blocked request should wait (0 when unknown).
func decide(f finding, age, window time.Duration, delivered uint64, hint time.Duration) (action, time.Duration) {
	switch f {
	case settled:
		return ackAfterResult, 0
	case unidentifiable:
		return deadLetter, 0
	case notStarted:
		return nakNow, 0
	case answered:
		return ackOnly, 0
	}
	left := window - age
	if left <= 0 {
		return failAfterWindow, 0
	}
	var delay time.Duration
	if f == blocked && hint > 0 {
		delay = hint
	} else {
		delay = retryBase
		for i := uint64(1); i < delivered && delay < retryMax; i++ {
			delay *= 2
		}
	}
	delay = min(delay, retryMax, left)
	return nakWithDelay, max(delay, retryMin)
}
