package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

func TestRolloutField(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		want      *Rollout
		tracked   bool
		threshold int
	}{
		{"absent", `{"app":"a","version":"v1"}`, nil, true, 100},
		{"off", `{"app":"a","version":"v1","rollout":false}`, &Rollout{Off: true}, false, 100},
		{"empty object", `{"app":"a","version":"v1","rollout":{}}`, &Rollout{}, true, 100},
		{"both", `{"app":"a","version":"v1","rollout":{"timeout":"5m","min_healthy":80}}`, &Rollout{Timeout: 5 * time.Minute, MinHealthy: ptr(80)}, true, 80},
		{"min_healthy 0", `{"app":"a","version":"v1","rollout":{"min_healthy":0}}`, &Rollout{MinHealthy: ptr(0)}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(`{"specversion":"1.0","id":"r1","source":"/t","type":"io.boreas.deploy.request.v1","datacontenttype":"application/json","data":` + tt.data + `}`)
			_, req, err := DecodeDeployRequest("deploy.request.env-1", nil, body)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, req.Rollout); diff != "" {
				t.Errorf("rollout (-want +got):\n%s", diff)
			}
			if req.Rollout.Tracked() != tt.tracked || req.Rollout.Threshold() != tt.threshold {
				t.Errorf("Tracked %v Threshold %d, want %v %d", req.Rollout.Tracked(), req.Rollout.Threshold(), tt.tracked, tt.threshold)
			}
			// What is read is written back the same.
			again, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			var back DeployRequest
			if err := json.Unmarshal(again, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(req, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPhases(t *testing.T) {
	final := map[Phase]bool{PhaseProgressing: false, PhaseConverged: true, PhaseDegraded: true, PhaseTimedOut: true, PhaseSuperseded: true}
	for p, want := range final {
		if p.Final() != want || !p.Valid() {
			t.Errorf("%s: Final %v Valid %v", p, p.Final(), p.Valid())
		}
	}
	if Phase("done").Valid() {
		t.Error("done is a valid phase")
	}
}

func TestProgressIDs(t *testing.T) {
	final := FinalProgressID("req-1", 42)
	if final != FinalProgressID("req-1", 42) {
		t.Error("final id is not deterministic")
	}
	seen := map[string]string{}
	for name, id := range map[string]string{
		"final": final, "final other seq": FinalProgressID("req-1", 43), "result": ResultID("req-1", 42),
		"event 1": ProgressEventID("req-1", 42, 1), "event 2": ProgressEventID("req-1", 42, 2), "request": "req-1",
	} {
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share id %s", name, other, id)
		}
		seen[id] = name
	}
}

func TestNewDeployProgress(t *testing.T) {
	data := DeployProgress{App: "my-app", Target: []Target{{Version: "v2", Percent: 1}}, Phase: PhaseDegraded, Message: "v2 unhealthy"}
	msg, err := NewDeployProgress(SourceFor("b"), testRequest, 42, 3, data)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "deploy.progress.env-001" || msg.Header.Get(HeaderMsgID) != FinalProgressID("req-1", 42) {
		t.Errorf("subject %s, Nats-Msg-Id %s", msg.Subject, msg.Header.Get(HeaderMsgID))
	}
	e, got, err := DecodeDeployProgress(msg.Header, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	want := data
	want.RequestID, want.Environment, want.Final = "req-1", "env-001", true
	want.Observed.Versions = []VersionStatus{}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	if e.Extensions()[ExtRequestID] != "req-1" || e.Extensions()[ExtEnvironment] != "env-001" || e.Type() != TypeDeployProgress {
		t.Errorf("attributes: %v %s", e.Extensions(), e.Type())
	}

	data.Phase = PhaseProgressing
	msg, err = NewDeployProgress(SourceFor("b"), testRequest, 42, 3, data)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get(HeaderMsgID) != ProgressEventID("req-1", 42, 3) {
		t.Errorf("progressing event id %s", msg.Header.Get(HeaderMsgID))
	}
	for name, bad := range map[string]func() error{
		"no request id": func() error { _, err := NewDeployProgress("/b", Envelope{Environment: "e"}, 1, 1, data); return err },
		"no sequence":   func() error { _, err := NewDeployProgress("/b", testRequest, 0, 1, data); return err },
		"bad phase": func() error {
			d := data
			d.Phase = "done"
			_, err := NewDeployProgress("/b", testRequest, 1, 1, d)
			return err
		},
	} {
		if bad() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
