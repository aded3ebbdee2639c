package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// The bridge declares the factory it uses; the operator package's satisfies it.
var _ bridge.Factory = (*operator.Factory)(nil)

// world is a real JetStream, two fake operators and an environments file:
// env-k8s and env-k8s-2 on the Kubernetes fake (one endpoint), env-pm on the
// physical fake, env-mock on the mock, env-off inactive.
type world struct {
	t     *testing.T
	srv   *natsembed.Server
	dir   string
	k8s   *operatortest.Server
	pm    *operatortest.Server
	file  string
	nc    *nats.Conn
	js    jetstream.JetStream
	mu    sync.Mutex
	res   map[string][]events.DeployResult // request id -> results seen live
	stres map[string][]events.StatusResult
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), res: map[string][]events.DeployResult{}, stres: map[string][]events.StatusResult{}}
	w.startNATS("127.0.0.1:-1")
	w.k8s = operatortest.NewServer(operator.Kubernetes)
	t.Cleanup(w.k8s.Close)
	w.pm = operatortest.NewServer(operator.Physical)
	t.Cleanup(w.pm.Close)
	w.file = filepath.Join(w.dir, "environments.yaml")
	envs := fmt.Sprintf(`environments:
  - {id: env-k8s, name: prod-k8s, type: k8s, operator_url: %q}
  - {id: env-k8s-2, name: prod-k8s-2, type: kubernetes, operator_url: %q}
  - {id: env-pm, name: lab-pm, type: pm, operator_url: %q}
  - {id: env-mock, name: dev, type: mock}
  - {id: env-off, name: old, type: k8s, operator_url: %q, active: false}
`, w.k8s.URL, w.k8s.URL, w.pm.URL, w.k8s.URL)
	if err := os.WriteFile(w.file, []byte(envs), 0o600); err != nil {
		t.Fatal(err)
	}
	w.nc = w.connect()
	js, err := jetstream.New(w.nc)
	if err != nil {
		t.Fatal(err)
	}
	w.js = js
	// Results are collected live from the start, as a dashboard would.
	if _, err := w.nc.Subscribe("deploy.result.>", func(m *nats.Msg) {
		_, r, err := events.DecodeDeployResult(m.Header, m.Data)
		if err != nil {
			t.Errorf("undecodable deploy result: %v: %s", err, m.Data)
			return
		}
		w.mu.Lock()
		w.res[r.RequestID] = append(w.res[r.RequestID], r)
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.nc.Subscribe("status.result.>", func(m *nats.Msg) {
		_, r, err := events.DecodeStatusResult(m.Header, m.Data)
		if err != nil {
			t.Errorf("undecodable status result: %v: %s", err, m.Data)
			return
		}
		w.mu.Lock()
		w.stres[r.RequestID] = append(w.stres[r.RequestID], r)
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) startNATS(listen string) {
	s, err := natsembed.Start(natsembed.Config{Listen: listen, StoreDir: filepath.Join(w.dir, "js")})
	if err != nil {
		w.t.Fatal(err)
	}
	w.srv = s
	w.t.Cleanup(s.Stop)
}

func (w *world) connect() *nats.Conn {
	nc, err := nats.Connect(w.srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(nc.Close)
	return nc
}

// running is a bridge running in the background.
type running struct {
	b      *bridge.Bridge
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned, with err set
	err    error
}

// stop cancels the bridge and waits for Run to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

type bridgeOpts struct {
	cfg      bridge.Config
	settings operator.Settings
}

// startBridge runs a bridge on its own connection with short test settings.
func (w *world) startBridge(mod ...func(*bridgeOpts)) *running {
	w.t.Helper()
	o := bridgeOpts{
		cfg: bridge.Config{
			Instance:           "test",
			EnvironmentsFile:   w.file,
			EnvironmentsBucket: "environments",
			OperatorTimeout:    500 * time.Millisecond,
			RetryWindow:        3 * time.Second,
			HealthInterval:     time.Hour,
			ShutdownGrace:      5 * time.Second,
			Registerer:         prometheus.NewRegistry(),
		},
		settings: operator.DefaultSettings(),
	}
	o.settings.Timeout = 500 * time.Millisecond
	for _, m := range mod {
		m(&o)
	}
	if o.cfg.OperatorTimeout != o.settings.Timeout {
		o.settings.Timeout = o.cfg.OperatorTimeout
	}
	f, err := operator.NewFactory(o.settings)
	if err != nil {
		w.t.Fatal(err)
	}
	nc := w.connect()
	b, err := bridge.New(nc, f, o.cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{b: b, nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = b.Run(ctx); close(r.done) }()
	w.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
	})
	w.eventually(10*time.Second, "bridge ready", b.Ready)
	return r
}

// eventually polls cond until it holds or d passes.
func (w *world) eventually(d time.Duration, what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deploy publishes a deploy request and returns its id.
func (w *world) deploy(env string, req events.DeployRequest, opts ...events.EventOption) string {
	w.t.Helper()
	msg, id, err := events.NewDeployRequest("/test/master", env, req, opts...)
	if err != nil {
		w.t.Fatal(err)
	}
	w.publish(msg)
	return id
}

func (w *world) publish(msg *nats.Msg) {
	w.t.Helper()
	if _, err := w.js.PublishMsg(w.t.Context(), msg); err != nil {
		w.t.Fatalf("publish %s: %v", msg.Subject, err)
	}
}

// result waits for the first result of request id.
func (w *world) result(id string) events.DeployResult {
	w.t.Helper()
	return w.nthResult(id, 1)
}

// nthResult waits for the n-th result (from 1) of request id: a request sent
// again, or replayed, gets a result of its own.
func (w *world) nthResult(id string, n int) events.DeployResult {
	w.t.Helper()
	return waitNth(w, w.res, id, n)
}

func (w *world) statusResult(id string) events.StatusResult {
	w.t.Helper()
	return waitNth(w, w.stres, id, 1)
}

func waitNth[R any](w *world, seen map[string][]R, id string, n int) R {
	w.t.Helper()
	var r R
	w.eventually(15*time.Second, fmt.Sprintf("result %d of %s", n, id), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		if rs := seen[id]; len(rs) >= n {
			r = rs[n-1]
			return true
		}
		return false
	})
	return r
}

// storedResults reads every deploy result stored in DEPLOY, by request id.
func (w *world) storedResults() map[string][]events.DeployResult {
	w.t.Helper()
	ctx := w.t.Context()
	stream, err := w.js.Stream(ctx, events.StreamDeploy)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string][]events.DeployResult{}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"deploy.result.>"}})
	if err != nil {
		w.t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	n := ci.NumPending
	_ = info
	for i := uint64(0); i < n; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			w.t.Fatalf("reading results: %v", err)
		}
		_, r, err := events.DecodeDeployResult(m.Headers(), m.Data())
		if err != nil {
			w.t.Fatalf("stored result: %v", err)
		}
		out[r.RequestID] = append(out[r.RequestID], r)
	}
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func newFactory(t *testing.T) (*operator.Factory, error) {
	t.Helper()
	return operator.NewFactory(operator.DefaultSettings())
}

func newBridge(w *world, f *operator.Factory, manage bool) (*bridge.Bridge, error) {
	return bridge.New(w.connect(), f, bridge.Config{ExternalStreams: !manage, EnvironmentsFile: w.file, EnvironmentsBucket: "environments"})
}
