package chaos

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// ViolationKind names what a Violation breaks.
type ViolationKind string

// The kinds of violation Check finds.
const (
	// Missing: a stored request message has no stored result.
	Missing ViolationKind = "missing result"
	// Duplicate: a stored request message has more than one stored result.
	Duplicate ViolationKind = "duplicate result"
	// Unmatched: a stored result belongs to no stored request message (its
	// id is not derived from one, or its requestid extension disagrees).
	Unmatched ViolationKind = "unmatched result"
	// OutOfOrder: an operator accepted a request older than one it had
	// accepted before for the same key.
	OutOfOrder ViolationKind = "order violation"
	// FinalState: the last request an operator accepted for a key is not the
	// newest one whose result says succeeded.
	FinalState ViolationKind = "final state"
	// Lie: a result that contradicts what the operator recorded.
	Lie ViolationKind = "lying result"
	// Late: a result stored later than the retry window (plus slack) after
	// its request.
	Late ViolationKind = "late result"
	// UnknownApply: an operator received an apply that matches no stored
	// request.
	UnknownApply ViolationKind = "unknown apply"
	// BadHeader: an apply's Boreas-Request-Id or Boreas-Request-Time does
	// not match the request it applies.
	BadHeader ViolationKind = "bad fencing header"
	// Unacked: the deploy consumer still had messages pending or
	// unacknowledged once the run settled, or its state could not be read.
	Unacked ViolationKind = "unacked"
	// SlowShutdown: a replica did not exit within its grace after SIGTERM.
	SlowShutdown ViolationKind = "slow shutdown"
)

// Violation is one broken promise found in a History.
type Violation struct {
	Kind      ViolationKind
	Key       Key
	RequestID string
	At        time.Time // when it happened, to place it in a phase
	Detail    string
}

func (v Violation) String() string {
	var b strings.Builder
	b.WriteString(string(v.Kind))
	if v.Key != (Key{}) {
		b.WriteString(" ")
		b.WriteString(v.Key.String())
	}
	if v.RequestID != "" {
		b.WriteString(" request ")
		b.WriteString(v.RequestID)
	}
	b.WriteString(": ")
	b.WriteString(v.Detail)
	return b.String()
}

// Findings are what Check found in a History.
type Findings struct {
	History    History
	Violations []Violation

	answered map[int]time.Time // request message index → first result stored
}

// Count returns how many violations of kind were found.
func (f Findings) Count(kind ViolationKind) int {
	n := 0
	for _, v := range f.Violations {
		if v.Kind == kind {
			n++
		}
	}
	return n
}

// OK reports whether the history broke no promise.
func (f Findings) OK() bool { return len(f.Violations) == 0 }

// Check checks a history against the bridge's promises; see the package
// documentation for what it looks for.
func Check(h History) Findings {
	c := checker{h: h, f: Findings{History: h, answered: map[int]time.Time{}}}
	c.index()
	c.results()
	c.applies()
	c.lies()
	c.settled()
	slices.SortStableFunc(c.f.Violations, func(a, b Violation) int { return a.At.Compare(b.At) })
	return c.f
}

type checker struct {
	h History
	f Findings

	byResultID map[string]int       // derived result id → request message index
	byID       map[string][]int     // request id → its message indexes
	byVersion  map[[3]string]string // env, app, version → request id
	resultsOf  map[int][]ResultMsg  // request message index → its results
	received   map[string][]string  // request id → the answers to its applies ("200", "no answer")
	accepted   map[string]bool      // request id → an operator accepted it
	refused    map[string]bool      // request id → an operator answered 409
}

func (c *checker) add(v Violation) { c.f.Violations = append(c.f.Violations, v) }

func (c *checker) index() {
	c.byResultID = make(map[string]int, len(c.h.Requests))
	c.byID = make(map[string][]int, len(c.h.Requests))
	c.byVersion = make(map[[3]string]string, len(c.h.Requests))
	c.resultsOf = make(map[int][]ResultMsg, len(c.h.Requests))
	for i, r := range c.h.Requests {
		c.byResultID[events.ResultID(r.ID, r.Seq)] = i
		c.byID[r.ID] = append(c.byID[r.ID], i)
		c.byVersion[[3]string{r.Env, r.App, r.Version}] = r.ID
	}
}

