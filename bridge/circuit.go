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
	circuitHalfOpen                     // one probe call, alone
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
//
// Calls and health checks both count: a few consecutive unavailable calls,
// or one failed health check, open the circuit; a successful call or a
// passing health check closes it. After the cool-down one probe call goes,
// and only when no other call to the endpoint is out: every call that Allow
// lets through ends in exactly one Done or Cancel, and health checks, which
// Allow does not count, report through Checked, so nothing else can let a
// second probe go.
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
	inFlight int   // calls let through by Allow and not yet Done or Cancelled
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
// why and how long to wait before asking again. A nil must be followed by
// exactly one Done or Cancel.
func (c *circuits) Allow(endpoint string) (error, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.get(endpoint)
	switch cc.state {
	case circuitOpen:
		if left := cc.openedAt.Add(c.coolDown).Sub(c.now()); left > 0 {
			return &openError{cc.last}, left
		}
		if cc.inFlight > 0 { // calls from before it opened are still out
			return &openError{cc.last}, c.coolDown / 4
		}
		cc.state = circuitHalfOpen
		c.onChange(endpoint, circuitHalfOpen)
	case circuitHalfOpen:
		if cc.inFlight > 0 { // the probe is out
			return &openError{cc.last}, c.coolDown / 4
		}
	}
	cc.inFlight++
	return nil, 0
}

// Done records the outcome of a call to endpoint that Allow let through:
// failure is nil on success, and only failures that say the endpoint is
// unavailable count.
func (c *circuits) Done(endpoint string, failure error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.get(endpoint)
	cc.inFlight = max(cc.inFlight-1, 0)
	if failure == nil {
		c.close(endpoint, cc)
		return
	}
	cc.failures++
	cc.last = failure
	if cc.state == circuitHalfOpen || (cc.state == circuitClosed && cc.failures >= c.threshold) {
		c.open(endpoint, cc)
	}
}

// Checked records the outcome of a health check of endpoint: one failed
// check opens the circuit (the endpoint is unhealthy), a passing one closes
// it. It leaves the calls in flight, and so the probe, alone.
func (c *circuits) Checked(endpoint string, failure error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.get(endpoint)
	if failure == nil {
		c.close(endpoint, cc)
		return
	}
	cc.failures++
	cc.last = failure
	if cc.state != circuitOpen {
		c.open(endpoint, cc)
	}
}

func (c *circuits) open(endpoint string, cc *circuit) {
	cc.state, cc.openedAt = circuitOpen, c.now()
	c.onChange(endpoint, circuitOpen)
}

func (c *circuits) close(endpoint string, cc *circuit) {
	cc.failures = 0
	if cc.state != circuitClosed {
		cc.state = circuitClosed
		c.onChange(endpoint, circuitClosed)
	}
}

// Cancel gives back a call that Allow let through but that was not made.
func (c *circuits) Cancel(endpoint string) {
	c.mu.Lock()
	cc := c.get(endpoint)
	cc.inFlight = max(cc.inFlight-1, 0)
	c.mu.Unlock()
}

// forget drops the circuits of the endpoints not in use and returns them.
func (c *circuits) forget(inUse map[string]bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var gone []string
	for ep := range c.m {
		if !inUse[ep] {
			delete(c.m, ep)
			gone = append(gone, ep)
		}
	}
	return gone
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
