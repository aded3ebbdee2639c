package demo_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/boreas/operator-bridge/demo"
	"github.com/boreas/operator-bridge/events"
)

func startWorld(t *testing.T) *demo.World {
	t.Helper()
	w, err := demo.Start(t.Context(), demo.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// recorder keeps what Run tells.
type recorder struct {
	mu     sync.Mutex
	events []demo.Event
}

func (r *recorder) Observe(e demo.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds(step int) []demo.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []demo.EventKind
	for _, e := range r.events {
		if e.Step == step {
			ks = append(ks, e.Kind)
		}
	}
	return ks
}

// The whole script, against the real embedded NATS, fakes and bridge:
// every step gets its expected outcome, and the observer hears each as it
// happens.
func TestScript(t *testing.T) {
	w := startWorld(t)
	script := w.Script()
	var rec recorder
	rep, err := w.Run(t.Context(), script, &rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Steps) != len(script) {
		t.Fatalf("report of %d steps, want %d", len(rep.Steps), len(script))
	}
	for i, s := range rep.Steps {
		if !s.OK {
			t.Errorf("step %d %q: %s", i+1, s.Title, s.Text)
		}
	}
	if n := rep.Failed(); n != 0 {
		t.Errorf("Failed() = %d, want 0", n)
	}

	find := func(title string) int {
		for i, s := range script {
			if strings.HasPrefix(s.Title, title) {
				return i + 1
			}
		}
		t.Fatalf("no step titled %q...", title)
		return 0
	}
	tests := []struct {
		title string
		want  []demo.EventKind
	}{
		{"Deploy my-app v1.0.0", []demo.EventKind{demo.StepStarted, demo.Sent, demo.Judged}},
		{"Status of my-app", []demo.EventKind{demo.StepStarted, demo.Sent, demo.Judged}},
		{"Status of shop", []demo.EventKind{demo.StepStarted, demo.StatusAnswered, demo.Judged}},
		{"Kubernetes operator outage", []demo.EventKind{demo.StepStarted, demo.Told, demo.Sent, demo.Told, demo.Judged}},
		{"Roll out my-app", []demo.EventKind{demo.StepStarted, demo.Sent, demo.Judged, demo.Judged}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, rec.kinds(find(tt.title))); diff != "" {
			t.Errorf("events of %q (-want +got):\n%s", tt.title, diff)
		}
	}
	if got := rep.Steps[find("Roll out")-1].Text; !strings.HasPrefix(got, "rollout converged after ") {
		t.Errorf("rollout step says %q, want rollout converged", got)
	}
}

// A step whose outcome is not the expected one is reported as failed, and
// the script goes on.
func TestRunReportsAnUnexpectedOutcome(t *testing.T) {
	w := startWorld(t)
	steps := []demo.Step{
		{Title: "expects a rejection", Env: demo.EnvMock, Request: events.DeployRequest{App: "api", Version: "v1"},
			Want: demo.Want{Outcome: events.Rejected, Code: events.CodeInvalidData}},
		{Title: "expects a version never deployed", Action: demo.StatusRequest, Env: demo.EnvMock, App: "api",
			Want: demo.Want{Versions: []string{"v9"}}},
		{Title: "expects what comes", Action: demo.StatusRequest, Env: demo.EnvMock, App: "api",
			Want: demo.Want{Versions: []string{"v1"}}},
	}
	rep, err := w.Run(t.Context(), steps, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := demo.Report{Steps: []demo.StepReport{
		{Title: "expects a rejection", OK: false, Text: "succeeded"},
		{Title: "expects a version never deployed", OK: false, Text: "api at v1 100%"},
		{Title: "expects what comes", OK: true, Text: "api at v1 100%"},
	}}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if rep.Failed() != 2 {
		t.Errorf("Failed() = %d, want 2", rep.Failed())
	}
}

// Run stops between steps once ctx ends, and says so.
func TestRunStopsWhenCancelled(t *testing.T) {
	w := startWorld(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var steps []demo.Step
	for range 3 {
		steps = append(steps, demo.Step{Title: "status", Action: demo.StatusRequest, Env: demo.EnvMock, App: "api"})
	}
	rep, err := w.Run(ctx, steps, demo.ObserverFunc(func(e demo.Event) {
		if e.Kind == demo.Judged {
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v after ctx ended, want context.Canceled", err)
	}
	if len(rep.Steps) != 1 {
		t.Errorf("report of %d steps after ctx ended in the first, want 1", len(rep.Steps))
	}
}
