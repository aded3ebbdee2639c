package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
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

// Config says how the World is set up. The zero value works: every field
// left zero takes the default its comment names, and the timings are short
// so that the whole script takes seconds.
type Config struct {
	// Listen is where the embedded NATS server listens, host:port. When it
	// is taken, any free loopback port is used instead. Default
	// "127.0.0.1:-1" (any free port).
	Listen string
	// Dir holds JetStream's data and the environments file. Default: a new
	// temporary folder, removed by Close.
	Dir string
	// Version is the bridge's version, reported by its micro service.
	// Default "0.0.0-demo".
	Version string
	// Logger receives the bridge's logs. Default: discarded (Run reports
	// every outcome itself).
	Logger *slog.Logger

	// The bridge's settings (the OPERATOR_BRIDGE_ variables of the same
	// names).
	OperatorTimeout time.Duration // default 2s
	RetryWindow     time.Duration // default 20s
	HealthInterval  time.Duration // default 5s
	RolloutPoll     time.Duration // default 250ms
	RolloutGrace    time.Duration // default 2s

	// ReadyTimeout bounds Start's wait for the bridge to be ready. Default 15s.
	ReadyTimeout time.Duration
	// StepTimeout bounds each wait of a step: for a deploy result, for a
	// rollout's final phase, for a status result. Default 25s, more than
	// the retry window.
	StepTimeout time.Duration
}

// withDefaults returns c with every zero field set to its default: the one
// place the defaults are written.
func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:-1"
	}
	if c.Version == "" {
		c.Version = "0.0.0-demo"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	set(&c.OperatorTimeout, 2*time.Second)
	set(&c.RetryWindow, 20*time.Second)
	set(&c.HealthInterval, 5*time.Second)
	set(&c.RolloutPoll, 250*time.Millisecond)
	set(&c.RolloutGrace, 2*time.Second)
	set(&c.ReadyTimeout, 15*time.Second)
	set(&c.StepTimeout, 25*time.Second)
	return c
}

// The environments of the World, as the script uses them.
const (
	EnvKubernetes = "env-k8s-prod" // the fake Kubernetes operator
	EnvPhysical   = "env-pm-lab"   // the fake physical-machine operator
	EnvMock       = "env-mock"     // the bridge's in-process mock operator
	EnvRetired    = "env-retired"  // registered, inactive
)

// World is a running demonstration environment. Close it when done.
type World struct {
	// Config is the effective configuration, defaults filled in.
	Config Config
	// URL is the embedded NATS server's client URL.
	URL string
	// Dir holds JetStream's data and the environments file.
	Dir string
	// HTTPAddr is where the bridge serves its status page, /metrics,
	// /healthz and /readyz.
	HTTPAddr string
	// K8s and PM are the fake operators behind EnvKubernetes and
	// EnvPhysical; steps set faults and rollouts on them.
	K8s, PM *operatortest.Server
	// Client is the script's client of the bridge, on its own connection.
	Client *events.Client

	ns      *natsembed.Server
	bnc     *nats.Conn // the bridge's connection
	cnc     *nats.Conn // Client's connection
	js      jetstream.JetStream
	source  string
	ownDir  bool
	stop    context.CancelFunc
	stopped chan error // the bridge's Run result
	closing sync.Once
}

// source is the CloudEvent source of the script's events.
const source = "/operator-bridge-demo"

// Start starts a World and waits until its bridge is ready. The bridge runs
// until ctx ends or Close is called.
func Start(ctx context.Context, cfg Config) (_ *World, err error) {
	cfg = cfg.withDefaults()
	w := &World{Config: cfg, Dir: cfg.Dir, source: source}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if w.Dir == "" {
		if w.Dir, err = os.MkdirTemp("", "operator-bridge-demo-"); err != nil {
			return nil, err
		}
		w.ownDir = true
	}
	if err := w.startNATS(cfg.Listen); err != nil {
		return nil, err
	}
	w.K8s = operatortest.NewServer(operator.Kubernetes)
	w.PM = operatortest.NewServer(operator.Physical)
	if err := w.startBridge(ctx); err != nil {
		return nil, err
	}
	if w.cnc, err = nats.Connect(w.URL, nats.Name("operator-bridge demo")); err != nil {
		return nil, fmt.Errorf("demo: connect to %s: %w", w.URL, err)
	}
	if w.js, err = jetstream.New(w.cnc); err != nil {
		return nil, err
	}
	if w.Client, err = events.NewClient(w.cnc, events.WithSource(source)); err != nil {
		return nil, err
	}
	return w, nil
}

