package bridge

import (
	"errors"
	"testing"
	"time"
)

func TestCircuitOpensWaitsAndProbes(t *testing.T) {
	now := time.Now()
	var changes []string
	c := newCircuits(3, 5*time.Second, func(ep string, s circuitState) { changes = append(changes, ep+":"+s.String()) })
	c.now = func() time.Time { return now }
	down := errors.New("503 from operator")
	for range 2 {
		if err, _ := c.Allow("op"); err != nil {
			t.Fatal("closed circuit refused a call")
		}
		c.Done("op", down)
	}
	if c.State("op") != circuitClosed {
		t.Fatal("opened before the threshold")
	}
	c.Done("op", down)
	err, wait := c.Allow("op")
	if err == nil || !errors.Is(err, down) || wait != 5*time.Second {
		t.Fatalf("open circuit: Allow = %v, %v", err, wait)
	}
	// Other endpoints are not affected.
	if err, _ := c.Allow("other"); err != nil {
		t.Fatal("an open circuit blocked another endpoint")
	}
	now = now.Add(5 * time.Second)
	if err, _ := c.Allow("op"); err != nil {
		t.Fatal("no probe after the cool-down")
	}
	if err, _ := c.Allow("op"); err == nil {
		t.Fatal("a second probe while the first runs")
	}
	c.Done("op", down) // the probe failed: open again
	if err, _ := c.Allow("op"); err == nil {
		t.Fatal("failed probe did not reopen the circuit")
	}
	now = now.Add(5 * time.Second)
	c.Allow("op")
	c.Done("op", nil)
	if c.State("op") != circuitClosed {
		t.Fatal("a good probe did not close the circuit")
	}
	want := []string{"op:open", "op:half_open", "op:open", "op:half_open", "op:closed"}
	if len(changes) != len(want) {
		t.Fatalf("changes = %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("changes = %v, want %v", changes, want)
		}
	}
}

// Health checks open and close the circuit but never let a second probe go.
func TestCircuitHealthChecks(t *testing.T) {
	now := time.Now()
	c := newCircuits(5, 5*time.Second, nil)
	c.now = func() time.Time { return now }
	down := errors.New("health: 503")

	// One failed check opens it; a passing one closes it.
	c.Checked("op", down)
	if err, _ := c.Allow("op"); err == nil || c.State("op") != circuitOpen {
		t.Fatalf("after one failed health check: state %v, Allow = %v; want open, refused", c.State("op"), err)
	}
	c.Checked("op", nil)
	if err, _ := c.Allow("op"); err != nil || c.State("op") != circuitClosed {
		t.Fatalf("after a passing health check: state %v, Allow = %v; want closed, allowed", c.State("op"), err)
	}
	c.Done("op", nil)

	// A probe is out when a health check fails and, after the cool-down,
	// again: the check's end must not let a second probe go.
	c.Checked("op", down)
	now = now.Add(5 * time.Second)
	if err, _ := c.Allow("op"); err != nil {
		t.Fatal("no probe after the cool-down")
	}
	c.Checked("op", down)
	now = now.Add(5 * time.Second)
	if err, _ := c.Allow("op"); err == nil {
		t.Fatal("a second probe while the first is out")
	}
	c.Done("op", down) // the first probe ends
	if err, _ := c.Allow("op"); err != nil {
		t.Fatal("no probe once the first ended")
	}

	// Calls let through before the circuit opened hold the probe back
	// until they end: their late answers cannot free a probe slot.
	c2 := newCircuits(5, 5*time.Second, nil)
	c2.now = c.now
	for range 2 {
		if err, _ := c2.Allow("ep"); err != nil {
			t.Fatal("closed circuit refused a call")
		}
	}
	c2.Checked("ep", down)
	now = now.Add(5 * time.Second)
	if err, _ := c2.Allow("ep"); err == nil {
		t.Fatal("a probe while two calls from before are out")
	}
	c2.Done("ep", down)
	c2.Cancel("ep")
	if err, _ := c2.Allow("ep"); err != nil {
		t.Fatal("no probe once the earlier calls ended")
	}
	if err, _ := c2.Allow("ep"); err == nil {
		t.Fatal("a second probe")
	}
}
