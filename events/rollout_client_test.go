package events

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// publishProgress plays the bridge: it stores the given phases as progress
// events of request id.
func publishProgress(t *testing.T, url, id string, phases ...Phase) {
	t.Helper()
	_, js := connect(t, url)
	req := Envelope{ID: id, Environment: "env-001"}
	for i, ph := range phases {
		msg, err := NewDeployProgress(SourceFor("bridge"), req, 7, i+1, DeployProgress{
			App: "shop", Target: []Target{{Version: "v2", Percent: 1}}, Phase: ph, Message: string(ph), ElapsedMS: int64(i),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProgressAndWaitRollout(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)
	// Another request's events are interleaved and skipped.
	publishProgress(t, url, "other", PhaseProgressing)
	publishProgress(t, url, "req-1", PhaseProgressing, PhaseProgressing)
	publishProgress(t, url, "other", PhaseDegraded)

	// The final event comes while Progress is already reading.
	go func() {
		time.Sleep(100 * time.Millisecond)
		publishProgress(t, url, "req-1", PhaseConverged)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []Phase
	for p, err := range c.Progress(ctx, "env-001", "req-1") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.Phase)
	}
	if diff := cmp.Diff([]Phase{PhaseProgressing, PhaseProgressing, PhaseConverged}, got); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}

	// Stored already: found at once.
	final, err := c.WaitRollout(ctx, "env-001", "other")
	if err != nil || final.Phase != PhaseDegraded || !final.Final {
		t.Errorf("WaitRollout(other) = %+v, %v", final, err)
	}
	// From a point after the events: only a later one would do.
	short, cancelShort := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancelShort()
	if _, err := c.WaitRollout(short, "env-001", "other", ProgressSince(time.Now().Add(time.Hour))); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitRollout with nothing to find: %v, want a deadline error", err)
	}
}
