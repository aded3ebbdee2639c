package events

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/boreas/operator-bridge/natsembed"
)

// startJetStream starts an in-process JetStream server with the contract's
// streams and returns its URL.
func startJetStream(t *testing.T) string {
	t.Helper()
	s, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	_, js := connect(t, s.ClientURL())
	for _, cfg := range StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(t.Context(), cfg); err != nil {
			t.Fatalf("stream %s: %v", cfg.Name, err)
		}
	}
	return s.ClientURL()
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func newClient(t *testing.T, url string, opts ...ClientOption) *Client {
	t.Helper()
	nc, _ := connect(t, url)
	c, err := NewClient(nc, append([]ClientOption{WithSource("/master-service/test")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// respondDeploys plays the bridge: it consumes deploy requests and answers
// each with a result made by this package's encoder, after a random short
// delay so that results come out of request order.
func respondDeploys(t *testing.T, url string) {
	t.Helper()
	_, js := connect(t, url)
	cons, err := js.CreateOrUpdateConsumer(t.Context(), StreamDeploy, jetstream.ConsumerConfig{
		Durable: "test-bridge", FilterSubject: "deploy.request.>", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			meta, err := m.Metadata()
			if err != nil {
				t.Error(err)
				return
			}
			env, req, err := DecodeDeployRequest(m.Subject(), m.Headers(), m.Data())
			r := DeployResult{App: req.App, Version: req.Version, Operator: "mock", Outcome: Succeeded, Success: true,
				Message: "applied " + req.Version, Attempts: 1}
			if err != nil {
				e, _ := errors.AsType[*Error](err)
				r = DeployResult{App: req.App, Version: req.Version, Outcome: Rejected, Message: err.Error(), Error: e.Info()}
			}
			msg, err := NewDeployResult(SourceFor("test-bridge"), env, meta.Sequence.Stream, r)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := js.PublishMsg(context.Background(), msg); err != nil {
				t.Error(err)
				return
			}
			_ = m.Ack()
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Stop(); <-cc.Closed(); wg.Wait() })
}

func TestClientDeployConcurrent(t *testing.T) {
	url := startJetStream(t)
	respondDeploys(t, url)
	c := newClient(t, url)

	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			env := fmt.Sprintf("env-%d", i%3)
			version := fmt.Sprintf("v%d", i)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			r, err := c.Deploy(ctx, env, DeployRequest{App: "app", Version: version})
			if err != nil {
				errs <- err
				return
			}
			if r.Version != version || r.Environment != env || r.Outcome != Succeeded || r.Message != "applied "+version {
				errs <- fmt.Errorf("deploy %s to %s got the result %+v", version, env, r)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) != 0 {
		t.Errorf("%d waiters left behind", len(c.waiters))
	}
}

func TestClientDeployRejected(t *testing.T) {
	url := startJetStream(t)
	respondDeploys(t, url)
	c := newClient(t, url)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r, err := c.Deploy(ctx, "env-1", DeployRequest{App: "bad app", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != Rejected || r.Error == nil || r.Error.Code != CodeInvalidData || !strings.Contains(r.Error.Message, "app") {
		t.Errorf("result %+v", r)
	}
}

func TestClientDeployTimeout(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)
	_, js := connect(t, url)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Deploy(ctx, "env-1", DeployRequest{App: "app", Version: "v1"}, WithID("req-timeout"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timed out after %v", d)
	}
	// The request was stored, with its id as Nats-Msg-Id.
	m, err := js.Stream(t.Context(), StreamDeploy)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := m.GetLastMsgForSubject(t.Context(), DeployRequestSubject("env-1"))
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(HeaderMsgID) != "req-timeout" {
		t.Errorf("stored request has Nats-Msg-Id %q", raw.Header.Get(HeaderMsgID))
	}
}

func TestClientDeployCancelAndClose(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := c.Deploy(ctx, "env-1", DeployRequest{App: "app", Version: "v1"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := c.Deploy(t.Context(), "env-1", DeployRequest{App: "app", Version: "v2"})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClientClosed) {
			t.Errorf("closed: error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Deploy still waiting after Close")
	}
	if _, err := c.Deploy(t.Context(), "env-1", DeployRequest{App: "app", Version: "v3"}); !errors.Is(err, ErrClientClosed) {
		t.Errorf("after Close: error %v", err)
	}
}

func TestPublishDeployDeduplicates(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)
	_, js := connect(t, url)
	for range 2 {
		id, err := c.PublishDeploy(t.Context(), "env-1", DeployRequest{App: "app", Version: "v1"}, WithID("same-id"))
		if err != nil || id != "same-id" {
			t.Fatalf("id %q, error %v", id, err)
		}
	}
	if _, err := c.PublishDeploy(t.Context(), "env-1", DeployRequest{App: "app", Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), StreamDeploy)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2 (one per id)", info.State.Msgs)
	}
	if _, err := c.PublishDeploy(t.Context(), "bad.env", DeployRequest{App: "app", Version: "v1"}); err == nil {
		t.Error("published to environment bad.env")
	}
}

// serveBridgeEndpoints plays the bridge's micro service.
func serveBridgeEndpoints(t *testing.T, url string) {
	t.Helper()
	nc, _ := connect(t, url)
	svc, err := micro.AddService(nc, micro.Config{Name: ServiceName, Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	err = svc.AddEndpoint("status", micro.HandlerFunc(func(req micro.Request) {
		env, q, err := DecodeStatusQueryOrData(req.Subject(), nats.Header(req.Headers()), req.Data())
		r := StatusResult{App: q.App, Operator: "mock", Status: AppStatus{App: q.App, Healthy: AppHealth{Level: 100},
			Versions: []VersionStatus{{Version: "v1", Percent: 1, Healthy: AppHealth{Level: 100}}}}}
		if err != nil {
			e, _ := errors.AsType[*Error](err)
			r = StatusResult{App: q.App, Degraded: true, Error: e.Info(), Status: AppStatus{App: q.App}}
		}
		msg, err := NewStatusResult(SourceFor("test-bridge"), env, 0, r)
		if err != nil {
			_ = req.Error("500", err.Error(), nil)
			return
		}
		_ = req.Respond(msg.Data, micro.WithHeaders(micro.Headers(msg.Header)))
	}), micro.WithEndpointSubject(ServiceName+".status.*"))
	if err != nil {
		t.Fatal(err)
	}
	err = svc.AddEndpoint("environments", micro.HandlerFunc(func(req micro.Request) {
		_ = req.RespondJSON([]EnvironmentInfo{
			{ID: "env-1", Name: "one", Type: "mock", Endpoint: "mock", Active: true,
				Health: &Health{Environment: "env-1", Operator: "mock", Endpoint: "mock", Healthy: true}},
			{ID: "env-2", Name: "two", Type: "kubernetes", Endpoint: "http://k8s:8081", Active: false},
		})
	}), micro.WithEndpointSubject(SubjectEnvironments))
	if err != nil {
		t.Fatal(err)
	}
	// The endpoints answer once the server has their subscriptions.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestClientStatusAndEnvironments(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.Status(ctx, "env-1", "app"); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("without a bridge: error %v, want no responders", err)
	}

	serveBridgeEndpoints(t, url)
	r, err := c.Status(ctx, "env-1", "my-app")
	if err != nil {
		t.Fatal(err)
	}
	if r.Environment != "env-1" || r.App != "my-app" || r.RequestID == "" || r.Degraded ||
		len(r.Status.Versions) != 1 || r.Status.Versions[0].Version != "v1" {
		t.Errorf("status %+v", r)
	}
	r, err = c.Status(ctx, "env-1", "bad/app")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Degraded || r.Error == nil || r.Error.Code != CodeInvalidData {
		t.Errorf("status of a bad app: %+v", r)
	}

	envs, err := c.Environments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 2 || envs[0].ID != "env-1" || envs[0].Health == nil || !envs[0].Health.Healthy || envs[1].Active || envs[1].Health != nil {
		t.Errorf("environments %+v", envs)
	}
}

func TestWatch(t *testing.T) {
	url := startJetStream(t)
	c := newClient(t, url)
	_, js := connect(t, url)
	publish := func(msg *nats.Msg) uint64 {
		t.Helper()
		ack, err := js.PublishMsg(t.Context(), msg)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	result := func(env, id string, seq uint64) *nats.Msg {
		msg, err := NewDeployResult(SourceFor("b"), Envelope{ID: id, Environment: env}, seq,
			DeployResult{App: "app", Version: id, Operator: "mock", Outcome: Succeeded, Success: true})
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	publish(result("env-1", "r1", 1))
	publish(&nats.Msg{Subject: DeployRequestSubject("env-1"), Data: []byte("not an event")})
	time.Sleep(20 * time.Millisecond)
	between := time.Now()
	time.Sleep(20 * time.Millisecond)
	seq2 := publish(result("env-2", "r2", 2))
	publish(&nats.Msg{Subject: DeployResultSubject("env-1"), Data: []byte("garbage")})
	publish(result("env-1", "r3", 3))

	// collect reads n items of a watch.
	collect := func(opts WatchOptions, n int) (ids []string, seqs []uint64, nErrs int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		for w, err := range c.Watch(ctx, opts) {
			if err != nil {
				nErrs++
				if w.Sequence == 0 {
					t.Fatalf("watch failed: %v", err)
				}
			} else {
				r, err := w.DeployResult()
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, r.RequestID)
				if w.Subject != DeployResultSubject(r.Environment) {
					t.Errorf("subject %s for a result of %s", w.Subject, r.Environment)
				}
			}
			seqs = append(seqs, w.Sequence)
			if len(seqs) == n {
				break
			}
		}
		return ids, seqs, nErrs
	}

	ids, seqs, nErrs := collect(WatchOptions{Subjects: []string{"deploy.result.>"}}, 4)
	if fmt.Sprint(ids) != "[r1 r2 r3]" || fmt.Sprint(seqs) != "[1 3 4 5]" || nErrs != 1 {
		t.Errorf("all: ids %v seqs %v errors %d", ids, seqs, nErrs)
	}
	ids, _, _ = collect(WatchOptions{Subjects: []string{DeployResultSubject("env-1")}, StartSeq: seq2}, 2)
	if fmt.Sprint(ids) != "[r3]" {
		t.Errorf("env-1 from seq %d: %v", seq2, ids)
	}
	ids, _, _ = collect(WatchOptions{Subjects: []string{"deploy.result.>"}, StartTime: between}, 3)
	if fmt.Sprint(ids) != "[r2 r3]" {
		t.Errorf("from time: %v", ids)
	}

	// New: only what comes after the watch started.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	time.AfterFunc(200*time.Millisecond, func() { publish(result("env-3", "r4", 4)) })
	for w, err := range c.Watch(ctx, WatchOptions{Subjects: []string{"deploy.result.>"}, New: true}) {
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := w.DeployResult(); r.RequestID != "r4" {
			t.Errorf("new: got %+v", r)
		}
		break
	}

	// Health: the last event of each environment.
	for i, env := range []string{"env-1", "env-2", "env-1"} {
		msg, err := NewHealth(SourceFor("b"), Health{Environment: env, Operator: "mock", Endpoint: "mock", Healthy: true, ConsecutiveFailures: i})
		if err != nil {
			t.Fatal(err)
		}
		publish(msg)
	}
	last := map[string]int{}
	for w, err := range c.Watch(ctx, WatchOptions{Subjects: []string{"operator.health.>"}, LastPerSubject: true}) {
		if err != nil {
			t.Fatal(err)
		}
		h, err := w.Health()
		if err != nil {
			t.Fatal(err)
		}
		last[h.Environment] = h.ConsecutiveFailures
		if len(last) == 2 {
			break
		}
	}
	if fmt.Sprint(last) != "map[env-1:2 env-2:1]" {
		t.Errorf("last health: %v", last)
	}
}

func TestWatchOptions(t *testing.T) {
	tests := []struct {
		opts   WatchOptions
		stream string
		ok     bool
	}{
		{WatchOptions{Subjects: []string{"deploy.result.>"}}, StreamDeploy, true},
		{WatchOptions{Subjects: []string{"operator.health.env-1", "operator.health.env-2"}}, StreamHealth, true},
		{WatchOptions{Subjects: []string{"status.result.>"}, StartSeq: 3}, StreamStatus, true},
		{WatchOptions{Subjects: []string{"other.>"}, Stream: "OTHER"}, "OTHER", true},
		{WatchOptions{}, "", false},
		{WatchOptions{Subjects: []string{"deploy.result.>", "operator.health.>"}}, "", false},
		{WatchOptions{Subjects: []string{"other.>"}}, "", false},
		{WatchOptions{Subjects: []string{"deploy.>"}, New: true, StartSeq: 1}, "", false},
	}
	for _, tt := range tests {
		stream, _, err := tt.opts.consumerConfig()
		if (err == nil) != tt.ok || (tt.ok && stream != tt.stream) {
			t.Errorf("%+v: stream %q, error %v", tt.opts, stream, err)
		}
	}
}

func TestClientDeployAgainFindsTheStoredResult(t *testing.T) {
	url := startJetStream(t)
	respondDeploys(t, url)
	first := newClient(t, url)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req := DeployRequest{App: "app", Version: "v1"}
	r1, err := first.Deploy(ctx, "env-1", req, WithID("retried-1"))
	if err != nil {
		t.Fatal(err)
	}
	// A caller that gave up waiting sends the same request again, from
	// another process, inside the duplicate window: JetStream keeps one copy
	// and the bridge answers once, so the stored result is the answer.
	again := newClient(t, url)
	r2, err := again.Deploy(ctx, "env-1", req, WithID("retried-1"))
	if err != nil {
		t.Fatalf("deploy sent again: %v", err)
	}
	if r2.RequestID != r1.RequestID || r2.Outcome != r1.Outcome || r2.Message != r1.Message {
		t.Fatalf("second answer %+v, first %+v", r2, r1)
	}
}

func TestClientDeployFindsAResultItMissedLive(t *testing.T) {
	url := startJetStream(t)
	respondDeploys(t, url)
	c := newClient(t, url)
	c.lookupAfter = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// The live subscription loses what comes (as while a connection is
	// down): only the stream still has the result.
	release, err := c.listen(ctx, "env-1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	c.mu.Lock()
	err = c.subs["env-1"].sub.Unsubscribe()
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Deploy(ctx, "env-1", DeployRequest{App: "app", Version: "v7"})
	if err != nil {
		t.Fatalf("deploy whose live result was lost: %v", err)
	}
	if r.Version != "v7" || r.Outcome != Succeeded {
		t.Fatalf("result %+v", r)
	}
}
