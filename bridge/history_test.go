package bridge_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

func TestRepublishingHistoryChangesNothing(t *testing.T) {
	w := newWorld(t)
	w.startBridge()
	ids := w.load(40)
	w.exactlyOneResultEach(ids)
	before := map[string][]string{}
	for app := range 7 {
		name := "app" + string(rune('0'+app))
		before["k8s/"+name] = w.k8s.Applied(name)
		before["pm/"+name] = w.pm.Applied(name)
	}
	// Re-publish every stored request, as an engineer replaying history
	// with the nats CLI would: new messages, same bodies.
	stream, err := w.js.Stream(t.Context(), events.StreamDeploy)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{"deploy.request.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for range ids {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		h := nats.Header{}
		for k, v := range m.Headers() {
			if k != events.HeaderMsgID {
				h[k] = v
			}
		}
		w.publish(&nats.Msg{Subject: m.Subject(), Header: h, Data: m.Data()})
	}
	w.eventually(30*time.Second, "replays answered", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, id := range ids {
			if len(w.res[id]) < 2 {
				return false
			}
		}
		return true
	})
	for app := range 7 {
		name := "app" + string(rune('0'+app))
		if got := w.k8s.Applied(name); len(got) != len(before["k8s/"+name]) {
			t.Fatalf("k8s %s: %v after replay, %v before", name, got, before["k8s/"+name])
		}
		if got := w.pm.Applied(name); len(got) != len(before["pm/"+name]) {
			t.Fatalf("pm %s: %v after replay, %v before", name, got, before["pm/"+name])
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		if r := w.res[id][1]; r.Outcome != events.Succeeded && r.Outcome != events.Superseded {
			t.Fatalf("replay of %s: %+v", id, r)
		}
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogsOneLinePerOutcomeAndNoSecrets(t *testing.T) {
	w := newWorld(t)
	const token = "s3cr3t-operator-token"
	w.pm.SetFault(operatortest.Fault{Token: token})
	var logs syncBuffer
	w.startBridge(func(o *bridgeOpts) {
		o.settings.Token = token
		o.cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.cfg.HealthInterval = 100 * time.Millisecond
	})
	ok := w.deploy("env-pm", events.DeployRequest{App: "api", Version: "v1"})
	bad := w.deploy("env-nowhere", events.DeployRequest{App: "api", Version: "v1"})
	w.result(ok)
	w.result(bad)
	w.pm.SetFault(operatortest.Fault{Token: "another"}) // now the bridge's token is refused
	w.result(w.deploy("env-pm", events.DeployRequest{App: "api", Version: "v2"}))
	time.Sleep(300 * time.Millisecond) // a few health rounds with the token
	out := logs.String()
	if strings.Contains(out, token) {
		t.Fatalf("the operator token reached the log:\n%s", out)
	}
	for _, id := range []string{ok, bad} {
		if n := strings.Count(out, `"id":"`+id+`"`); n != 1 {
			t.Fatalf("request %s has %d log lines, want 1:\n%s", id, n, out)
		}
	}
	if !strings.Contains(out, `"outcome":"succeeded"`) || !strings.Contains(out, `"code":"unknown_environment"`) {
		t.Fatalf("outcome lines missing fields:\n%s", out)
	}
}

func TestUnmanagedStreamsMustExist(t *testing.T) {
	w := newWorld(t)
	f, err := newFactory(t)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBridge(w, f, false)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "DEPLOY") || !strings.Contains(err.Error(), "MANAGE_STREAMS") {
		t.Fatalf("Run without streams = %v, want a clear error naming DEPLOY and MANAGE_STREAMS", err)
	}
	// Once the streams exist (made by a managing bridge), an unmanaged one runs.
	w.startBridge().stop(t)
	w.startBridge(func(o *bridgeOpts) { o.cfg.ExternalStreams = true })
}