// results matches results to request messages: exactly one each, in time.
func (c *checker) results() {
	for _, res := range c.h.Results {
		i, ok := c.byResultID[res.ID]
		if !ok {
			c.add(Violation{Kind: Unmatched, RequestID: res.RequestID, At: res.Stored,
				Detail: fmt.Sprintf("result %s (stream sequence %d) is not the result id of any stored message of its request", res.ID, res.Seq)})
			continue
		}
		req := c.h.Requests[i]
		if res.RequestID != req.ID {
			c.add(Violation{Kind: Unmatched, Key: req.Key(), RequestID: req.ID, At: res.Stored,
				Detail: fmt.Sprintf("result %s carries requestid %q", res.ID, res.RequestID)})
			continue
		}
		c.resultsOf[i] = append(c.resultsOf[i], res)
	}
	limit := c.h.RetryWindow + c.h.Slack
	for i, req := range c.h.Requests {
		rs := c.resultsOf[i]
		switch {
		case len(rs) == 0:
			c.add(Violation{Kind: Missing, Key: req.Key(), RequestID: req.ID, At: req.Stored,
				Detail: fmt.Sprintf("message at stream sequence %d (version %s) has no result", req.Seq, req.Version)})
			continue
		case len(rs) > 1:
			var seqs []string
			for _, r := range rs {
				seqs = append(seqs, fmt.Sprintf("%d (%s)", r.Seq, r.Outcome))
			}
			c.add(Violation{Kind: Duplicate, Key: req.Key(), RequestID: req.ID, At: req.Stored,
				Detail: fmt.Sprintf("message at stream sequence %d has %d results, at sequences %s", req.Seq, len(rs), strings.Join(seqs, ", "))})
		}
		first := slices.MinFunc(rs, func(a, b ResultMsg) int { return a.Stored.Compare(b.Stored) })
		c.f.answered[i] = first.Stored
		if took := first.Stored.Sub(req.Stored); limit > 0 && took > limit {
			c.add(Violation{Kind: Late, Key: req.Key(), RequestID: req.ID, At: req.Stored,
				Detail: fmt.Sprintf("result stored %s after its request, past the retry window %s + %s", took.Round(time.Millisecond), c.h.RetryWindow, c.h.Slack)})
		}
	}
}

// applies checks the order of what the operators accepted, per key.
func (c *checker) applies() {
	c.received, c.accepted, c.refused = map[string][]string{}, map[string]bool{}, map[string]bool{}
	type accept struct {
		Apply
		id   string
		time time.Time
	}
	byKey := map[Key][]accept{}
	for _, a := range c.h.Applies {
		id := a.RequestID
		if id == "" {
			id = c.byVersion[[3]string{a.Env, a.App, a.Version}]
		}
		idx, ok := c.byID[id]
		if id == "" || !ok {
			c.add(Violation{Kind: UnknownApply, Key: a.Key(), RequestID: a.RequestID, At: a.Arrived,
				Detail: fmt.Sprintf("apply of version %s matches no stored request", a.Version)})
			continue
		}
		answer := "no answer"
		if a.Status != 0 {
			answer = fmt.Sprint(a.Status)
		}
		c.received[id] = append(c.received[id], answer)
		req := c.h.Requests[idx[0]]
		if a.RequestID != "" && (req.Version != a.Version || req.App != a.App || req.Env != a.Env) {
			c.add(Violation{Kind: BadHeader, Key: a.Key(), RequestID: id, At: a.Arrived,
				Detail: fmt.Sprintf("apply of version %s carries the id of request %s, whose version is %s", a.Version, id, req.Version)})
		}
		if !a.RequestTime.IsZero() && !a.RequestTime.Equal(req.Time) {
			c.add(Violation{Kind: BadHeader, Key: a.Key(), RequestID: id, At: a.Arrived,
				Detail: fmt.Sprintf("apply carries Boreas-Request-Time %s, the request's time is %s", a.RequestTime.UTC().Format(time.RFC3339Nano), req.Time.UTC().Format(time.RFC3339Nano))})
		}
		if a.Status == 409 {
			c.refused[id] = true
		}
		if !a.Accepted {
			continue
		}
		c.accepted[id] = true
		byKey[a.Key()] = append(byKey[a.Key()], accept{a, id, req.Time})
	}

	newest := c.newestSucceeded()
	keys := make([]Key, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	for k := range newest {
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b Key) int { return cmp.Or(cmp.Compare(a.Env, b.Env), cmp.Compare(a.App, b.App)) })
	for _, k := range keys {
		as := byKey[k]
		slices.SortStableFunc(as, func(a, b accept) int { return a.Decided.Compare(b.Decided) })
		var high accept
		for i, a := range as {
			if i > 0 && a.time.Before(high.time) {
				c.add(Violation{Kind: OutOfOrder, Key: k, RequestID: a.id, At: a.Decided,
					Detail: fmt.Sprintf("operator accepted %s (version %s, time %s, fence %d) after %s (version %s, time %s, fence %d), which is newer by %s",
						a.id, a.Version, stamp(a.time), a.Fence, high.id, high.Version, stamp(high.time), high.Fence, high.time.Sub(a.time).Round(time.Microsecond))})
			}
			if i == 0 || !a.time.Before(high.time) {
				high = a
			}
		}
		want, ok := newest[k]
		switch {
		case len(as) == 0:
			c.add(Violation{Kind: FinalState, Key: k, RequestID: want.ID, At: want.Stored,
				Detail: fmt.Sprintf("request %s (version %s) succeeded but the operator accepted nothing for the key", want.ID, want.Version)})
		case !ok:
			last := as[len(as)-1]
			c.add(Violation{Kind: FinalState, Key: k, RequestID: last.id, At: last.Decided,
				Detail: fmt.Sprintf("operator runs %s (version %s) but no result of the key says succeeded", last.id, last.Version)})
		case as[len(as)-1].id != want.ID:
			last := as[len(as)-1]
			c.add(Violation{Kind: FinalState, Key: k, RequestID: last.id, At: last.Decided,
				Detail: fmt.Sprintf("operator runs %s (version %s, time %s) but the newest request whose result says succeeded is %s (version %s, time %s)",
					last.id, last.Version, stamp(last.time), want.ID, want.Version, stamp(want.Time))})
		}
	}
}

