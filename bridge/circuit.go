package bridge

import (
	"sync"
	"time"
)

// circuitState is the state of one operator endpoint's circuit.
type circuitState int

const (
	circuitClosed   circuitState = iota // calls flow
	circuitOpen                         // calls wait until the cool-down ends
	circuitHalfOpen                     // one probe call at a time
)

func (s circuitState) String() string {
	switch s {
	case circuitOpen:
		return "open"
	case circuitHalfOpen:
		return "half_open"
	default:
		return "closed"
	}
}

// circuits keeps one circuit per operator endpoint. While an endpoint keeps
// failing, deploy requests for its environments wait (NakWithDelay) instead
// of spending calls, and other endpoints are not affected.
type circuits struct {
	threshold int           // consecutive retryable failures that open a circuit
	coolDown  time.Duration // how long an open circuit waits before a probe
	now       func() time.Time
	onChange  func(endpoint string, s circuitState)

	mu sync.Mutex
	m  map[string]*circuit
}

type circuit struct {
	state    circuitState
	failures int
	openedAt time.Time
	probing  bool
	last     error // the failure that opened it
}

// openError is why a request waited on an open circuit; it wraps the
// failure that opened the circuit, so the request's error code is that one.
type openError struct{ last error }

func (e *openError) Error() string {
	return "operator circuit open, the operator kept failing: " + e.last.Error()
}

func (e *openError) Unwrap() error { return e.last }

func newCircuits(threshold int, coolDown time.Duration, onChange func(string, circuitState)) *circuits {
	if onChange == nil {
		onChange = func(string, circuitState) {}
	}
	return &circuits{threshold: threshold, coolDown: coolDown, now: time.Now, onChange: onChange, m: make(map[string]*circuit)}
}

func (c *circuits) get(endpoint string) *circuit {
	cc, ok := c.m[endpoint]
	if !ok {
		cc = &circuit{}
		c.m[endpoint] = cc
	}
	return cc
}

// Allow returns nil when a call to endpoint may go now; when not, it returns
// why and how long to wait before asking again.
func (c *circuits) Allow(endpoint string) (error, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.get(endpoint)
	switch cc.state {
	case circuitOpen:
		left := cc.openedAt.Add(c.coolDown).Sub(c.now())
		if left > 0 {
			return &openError{cc.last}, left
		}
		cc.state, cc.probing = circuitHalfOpen, true
		c.onChange(endpoint, circuitHalfOpen)
		return nil, 0
	case circuitHalfOpen:
		if cc.probing {
			return &openError{cc.last}, c.coolDown / 4
		}
		cc.probing = true
		return nil, 0
	}
	return nil, 0
}

// Done records the outcome of a call (or a health check) to endpoint:
// failure is nil on success, and only failures that say the endpoint is
// unavailable count.
func (c *circuits) Done(endpoint string, failure error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.get(endpoint)
	cc.probing = false
	if failure == nil {
		cc.failures = 0
		if cc.state != circuitClosed {
			cc.state = circuitClosed
			c.onChange(endpoint, circuitClosed)
		}
		return
	}
	cc.failures++
	cc.last = failure
	if cc.state == circuitHalfOpen || (cc.state == circuitClosed && cc.failures >= c.threshold) {
		cc.state, cc.openedAt = circuitOpen, c.now()
		c.onChange(endpoint, circuitOpen)
	}
}

// Cancel gives back a probe that Allow granted but that was not made.
func (c *circuits) Cancel(endpoint string) {
	c.mu.Lock()
	c.get(endpoint).probing = false
	c.mu.Unlock()
}

// State reports the circuit state of endpoint.
func (c *circuits) State(endpoint string) circuitState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.m[endpoint]; ok {
		return cc.state
	}
	return circuitClosed
}
