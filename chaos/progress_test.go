package chaos

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/events"
)

func TestCheckProgress(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	req := func(id string, seq uint64) RequestMsg {
		return RequestMsg{Seq: seq, ID: id, Env: "e", App: "a", Version: id, Time: t0, Stored: t0}
	}
	res := func(r RequestMsg, outcome, msg string) ResultMsg {
		return ResultMsg{ID: events.ResultID(r.ID, r.Seq), RequestID: r.ID, Env: "e", Outcome: outcome, Message: msg}
	}
	ev := func(r RequestMsg, phase events.Phase) ProgressMsg {
		p := ProgressMsg{RequestID: r.ID, Env: "e", Phase: string(phase), Final: phase.Final(), ID: events.ProgressEventID(r.ID, r.Seq, 1)}
		if p.Final {
			p.ID = events.FinalProgressID(r.ID, r.Seq)
		}
		return p
	}
	a, b, c, replay, d := req("a", 1), req("b", 2), req("c", 3), req("a", 4), req("d", 5)
	h := History{
		Requests: []RequestMsg{a, b, c, replay, d},
		Results: []ResultMsg{
			res(a, "succeeded", "applied a"), res(b, "succeeded", "applied b"), res(c, "failed", "no"),
			res(replay, "succeeded", "already applied: request a is the one applied last"),
			// d's first delivery was applied and ended before its result.
			res(d, "succeeded", "already applied by an earlier delivery of this request to e/a; not sent again"),
		},
	}
	tests := []struct {
		name     string
		progress []ProgressMsg
		want     []ViolationKind
	}{
		{"each applied request one final", []ProgressMsg{ev(a, events.PhaseProgressing), ev(a, events.PhaseConverged), ev(b, events.PhaseSuperseded), ev(d, events.PhaseConverged)}, nil},
		{"a final missing", []ProgressMsg{ev(a, events.PhaseConverged), ev(d, events.PhaseConverged)}, []ViolationKind{ProgressMissing}},
		{"the final of a redelivery applied earlier missing", []ProgressMsg{ev(a, events.PhaseConverged), ev(b, events.PhaseConverged)}, []ViolationKind{ProgressMissing}},
		{"a final twice", []ProgressMsg{ev(a, events.PhaseConverged), ev(a, events.PhaseTimedOut), ev(b, events.PhaseConverged), ev(d, events.PhaseConverged)}, []ViolationKind{ProgressDuplicate}},
		{"progress after the final", []ProgressMsg{ev(a, events.PhaseConverged), ev(a, events.PhaseProgressing), ev(b, events.PhaseConverged), ev(d, events.PhaseConverged)}, []ViolationKind{ProgressAfterFinal}},
		{"progress of a failed request", []ProgressMsg{ev(a, events.PhaseConverged), ev(b, events.PhaseConverged), ev(c, events.PhaseProgressing), ev(d, events.PhaseConverged)}, []ViolationKind{ProgressUnmatched}},
		{"a final with a stray id", []ProgressMsg{ev(a, events.PhaseConverged), ev(b, events.PhaseConverged), ev(d, events.PhaseConverged), {RequestID: "b", Env: "e", Phase: "degraded", Final: true, ID: "x"}}, []ViolationKind{ProgressUnmatched}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []ViolationKind
			for _, v := range CheckProgress(h, tt.progress) {
				got = append(got, v.Kind)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}
