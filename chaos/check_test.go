package chaos

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/events"
)

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// cleanHistory is a run that kept every promise: on key e/a, r1 then r2
// applied, r3 (older than r2, arriving last) superseded without being sent.
func cleanHistory() History {
	req := func(seq uint64, id, version string, ms, storedMS int) RequestMsg {
		return RequestMsg{Seq: seq, ID: id, Env: "e", App: "a", Version: version, Time: at(ms), Stored: at(storedMS)}
	}
	res := func(r RequestMsg, seq uint64, ms int, outcome events.Outcome, msg string) ResultMsg {
		return ResultMsg{Seq: seq, ID: events.ResultID(r.ID, r.Seq), RequestID: r.ID, Env: r.Env, Stored: at(ms), Outcome: string(outcome), Message: msg}
	}
	r1 := req(1, "r1", "v1", 900, 910)
	r2 := req(3, "r2", "v2", 2000, 2010)
	r3 := req(5, "r3", "v3", 1500, 3010)
	return History{
		Seed:     7,
		Requests: []RequestMsg{r1, r2, r3},
		Results: []ResultMsg{
			res(r1, 2, 1200, events.Succeeded, "applied v1 to a"),
			res(r2, 4, 2200, events.Succeeded, "applied v2 to a"),
			res(r3, 6, 3100, events.Superseded, "superseded by request r2, applied for e/a and newer than this one; not sent"),
		},
		Applies: []Apply{
			{Env: "e", App: "a", Version: "v1", RequestID: "r1", Fence: 1, Arrived: at(1000), Decided: at(1100), Accepted: true, Status: 200},
			{Env: "e", App: "a", Version: "v2", Fence: 2, Arrived: at(2100), Decided: at(2150), Accepted: true, Status: 200}, // no header: matched by version
		},
		Faults:      []FaultWindow{{Kind: "kill", Target: "replica-1", Start: at(500), End: at(1000)}},
		Phases:      []Phase{{Name: "kill", Start: t0, End: at(10_000)}},
		Consumer:    ConsumerState{Read: true},
		Shutdowns:   []Shutdown{{Replica: "replica-1", Took: time.Second, InGrace: true}},
		RetryWindow: 10 * time.Second,
		Slack:       time.Second,
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		change func(h *History)
		want   map[ViolationKind]int
	}{
		{"clean", func(h *History) {}, nil},
		{"duplicate result", func(h *History) {
			dup := h.Results[0]
			dup.Seq, dup.Stored = 7, at(5000)
			h.Results = append(h.Results, dup)
		}, map[ViolationKind]int{Duplicate: 1}},
		{"missing result", func(h *History) { h.Results = h.Results[:2] }, map[ViolationKind]int{Missing: 1}},
		{"older accepted after newer", func(h *History) {
			h.Applies = append(h.Applies, Apply{Env: "e", App: "a", Version: "v3", RequestID: "r3", Fence: 3, Arrived: at(3020), Decided: at(3030), Accepted: true, Status: 200})
			h.Results[2].Outcome, h.Results[2].Message = string(events.Succeeded), "applied v3 to a"
		}, map[ViolationKind]int{OutOfOrder: 1, FinalState: 1}},
		{"accepted in the wrong order, arrival order right", func(h *History) {
			// r2 arrived first but was decided after r1's late decision.
			h.Applies[0].Decided = at(2200)
		}, map[ViolationKind]int{OutOfOrder: 1, FinalState: 1}},
		{"result says not sent, operator received it", func(h *History) {
			h.Applies = append(h.Applies, Apply{Env: "e", App: "a", Version: "v3", RequestID: "r3", Fence: 1, Arrived: at(3020), Decided: at(3030), Status: 409})
		}, map[ViolationKind]int{Lie: 1}},
		{"result says sent before, not sent again", func(h *History) {
			h.Results[2].Message = "sent to the operator earlier with no answer recorded; request r2, newer, was applied for e/a since; not sent again"
			h.Applies = append(h.Applies, Apply{Env: "e", App: "a", Version: "v3", RequestID: "r3", Fence: 1, Arrived: at(3020)})
		}, nil},
		{"result says not sent again, but also not sent", func(h *History) {
			h.Results[2].Message = "not sent again; in fact not sent"
			h.Applies = append(h.Applies, Apply{Env: "e", App: "a", Version: "v3", RequestID: "r3", Fence: 1, Arrived: at(3020)})
		}, map[ViolationKind]int{Lie: 1}},
		{"result says succeeded, operator never accepted it", func(h *History) {
			h.Applies[1].Accepted, h.Applies[1].Status = false, 503
		}, map[ViolationKind]int{Lie: 1, FinalState: 1}},
		{"result says refused as stale, operator never answered 409", func(h *History) {
			h.Results[2].Message = "the operator refused the apply as stale"
		}, map[ViolationKind]int{Lie: 1}},
		{"refused as stale and it was", func(h *History) {
			h.Results[2].Message = "the operator refused the apply as stale (stale fence 1 < 2)"
			h.Applies = append(h.Applies, Apply{Env: "e", App: "a", Version: "v3", RequestID: "r3", Fence: 1, Arrived: at(3020), Decided: at(3030), Status: 409})
		}, nil},
		{"replay of a sent request is not sent itself", func(h *History) {
			replay := h.Requests[0]
			replay.Seq, replay.Stored = 8, at(4000)
			h.Requests = append(h.Requests, replay)
			h.Results = append(h.Results, ResultMsg{Seq: 9, ID: events.ResultID("r1", 8), RequestID: "r1", Env: "e", Stored: at(4100),
				Outcome: string(events.Superseded), Message: "superseded by request r2; not sent"})
		}, nil},
		{"replay without a result of its own", func(h *History) {
			replay := h.Requests[0]
			replay.Seq, replay.Stored = 8, at(4000)
			h.Requests = append(h.Requests, replay)
		}, map[ViolationKind]int{Missing: 1}},
		{"late result", func(h *History) { h.Results[0].Stored = at(910 + 11_001) }, map[ViolationKind]int{Late: 1}},
		{"result of no stored message", func(h *History) {
			h.Results = append(h.Results, ResultMsg{Seq: 9, ID: events.ResultID("r1", 99), RequestID: "r1", Env: "e", Stored: at(5000), Outcome: "succeeded"})
		}, map[ViolationKind]int{Unmatched: 1}},
		{"requestid disagrees", func(h *History) { h.Results[0].RequestID = "r9" }, map[ViolationKind]int{Unmatched: 1, Missing: 1}},
		{"apply of no request", func(h *History) {
			h.Applies = append(h.Applies, Apply{Env: "e", App: "a", Version: "v9", Arrived: at(3000), Decided: at(3000), Status: 503})
		}, map[ViolationKind]int{UnknownApply: 1}},
		{"newest succeeded never applied", func(h *History) {
			h.Applies = nil
			h.Results[0].Outcome = string(events.Failed)
		}, map[ViolationKind]int{Lie: 1, FinalState: 1}},
		{"fencing headers that match", func(h *History) {
			h.Applies[0].RequestTime = at(900)
			h.Applies[1].RequestID, h.Applies[1].RequestTime = "r2", at(2000).In(time.FixedZone("X", 3600))
		}, nil},
		{"request id header of another request", func(h *History) { h.Applies[1].RequestID = "r1" }, map[ViolationKind]int{BadHeader: 1, FinalState: 1, Lie: 1}},
		{"request time header wrong", func(h *History) { h.Applies[0].RequestTime = at(901) }, map[ViolationKind]int{BadHeader: 1}},
		{"messages left unacknowledged", func(h *History) { h.Consumer.NumAckPending = 3 }, map[ViolationKind]int{Unacked: 1}},
		{"messages left undelivered", func(h *History) { h.Consumer.NumPending = 1 }, map[ViolationKind]int{Unacked: 1}},
		{"consumer unreadable", func(h *History) { h.Consumer.Read = false }, map[ViolationKind]int{Unacked: 1}},
		{"slow shutdown", func(h *History) { h.Shutdowns[0].InGrace = false }, map[ViolationKind]int{SlowShutdown: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := cleanHistory()
			tt.change(&h)
			f := Check(h)
			got := map[ViolationKind]int{}
			for _, v := range f.Violations {
				got[v.Kind]++
			}
			if tt.want == nil {
				tt.want = map[ViolationKind]int{}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("violations (-want +got):\n%s\nfound: %v", diff, f.Violations)
			}
			if f.OK() != (len(tt.want) == 0) {
				t.Errorf("OK() = %v with %v", f.OK(), f.Violations)
			}
		})
	}
}

