package chaos

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/boreas/operator-bridge/events"
)

// PhaseFigures are a phase's figures in the report.
type PhaseFigures struct {
	Phase      Phase
	Faults     []FaultWindow
	Requests   int // request messages stored during the phase
	Results    int // of those, how many have at least one result
	Missing    int
	Duplicates int
	Order      int // order violations and final-state violations
	Lies       int
	Late       int
	Unmatched  int
	// FirstResult is, for the phase's worst fault, the time from the
	// fault's end to the first result stored after it by the replica it hit
	// (any replica when it hit NATS or an operator), for the environment it
	// hit (any when it hit a replica or NATS); -1 when none came.
	FirstResult time.Duration
	// Backlog is, for the phase's worst fault, the time from the fault's end
	// until every request stored during the fault had its result (0 when
	// they all had one by the end); -1 when some never got one.
	Backlog time.Duration
}

// Figures returns the figures of each phase of the history, in order, and
// of the whole run last (its Phase.Name is "all").
func (f Findings) Figures() []PhaseFigures {
	h := f.History
	phases := slices.Clone(h.Phases)
	slices.SortFunc(phases, func(a, b Phase) int { return a.Start.Compare(b.Start) })
	phaseOf := func(t time.Time) int {
		i := 0
		for j, p := range phases {
			if !t.Before(p.Start) {
				i = j
			}
		}
		return i
	}
	out := make([]PhaseFigures, len(phases)+1)
	total := &out[len(phases)]
	total.Phase = Phase{Name: "all"}
	if len(phases) > 0 {
		total.Phase.Start, total.Phase.End = phases[0].Start, phases[len(phases)-1].End
	}
	for i, p := range phases {
		out[i].Phase = p
	}
	each := func(t time.Time, fn func(*PhaseFigures)) {
		if len(phases) > 0 {
			fn(&out[phaseOf(t)])
		}
		fn(total)
	}
	for i, r := range h.Requests {
		_, answered := f.answered[i]
		each(r.Stored, func(p *PhaseFigures) {
			p.Requests++
			if answered {
				p.Results++
			}
		})
	}
	for _, v := range f.Violations {
		each(v.At, func(p *PhaseFigures) {
			switch v.Kind {
			case Missing:
				p.Missing++
			case Duplicate:
				p.Duplicates++
			case OutOfOrder, FinalState:
				p.Order++
			case Lie:
				p.Lies++
			case Late:
				p.Late++
			case Unmatched, UnknownApply:
				p.Unmatched++
			}
		})
	}
	for _, fw := range h.Faults {
		first, backlog := f.recovery(fw)
		each(fw.Start, func(p *PhaseFigures) {
			p.Faults = append(p.Faults, fw)
			p.FirstResult = worse(p.FirstResult, first)
			p.Backlog = worse(p.Backlog, backlog)
		})
	}
	return out
}

// recovery measures how results flowed again after fault fw ended.
func (f Findings) recovery(fw FaultWindow) (first, backlog time.Duration) {
	first = -1
	for _, r := range f.History.Results {
		if fw.Replica != "" && r.Source != events.SourceFor(fw.Replica) || fw.Env != "" && r.Env != fw.Env {
			continue
		}
		if d := r.Stored.Sub(fw.End); d >= 0 && (first < 0 || d < first) {
			first = d
		}
	}
	for i, r := range f.History.Requests {
		if r.Stored.Before(fw.Start) || !r.Stored.Before(fw.End) {
			continue
		}
		at, ok := f.answered[i]
		if !ok {
			return first, -1
		}
		backlog = worse(backlog, max(0, at.Sub(fw.End)))
	}
	return first, backlog
}

// worse returns the worse of two recovery times, -1 (never) being worst.
func worse(a, b time.Duration) time.Duration {
	if a < 0 || b < 0 {
		return -1
	}
	return max(a, b)
}

// Report writes the findings as Markdown: a table of figures per phase,
// what was left at the end, and the first violations in detail.
func (f Findings) Report(w io.Writer, title string) error {
	h := f.History
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", title)
	fmt.Fprintf(&b, "Seed %d (replay with `CHAOS_SEED=%d`), retry window %s.\n\n", h.Seed, h.Seed, h.RetryWindow)
	b.WriteString("| phase | faults | requests | results | missing | duplicates | order violations | lying results | late results | first result after fault | backlog cleared after fault |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, p := range f.Figures() {
		name := p.Phase.Name
		if name == "all" {
			name = "**all**"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %s | %s |\n",
			name, describeFaults(p.Faults, p.Phase.Name == "all"), p.Requests, p.Results, p.Missing, p.Duplicates, p.Order, p.Lies, p.Late,
			recoveryText(p.FirstResult, len(p.Faults)), recoveryText(p.Backlog, len(p.Faults)))
	}
	b.WriteString("\n")
	if h.Settled {
		fmt.Fprintf(&b, "Settled %.1f s after the load stopped: every request answered, the consumer drained.\n", h.SettleTook.Seconds())
	} else {
		fmt.Fprintf(&b, "Not settled %.1f s after the load stopped (retry window + slack).\n", h.SettleTook.Seconds())
	}
	switch cs := h.Consumer; {
	case !cs.Read:
		b.WriteString("Deploy consumer at the end: could not be read.\n")
	default:
		fmt.Fprintf(&b, "Deploy consumer at the end: %d unacknowledged, %d not delivered; the DEPLOY stream had %d consumers.\n", cs.NumAckPending, cs.NumPending, cs.StreamConsumers)
	}
	for _, s := range h.Shutdowns {
		verdict := "exited within its grace"
		if !s.InGrace {
			verdict = "did NOT exit within its grace (killed)"
		}
		fmt.Fprintf(&b, "Replica %s on SIGTERM: %s after %s.\n", s.Replica, verdict, s.Took.Round(time.Millisecond))
	}
	b.WriteString("\n")
	if f.OK() {
		b.WriteString("Verdict: **every check passed**.\n")
	} else {
		counts := map[ViolationKind]int{}
		var kinds []ViolationKind
		for _, v := range f.Violations {
			if counts[v.Kind] == 0 {
				kinds = append(kinds, v.Kind)
			}
			counts[v.Kind]++
		}
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
		fmt.Fprintf(&b, "Verdict: **FAILED**: %s.\n\n", strings.Join(parts, ", "))
		b.WriteString("First violations of each kind:\n\n")
		for _, k := range kinds {
			n := 0
			for _, v := range f.Violations {
				if v.Kind == k && n < 3 {
					fmt.Fprintf(&b, "- %s\n", v)
					n++
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describeFaults(fs []FaultWindow, summary bool) string {
	if len(fs) == 0 {
		return "none"
	}
	if summary {
		return fmt.Sprintf("%d", len(fs))
	}
	var parts []string
	for _, fw := range fs {
		parts = append(parts, fmt.Sprintf("%s %s (%s)", fw.Kind, fw.Target, fw.End.Sub(fw.Start).Round(100*time.Millisecond)))
	}
	return strings.Join(parts, "; ")
}

func recoveryText(d time.Duration, faults int) string {
	switch {
	case faults == 0:
		return "–"
	case d < 0:
		return "never"
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}
