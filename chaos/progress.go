package chaos

import (
	"fmt"
	"strings"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// ProgressMsg is one deploy progress event as stored in the DEPLOY stream.
type ProgressMsg struct {
	Seq       uint64    // stream sequence
	ID        string    // CloudEvent id
	RequestID string    // the requestid extension
	Env       string    // environment (from the subject)
	Stored    time.Time // when JetStream stored it
	Phase     string    // progressing, converged, degraded, timed_out, superseded
	Final     bool
}

// Violations of the rollout promises.
const (
	// ProgressMissing: a request an operator applied has no final progress
	// event (the run must wait out ROLLOUT_TIMEOUT before checking).
	ProgressMissing ViolationKind = "missing final progress"
	// ProgressDuplicate: a request has more than one final progress event.
	ProgressDuplicate ViolationKind = "duplicate final progress"
	// ProgressAfterFinal: a progress event stored after the request's final one.
	ProgressAfterFinal ViolationKind = "progress after final"
	// ProgressUnmatched: a progress event of a request that was not applied,
	// or a final one whose id is not the one derived from its request.
	ProgressUnmatched ViolationKind = "unmatched progress"
)

// appliedByCall reports whether a result says an operator call applied its
// request message: succeeded, and not a replay of a request applied before.
// A message that came back after the delivery that applied it ended before
// storing its result is answered "already applied by an earlier delivery",
// and counts as applied: its rollout is owed a final event too.
func appliedByCall(res ResultMsg) bool {
	switch {
	case res.Outcome != string(events.Succeeded):
		return false
	case strings.HasPrefix(res.Message, "already applied by an earlier delivery"):
		return true
	}
	return !strings.HasPrefix(res.Message, "already applied") && !strings.HasPrefix(res.Message, "applied earlier")
}

// CheckProgress checks the rollout promises over a run's history and the
// progress events stored during it, in stream order: every request message
// whose result says an operator applied it (succeeded, and not a replay
// answered "already applied" or "applied earlier"; a redelivery answered
// "already applied by an earlier delivery" counts as applied) has exactly one final
// progress event, with the id events.FinalProgressID of the request's id
// and stream sequence, and nothing of it is stored after that final event.
// Requests sent with "rollout": false must not be in h.
func CheckProgress(h History, progress []ProgressMsg) []Violation {
	type tracked struct {
		req   RequestMsg
		final int // final events seen
	}
	byFinalID := map[string]*tracked{}
	byRequest := map[string][]*tracked{}
	byResultID := make(map[string][]RequestMsg, len(h.Requests))
	for _, r := range h.Requests {
		id := events.ResultID(r.ID, r.Seq)
		byResultID[id] = append(byResultID[id], r)
	}
	for _, res := range h.Results {
		if !appliedByCall(res) {
			continue
		}
		for _, r := range byResultID[res.ID] {
			t := &tracked{req: r}
			byFinalID[events.FinalProgressID(r.ID, r.Seq)] = t
			byRequest[r.ID] = append(byRequest[r.ID], t)
		}
	}
	var out []Violation
	add := func(kind ViolationKind, r RequestMsg, at time.Time, format string, args ...any) {
		out = append(out, Violation{Kind: kind, Key: r.Key(), RequestID: r.ID, At: at, Detail: fmt.Sprintf(format, args...)})
	}
	for _, p := range progress {
		ts := byRequest[p.RequestID]
		if len(ts) == 0 {
			add(ProgressUnmatched, RequestMsg{ID: p.RequestID, Env: p.Env}, p.Stored, "progress event %s (seq %d, %s) of a request no operator applied", p.ID, p.Seq, p.Phase)
			continue
		}
		if !p.Final {
			// Of the request's messages, the one it belongs to cannot be
			// told from a non-final event; any of them ended is a violation
			// only if all of them have.
			done := true
			for _, t := range ts {
				done = done && t.final > 0
			}
			if done {
				add(ProgressAfterFinal, ts[0].req, p.Stored, "%s event %s (seq %d) after the final one", p.Phase, p.ID, p.Seq)
			}
			continue
		}
		t, ok := byFinalID[p.ID]
		if !ok {
			add(ProgressUnmatched, ts[0].req, p.Stored, "final event %s (seq %d, %s) has no id derived from its request", p.ID, p.Seq, p.Phase)
			continue
		}
		t.final++
		if t.final > 1 {
			add(ProgressDuplicate, t.req, p.Stored, "final event %s stored again (seq %d, %s)", p.ID, p.Seq, p.Phase)
		}
	}
	for _, t := range byFinalID {
		if t.final == 0 {
			add(ProgressMissing, t.req, t.req.Stored, "applied (request seq %d) but no final progress event", t.req.Seq)
		}
	}
	return out
}