func TestCheckNamesTheCulprits(t *testing.T) {
	h := cleanHistory()
	h.Applies = append(h.Applies, Apply{Env: "e", App: "a", Version: "v3", RequestID: "r3", Fence: 3, Arrived: at(3020), Decided: at(3030), Accepted: true, Status: 200})
	f := Check(h)
	var order Violation
	for _, v := range f.Violations {
		if v.Kind == OutOfOrder {
			order = v
		}
	}
	for _, want := range []string{"e/a", "r3", "v3", "after r2", "v2", "newer by 500ms"} {
		if !strings.Contains(order.String(), want) {
			t.Errorf("%q does not say %q", order, want)
		}
	}

	h = cleanHistory()
	h.Applies = append(h.Applies,
		Apply{Env: "e", App: "a", Version: "v3", RequestID: "r3", Arrived: at(3020), Status: 502},
		Apply{Env: "e", App: "a", Version: "v3", RequestID: "r3", Arrived: at(3040)})
	f = Check(h)
	if len(f.Violations) != 1 || !strings.Contains(f.Violations[0].String(), "operator received the request (its answers: 502, no answer)") {
		t.Errorf("violations %v, want one lie quoting the operator's answers", f.Violations)
	}
}

func TestFigures(t *testing.T) {
	h := cleanHistory()
	h.Phases = []Phase{{Name: "kill", Start: t0, End: at(2500)}, {Name: "stall", Start: at(2500), End: at(10_000)}}
	h.Faults[0].Replica = "replica-1"
	h.Faults = append(h.Faults, FaultWindow{Kind: "stall", Target: "replica-2", Replica: "replica-2", Start: at(2600), End: at(3000)})
	h.Results[0].Source = events.SourceFor("replica-2")
	h.Results[1].Source = events.SourceFor("replica-1")
	h.Results = slices.Delete(h.Results, 2, 3) // r3, stored during the stall, never answered
	f := Check(h)
	got := f.Figures()
	type row struct {
		Name                                                      string
		Requests, Results, Missing, Duplicates, Order, Lies, Late int
		FirstResult, Backlog                                      time.Duration
	}
	var rows []row
	for _, p := range got {
		rows = append(rows, row{p.Phase.Name, p.Requests, p.Results, p.Missing, p.Duplicates, p.Order, p.Lies, p.Late, p.FirstResult, p.Backlog})
	}
	want := []row{
		{"kill", 2, 2, 0, 0, 0, 0, 0, 1200 * time.Millisecond, 200 * time.Millisecond}, // replica-1's next result at 2200; r1, stored in the fault, answered 200ms after it
		{"stall", 1, 0, 1, 0, 0, 0, 0, -1, 0},                                          // no result after 3000; nothing stored during it
		{"all", 3, 2, 1, 0, 0, 0, 0, -1, 200 * time.Millisecond},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("figures (-want +got):\n%s", diff)
	}
}

func TestReport(t *testing.T) {
	var b bytes.Buffer
	if err := Check(cleanHistory()).Report(&b, "clean"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## clean", "CHAOS_SEED=7", "| kill | kill replica-1 (500ms) | 3 | 3 | 0 | 0 | 0 | 0 | 0 | 0.2 s | 0.2 s |", "| **all** | 1 | 3 | 3 |", "every check passed"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report does not contain %q:\n%s", want, b.String())
		}
	}

	h := cleanHistory()
	h.Results = h.Results[:2]
	h.Consumer.NumAckPending = 2
	b.Reset()
	if err := Check(h).Report(&b, "broken"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FAILED", "1 missing result", "1 unacked", "missing result e/a request r3: message at stream sequence 5", "2 unacknowledged"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report does not contain %q:\n%s", want, b.String())
		}
	}
}