// startNATS starts the embedded server on listen, or on any free port when
// listen is taken.
func (w *World) startNATS(listen string) error {
	if ln, err := net.Listen("tcp", listen); err != nil {
		listen = "127.0.0.1:-1" // taken (or a port nats-server picks itself)
	} else {
		ln.Close()
	}
	cfg := natsembed.Config{Listen: listen, StoreDir: filepath.Join(w.Dir, "jetstream"), ServerName: "operator-bridge-demo"}
	ns, err := natsembed.Start(cfg)
	if err != nil {
		cfg.Listen = "127.0.0.1:-1"
		if ns, err = natsembed.Start(cfg); err != nil {
			return err
		}
	}
	w.ns, w.URL = ns, ns.ClientURL()
	return nil
}

// environments is the World's environments file.
func (w *World) environments() string {
	return fmt.Sprintf(`environments:
  - {id: %s, name: "production (Kubernetes)", type: kubernetes, operator_url: %q}
  - {id: %s, name: "lab (physical machines)", type: physical, operator_url: %q}
  - {id: %s, name: "sandbox (mock operator)", type: mock}
  - {id: %s, name: "retired", type: kubernetes, operator_url: %q, active: false}
`, EnvKubernetes, w.K8s.URL, EnvPhysical, w.PM.URL, EnvMock, EnvRetired, w.K8s.URL)
}

func (w *World) startBridge(ctx context.Context) error {
	cfg := w.Config
	envFile := filepath.Join(w.Dir, "environments.yaml")
	if err := os.WriteFile(envFile, []byte(w.environments()), 0o600); err != nil {
		return err
	}
	settings := operator.DefaultSettings()
	settings.K8sOperatorURL, settings.PMOperatorURL, settings.Timeout = w.K8s.URL, w.PM.URL, cfg.OperatorTimeout
	factory, err := operator.NewFactory(settings)
	if err != nil {
		return err
	}
	if w.bnc, err = nats.Connect(w.URL, nats.Name("operator-bridge"), nats.MaxReconnects(-1)); err != nil {
		return fmt.Errorf("demo: connect to %s: %w", w.URL, err)
	}
	w.HTTPAddr = freeAddr()
	b, err := bridge.New(w.bnc, factory, bridge.Config{
		Instance:           "demo",
		Version:            cfg.Version,
		EnvironmentsFile:   envFile,
		EnvironmentsBucket: "environments",
		OperatorTimeout:    cfg.OperatorTimeout,
		RetryWindow:        cfg.RetryWindow,
		HealthInterval:     cfg.HealthInterval,
		RolloutPoll:        cfg.RolloutPoll,
		RolloutGrace:       cfg.RolloutGrace,
		HTTPAddr:           w.HTTPAddr,
		Logger:             cfg.Logger,
		Registerer:         prometheus.NewRegistry(),
	})
	if err != nil {
		return err
	}
	bctx, stop := context.WithCancel(ctx)
	w.stop, w.stopped = stop, make(chan error, 1) // Run's one result
	go func() { w.stopped <- b.Run(bctx) }()
	return waitReady(ctx, b, cfg.ReadyTimeout)
}

// waitReady waits until the bridge is ready.
func waitReady(ctx context.Context, b *bridge.Bridge, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !b.Ready() {
		if time.Now().After(deadline) {
			return errors.New("demo: the bridge did not become ready")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// freeAddr returns a free loopback address (it may be taken again before
// use; good enough for a demo).
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Close stops the bridge and waits for it, then closes the client, the fake
// operators and the NATS server, and removes Dir when Start made it.
// Calls after the first do nothing.
func (w *World) Close() {
	w.closing.Do(w.close)
}

func (w *World) close() {
	if w.Client != nil {
		w.Client.Close()
	}
	if w.cnc != nil {
		w.cnc.Close()
	}
	if w.stop != nil {
		w.stop()
		<-w.stopped
	}
	if w.bnc != nil {
		w.bnc.Close()
	}
	if w.K8s != nil {
		w.K8s.Close()
	}
	if w.PM != nil {
		w.PM.Close()
	}
	if w.ns != nil {
		w.ns.Stop()
	}
	if w.ownDir {
		os.RemoveAll(w.Dir)
	}
}