// newestSucceeded returns, per key, the newest request with a succeeded result.
func (c *checker) newestSucceeded() map[Key]RequestMsg {
	out := map[Key]RequestMsg{}
	for i, req := range c.h.Requests {
		for _, r := range c.resultsOf[i] {
			if r.Outcome != string(events.Succeeded) {
				continue
			}
			if cur, ok := out[req.Key()]; !ok || cur.Time.Before(req.Time) {
				out[req.Key()] = req
			}
		}
	}
	return out
}

// lies checks that results tell what the operator recorded.
func (c *checker) lies() {
	for i, req := range c.h.Requests {
		for _, r := range c.resultsOf[i] {
			msg := strings.ToLower(r.Message)
			switch {
			case r.Outcome == string(events.Succeeded) && !c.accepted[req.ID]:
				c.add(Violation{Kind: Lie, Key: req.Key(), RequestID: req.ID, At: req.Stored,
					Detail: fmt.Sprintf("result %s says succeeded (%q) but the operator never accepted the request", r.ID, r.Message)})
			case r.Outcome == string(events.Superseded) && claimsNeverSent(msg) && len(c.received[req.ID]) > 0 && len(c.byID[req.ID]) == 1:
				// Only for requests stored once: a replay of a request that was
				// sent is truthfully "not sent" itself.
				c.add(Violation{Kind: Lie, Key: req.Key(), RequestID: req.ID, At: req.Stored,
					Detail: fmt.Sprintf("result %s says %q but the operator received the request (its answers: %s)", r.ID, r.Message, strings.Join(c.received[req.ID], ", "))})
			case strings.Contains(msg, "refused") && strings.Contains(msg, "stale") && !c.refused[req.ID]:
				c.add(Violation{Kind: Lie, Key: req.Key(), RequestID: req.ID, At: req.Stored,
					Detail: fmt.Sprintf("result %s says %q but the operator never answered 409 to the request", r.ID, r.Message)})
			}
		}
	}
}

// claimsNeverSent reports whether a result's message (lower case) says its
// request was not sent: "not sent", but not "not sent again", which says
// it was sent before.
func claimsNeverSent(msg string) bool {
	return strings.Contains(strings.ReplaceAll(msg, "not sent again", ""), "not sent")
}

// settled checks what is left once the run is over.
func (c *checker) settled() {
	end := time.Time{}
	for _, p := range c.h.Phases {
		end = later(end, p.End)
	}
	switch cs := c.h.Consumer; {
	case !cs.Read:
		c.add(Violation{Kind: Unacked, At: end, Detail: "the deploy consumer's state could not be read"})
	case cs.NumAckPending > 0 || cs.NumPending > 0:
		c.add(Violation{Kind: Unacked, At: end,
			Detail: fmt.Sprintf("the deploy consumer has %d messages unacknowledged and %d not delivered", cs.NumAckPending, cs.NumPending)})
	}
	for _, s := range c.h.Shutdowns {
		if !s.InGrace {
			c.add(Violation{Kind: SlowShutdown, At: end,
				Detail: fmt.Sprintf("replica %s did not exit within its grace after SIGTERM (%s, then SIGKILL)", s.Replica, s.Took.Round(time.Millisecond))})
		}
	}
}

func stamp(t time.Time) string { return t.UTC().Format("15:04:05.000000") }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
