package bridge_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// versionsNeverGoBack checks that the versions an operator applied to app,
// in order, only move forward in the order given by rank.
func versionsNeverGoBack(t *testing.T, applied []string, rank map[string]int) {
	t.Helper()
	for i := 1; i < len(applied); i++ {
		if rank[applied[i]] < rank[applied[i-1]] {
			t.Fatalf("operator went back from %s to %s: %v", applied[i-1], applied[i], applied)
		}
	}
}

func TestThirtyVersionsOneKeyNeverGoBack(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	// The operator answers after a random 0–8 ms, changing all the time.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				w.k8s.SetFault(operatortest.Fault{Latency: time.Duration(rand.IntN(8000)) * time.Microsecond})
			}
		}
	}()
	base := time.Now().Add(-time.Minute)
	rank := map[string]int{}
	ids := make([]string, 30)
	// Published in a shuffled order, each with its own CloudEvent time: the
	// time decides the order, not the arrival.
	order := rand.Perm(30)
	for _, i := range order {
		v := fmt.Sprintf("v%02d", i)
		rank[v] = i
		ids[i] = w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: v}, events.WithTime(base.Add(time.Duration(i)*time.Second)))
	}
	outcomes := map[events.Outcome]int{}
	for i, id := range ids {
		r := w.result(id)
		outcomes[r.Outcome]++
		if r.Outcome == events.Superseded && (r.Error == nil || r.Error.Code != events.CodeSuperseded || !strings.Contains(r.Message, "request ")) {
			t.Fatalf("v%02d superseded without naming the winner: %+v", i, r)
		}
	}
	applied := w.k8s.Applied("shop")
	versionsNeverGoBack(t, applied, rank)
	if applied[len(applied)-1] != "v29" {
		t.Fatalf("last applied = %s, want v29 (%v)", applied[len(applied)-1], applied)
	}
	if last := w.result(ids[29]); last.Outcome != events.Succeeded {
		t.Fatalf("newest request: %+v", last)
	}
	if outcomes[events.Succeeded]+outcomes[events.Superseded] != 30 || outcomes[events.Succeeded] != len(applied) {
		t.Fatalf("outcomes %v with %d applies", outcomes, len(applied))
	}
}

func TestOlderRequestIsSuperseded(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	now := time.Now()
	newer := w.deploy("env-pm", events.DeployRequest{App: "api", Version: "v2"}, events.WithTime(now))
	if r := w.result(newer); r.Outcome != events.Succeeded {
		t.Fatalf("newer: %+v", r)
	}
	older := w.deploy("env-pm", events.DeployRequest{App: "api", Version: "v1"}, events.WithTime(now.Add(-time.Second)))
	r := w.result(older)
	if r.Outcome != events.Superseded || r.Success || !strings.Contains(r.Message, newer) {
		t.Fatalf("older: %+v, want superseded naming %s", r, newer)
	}
	if got := w.pm.Applied("api"); len(got) != 1 || got[0] != "v2" {
		t.Fatalf("applied %v, want only v2", got)
	}
	// Another app of the same environment is its own key.
	other := w.deploy("env-pm", events.DeployRequest{App: "web", Version: "v1"}, events.WithTime(now.Add(-time.Hour)))
	if r := w.result(other); r.Outcome != events.Succeeded {
		t.Fatalf("other app: %+v", r)
	}
}

func TestReplayIsNotAppliedAgain(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	msg, id, err := events.NewDeployRequest("/test", "env-k8s", events.DeployRequest{App: "shop", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	w.publish(msg)
	first := w.result(id)
	if first.Outcome != events.Succeeded {
		t.Fatalf("first: %+v", first)
	}
	// Replayed as a new message (as `nats pub` of the stored body would).
	replay := &nats.Msg{Subject: msg.Subject, Header: nats.Header{"Content-Type": msg.Header["Content-Type"]}, Data: msg.Data}
	w.publish(replay)
	second := w.nthResult(id, 2)
	if second.Outcome != events.Succeeded || !strings.Contains(second.Message, "already applied") {
		t.Fatalf("replay: %+v", second)
	}
	if got := w.k8s.Applied("shop"); len(got) != 1 {
		t.Fatalf("operator applied %v, want once", got)
	}
	// A real rollback is a new request naming the old version.
	rb := w.deploy("env-k8s", events.DeployRequest{App: "shop", Version: "v0"})
	if r := w.result(rb); r.Outcome != events.Succeeded {
		t.Fatalf("rollback: %+v", r)
	}
	if got := w.k8s.Applied("shop"); len(got) != 2 || got[1] != "v0" {
		t.Fatalf("applied %v", got)
	}
}

func TestFailedRequestCanBeSentAgain(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	w.pm.SetFault(operatortest.Fault{Reject: true})
	msg, id, err := events.NewDeployRequest("/test", "env-pm", events.DeployRequest{App: "api", Version: "v3"})
	if err != nil {
		t.Fatal(err)
	}
	w.publish(msg)
	if r := w.result(id); r.Outcome != events.Failed {
		t.Fatalf("first: %+v", r)
	}
	w.pm.SetFault(operatortest.Fault{})
	msg.Header.Del(events.HeaderMsgID) // sent anew, past the duplicate window
	w.publish(msg)
	second := w.nthResult(id, 2)
	if second.Outcome != events.Succeeded || second.Attempts != 2 {
		t.Fatalf("second: %+v", second)
	}
}

func TestDuplicateMessageIDStoredOnce(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	msg, id, err := events.NewDeployRequest("/test", "env-k8s", events.DeployRequest{App: "shop", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	w.publish(msg)
	ack, err := w.js.PublishMsg(t.Context(), msg)
	if err != nil || !ack.Duplicate {
		t.Fatalf("re-sent request: ack %+v, err %v; want a duplicate", ack, err)
	}
	w.result(id)
	if n := len(w.storedResults()[id]); n != 1 {
		t.Fatalf("%d stored results, want 1", n)
	}
}
