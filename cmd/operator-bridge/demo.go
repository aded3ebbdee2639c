package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

const demoUsage = `Usage: operator-bridge demo [--once] [--listen ADDR] [--verbose]

Shows the whole flow on this machine, with nothing installed: an embedded
NATS server with JetStream (in a temporary folder), a fake Kubernetes and a
fake physical-machine operator, the bridge, and a scripted set of deploy
requests and status queries - successes, rejections, an operator that says
no and an operator outage that the bridge rides out. Every result and health
event is printed as it happens. Then it keeps running for you to explore with
the nats CLI until Ctrl-C, or exits with --once: exit code 0 when every
scripted request got its expected outcome, 1 otherwise.
`

// Settings of the demo's bridge: short, so the script takes seconds.
const (
	demoOperatorTimeout = 2 * time.Second
	demoRetryWindow     = 20 * time.Second
	demoHealthInterval  = 5 * time.Second
	demoStepTimeout     = 25 * time.Second
)

func runDemo(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("demo")
	once := fs.Bool("once", false, "exit after the scripted flow (exit code 0 when every request got its expected outcome)")
	listen := fs.String("listen", "127.0.0.1:4222", "where the embedded NATS server listens (a free port when this one is taken)")
	verbose := fs.Bool("verbose", false, "show the bridge's logs (on stderr)")
	if err := parseFlags(c, fs, demoUsage, args); err != nil {
		return err
	}
	p := palette{on: c.useColor(c.stdout)}
	out := &syncWriter{c: c}

	dir, err := os.MkdirTemp("", "operator-bridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	listenAddr := *listen
	if checkListen(listenAddr) != nil {
		listenAddr = "127.0.0.1:-1" // taken: any free port
	}
	ns, err := natsembed.Start(natsembed.Config{Listen: listenAddr, StoreDir: filepath.Join(dir, "jetstream"), ServerName: "operator-bridge-demo"})
	if err != nil {
		ns, err = natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, "jetstream"), ServerName: "operator-bridge-demo"})
		if err != nil {
			return err
		}
	}
	defer ns.Stop()
	url := ns.ClientURL()

	k8s := operatortest.NewServer(operator.Kubernetes)
	defer k8s.Close()
	pm := operatortest.NewServer(operator.Physical)
	defer pm.Close()

	envFile := filepath.Join(dir, "environments.yaml")
	envYAML := fmt.Sprintf(`environments:
  - {id: env-k8s-prod, name: "production (Kubernetes)", type: kubernetes, operator_url: %q}
  - {id: env-pm-lab, name: "lab (physical machines)", type: physical, operator_url: %q}
  - {id: env-mock, name: "sandbox (mock operator)", type: mock}
  - {id: env-retired, name: "retired", type: kubernetes, operator_url: %q, active: false}
`, k8s.URL, pm.URL, k8s.URL)
	if err := os.WriteFile(envFile, []byte(envYAML), 0o600); err != nil {
		return err
	}

	settings := operator.DefaultSettings()
	settings.K8sOperatorURL, settings.PMOperatorURL, settings.Timeout = k8s.URL, pm.URL, demoOperatorTimeout
	factory, err := operator.NewFactory(settings)
	if err != nil {
		return err
	}
	level := slog.LevelError // the demo prints every outcome itself
	if *verbose {
		level = slog.LevelInfo
	}
	log := c.newLogger(c.stderr, level, "text")

	bnc, err := nats.Connect(url, nats.Name("operator-bridge"), nats.MaxReconnects(-1))
	if err != nil {
		return connectError(url, err)
	}
	defer bnc.Close()
	httpAddr := freeAddr()
	b, err := bridge.New(bnc, factory, bridge.Config{
		Instance:           "demo",
		Version:            semver(version),
		EnvironmentsFile:   envFile,
		EnvironmentsBucket: "environments",
		OperatorTimeout:    demoOperatorTimeout,
		RetryWindow:        demoRetryWindow,
		HealthInterval:     demoHealthInterval,
		HTTPAddr:           httpAddr,
		Logger:             log,
		Registerer:         prometheus.NewRegistry(),
	})
	if err != nil {
		return err
	}
	bctx, stopBridge := context.WithCancel(ctx)
	defer stopBridge()
	bridgeDone := make(chan error, 1) // Run's one result
	go func() { bridgeDone <- b.Run(bctx) }()
	defer func() {
		stopBridge()
		<-bridgeDone
	}()

	// The demo's own client connection: it prints every event and hands
	// results to the step waiting for them.
	cnc, err := nats.Connect(url, nats.Name("operator-bridge demo"))
	if err != nil {
		return connectError(url, err)
	}
	defer cnc.Close()
	bc, err := newBridgeClient(cnc, "demo")
	if err != nil {
		return err
	}
	w := newWaiters()
	for _, subj := range []string{"deploy.result.>", "status.result.>", "operator.health.>"} {
		if _, err := cnc.Subscribe(subj, func(m *nats.Msg) {
			out.line(eventLine(p, m.Subject, m.Header, m.Data))
			w.deliver(m)
		}); err != nil {
			return err
		}
	}
	if err := cnc.Flush(); err != nil {
		return err
	}

	out.line(p.bold("operator-bridge demo") + " " + p.dim(version))
	out.line(fmt.Sprintf("  NATS (embedded, JetStream)  %s  %s", p.cyan(url), p.dim("data in "+dir)))
	out.line(fmt.Sprintf("  fake Kubernetes operator    %s", k8s.URL))
	out.line(fmt.Sprintf("  fake physical operator      %s", pm.URL))
	out.line(fmt.Sprintf("  status page and /metrics    http://%s/", httpAddr))
	out.line(p.dim(fmt.Sprintf("  settings: OPERATOR_TIMEOUT=%s RETRY_WINDOW=%s HEALTH_INTERVAL=%s", demoOperatorTimeout, demoRetryWindow, demoHealthInterval)))
	out.line("")

	if err := waitReady(ctx, b, 15*time.Second); err != nil {
		return err
	}
	d := &demo{c: c, p: p, out: out, bc: bc, w: w, k8s: k8s, pm: pm}
	failures := d.script(ctx)
	if ctx.Err() != nil {
		return nil // interrupted
	}
	out.line("")
	if failures == 0 {
		out.line(p.green(fmt.Sprintf("All %d scripted steps got their expected outcome.", d.steps)))
	} else {
		out.line(p.red(fmt.Sprintf("%d of %d scripted steps did not get their expected outcome.", failures, d.steps)))
	}
	printTryNext(out, p, url)
	if *once {
		if failures > 0 {
			return withCode(exitFailed, fmt.Errorf("demo: %d of %d steps failed", failures, d.steps))
		}
		return nil
	}
	out.line(p.dim("Running until Ctrl-C; events keep printing below."))
	<-ctx.Done()
	out.line(p.dim("stopping..."))
	return nil
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

// syncWriter prints whole lines from many goroutines.
type syncWriter struct {
	mu sync.Mutex
	c  *cli
}

func (s *syncWriter) line(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(s.c.stdout, l)
}

// waiters hands deploy and status results to whoever waits for their
// request id.
type waiters struct {
	mu     sync.Mutex
	deploy map[string]chan events.DeployResult
	status map[string]chan events.StatusResult
}

func newWaiters() *waiters {
	return &waiters{deploy: map[string]chan events.DeployResult{}, status: map[string]chan events.StatusResult{}}
}

func (w *waiters) expectDeploy(id string) <-chan events.DeployResult {
	ch := make(chan events.DeployResult, 1) // one result per request
	w.mu.Lock()
	w.deploy[id] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) expectStatus(id string) <-chan events.StatusResult {
	ch := make(chan events.StatusResult, 1) // one result per request
	w.mu.Lock()
	w.status[id] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) deliver(m *nats.Msg) {
	switch {
	case strings.HasPrefix(m.Subject, events.PrefixDeployResult):
		_, r, err := events.DecodeDeployResult(m.Header, m.Data)
		if err != nil {
			return
		}
		w.mu.Lock()
		ch, ok := w.deploy[r.RequestID]
		delete(w.deploy, r.RequestID)
		w.mu.Unlock()
		if ok {
			ch <- r
		}
	case strings.HasPrefix(m.Subject, events.PrefixStatusResult):
		_, r, err := events.DecodeStatusResult(m.Header, m.Data)
		if err != nil {
			return
		}
		w.mu.Lock()
		ch, ok := w.status[r.RequestID]
		delete(w.status, r.RequestID)
		w.mu.Unlock()
		if ok {
			ch <- r
		}
	}
}

// demo runs the scripted flow.
type demo struct {
	c       *cli
	p       palette
	out     *syncWriter
	bc      *bridgeClient
	w       *waiters
	k8s, pm *operatortest.Server
	steps   int
}

// expectation is the outcome a step expects.
type expectation struct {
	outcome     events.Outcome
	code        events.ErrorCode // "" for none
	minAttempts int
}

func (d *demo) step(title string) {
	d.steps++
	d.out.line("")
	d.out.line(d.p.bold(fmt.Sprintf("%d. %s", d.steps, title)))
}

func (d *demo) verdict(ok bool, format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	if ok {
		d.out.line("   " + d.p.green("✔ as expected: ") + msg)
		return 0
	}
	d.out.line("   " + d.p.red("✘ NOT as expected: ") + msg)
	return 1
}

// deploy publishes a request, waits for its result and checks it.
func (d *demo) deploy(ctx context.Context, env string, req events.DeployRequest, want expectation, during func(), opts ...events.EventOption) int {
	id := events.NewEventID()
	ch := d.w.expectDeploy(id)
	d.out.line(d.p.dim(fmt.Sprintf("   → %s %s", events.DeployRequestSubject(env), compactJSON(mustJSON(req)))))
	if _, err := d.bc.PublishDeploy(ctx, env, req, append(opts, events.WithID(id))...); err != nil {
		return d.verdict(false, "publish: %v", err)
	}
	if during != nil {
		during()
	}
	select {
	case r := <-ch:
		code := events.ErrorCode("")
		if r.Error != nil {
			code = r.Error.Code
		}
		ok := r.Outcome == want.outcome && code == want.code && r.Attempts >= want.minAttempts
		desc := string(r.Outcome)
		if code != "" {
			desc += " (" + string(code) + ")"
		}
		if want.minAttempts > 1 {
			desc += fmt.Sprintf(" after %d attempts", r.Attempts)
		}
		return d.verdict(ok, "%s", desc)
	case <-time.After(demoStepTimeout):
		return d.verdict(false, "no result within %s", demoStepTimeout)
	case <-ctx.Done():
		return 1
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func (d *demo) script(ctx context.Context) (failures int) {
	d.step("Deploy my-app v1.0.0 to env-k8s-prod (fake Kubernetes operator)")
	firstTime := time.Now()
	failures += d.deploy(ctx, "env-k8s-prod", events.DeployRequest{App: "my-app", Version: "v1.0.0"},
		expectation{outcome: events.Succeeded}, nil, events.WithTime(firstTime))

	d.step("Canary shop v2.1.0 at 20% on env-pm-lab (fake physical-machine operator)")
	failures += d.deploy(ctx, "env-pm-lab", events.DeployRequest{App: "shop", Version: "v2.1.0", Deployments: []events.Deployment{
		{Version: "v2.1.0", Percent: 0.2, Package: json.RawMessage(`{"type":"tarball","url":"https://artifacts.local/shop-2.1.0.tgz"}`)},
		{Version: "v2.0.0", Percent: 0.8},
	}}, expectation{outcome: events.Succeeded}, nil)

	d.step("Deploy api v0.9.0 to env-mock (the in-process mock operator)")
	failures += d.deploy(ctx, "env-mock", events.DeployRequest{App: "api", Version: "v0.9.0"}, expectation{outcome: events.Succeeded}, nil)

	d.step("Status of my-app on env-k8s-prod, asked on status.query.env-k8s-prod (result on status.result.env-k8s-prod)")
	failures += d.statusViaStream(ctx, "env-k8s-prod", "my-app", "v1.0.0")

	d.step("Status of shop on env-pm-lab, asked over request/reply (operator-bridge.status.env-pm-lab)")
	failures += d.statusViaRequest(ctx, "env-pm-lab", "shop", 2)

	d.step("Deploy to an environment nobody registered: rejected, no operator called")
	failures += d.deploy(ctx, "env-nowhere", events.DeployRequest{App: "my-app", Version: "v1.0.0"},
		expectation{outcome: events.Rejected, code: events.CodeUnknownEnvironment}, nil)

	d.step("Deploy to the inactive environment env-retired: rejected")
	failures += d.deploy(ctx, "env-retired", events.DeployRequest{App: "my-app", Version: "v1.0.0"},
		expectation{outcome: events.Rejected, code: events.CodeEnvironmentInactive}, nil)

	d.step("Invalid data (percents add up to 150%): rejected")
	failures += d.deploy(ctx, "env-k8s-prod", events.DeployRequest{App: "my-app", Version: "v1.0.1", Deployments: []events.Deployment{
		{Version: "v1.0.1", Percent: 0.5}, {Version: "v1.0.0", Percent: 1},
	}}, expectation{outcome: events.Rejected, code: events.CodeInvalidData}, nil)

	d.step("The physical-machine operator says no (success: false): failed, not retried")
	d.pm.SetFault(operatortest.Fault{Reject: true})
	failures += d.deploy(ctx, "env-pm-lab", events.DeployRequest{App: "shop", Version: "v2.2.0"},
		expectation{outcome: events.Failed, code: events.CodeOperatorRejected}, nil)
	d.pm.SetFault(operatortest.Fault{})

	d.step("Kubernetes operator outage (503s for 3s): the bridge retries, then succeeds")
	d.k8s.SetFault(operatortest.Fault{Always503: true, HealthDown: true})
	d.out.line(d.p.yellow("   ! fake Kubernetes operator now answers 503"))
	failures += d.deploy(ctx, "env-k8s-prod", events.DeployRequest{App: "my-app", Version: "v1.1.0"},
		expectation{outcome: events.Succeeded, minAttempts: 2}, func() {
			select {
			case <-time.After(3 * time.Second):
			case <-ctx.Done():
			}
			d.k8s.SetFault(operatortest.Fault{})
			d.out.line(d.p.yellow("   ! fake Kubernetes operator recovered"))
		})

	d.step("A request older than what was applied arrives late: superseded, never rolled back")
	failures += d.deploy(ctx, "env-k8s-prod", events.DeployRequest{App: "my-app", Version: "v0.9.0"},
		expectation{outcome: events.Superseded, code: events.CodeSuperseded}, nil, events.WithTime(firstTime.Add(-time.Minute)))
	return failures
}

func (d *demo) statusViaStream(ctx context.Context, env, app, wantVersion string) int {
	msg, id, err := events.NewStatusQuery(d.bc.source, env, app)
	if err != nil {
		return d.verdict(false, "%v", err)
	}
	ch := d.w.expectStatus(id)
	d.out.line(d.p.dim(fmt.Sprintf("   → %s {\"app\":%q}", msg.Subject, app)))
	if _, err := d.bc.js.PublishMsg(ctx, msg); err != nil {
		return d.verdict(false, "publish: %v", err)
	}
	select {
	case r := <-ch:
		ok := !r.Degraded && len(r.Status.Versions) == 1 && r.Status.Versions[0].Version == wantVersion
		return d.verdict(ok, "%s at %s, health %d", app, versionsOf(r), r.Status.Healthy.Level)
	case <-time.After(demoStepTimeout):
		return d.verdict(false, "no result within %s", demoStepTimeout)
	case <-ctx.Done():
		return 1
	}
}

func (d *demo) statusViaRequest(ctx context.Context, env, app string, wantVersions int) int {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sr, err := d.bc.status(rctx, env, app)
	if err != nil {
		return d.verdict(false, "%v", err)
	}
	var buf strings.Builder
	printStatus(&buf, d.p, sr)
	for _, l := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		d.out.line("   " + l)
	}
	return d.verdict(!sr.Degraded && len(sr.Status.Versions) == wantVersions, "%s at %s", app, versionsOf(sr))
}

func versionsOf(r events.StatusResult) string {
	var vs []string
	for _, v := range r.Status.Versions {
		vs = append(vs, v.Version+" "+percentText(v.Percent))
	}
	if len(vs) == 0 {
		return "no version"
	}
	return strings.Join(vs, ", ")
}

func printTryNext(out *syncWriter, p palette, url string) {
	s := "nats --server " + url
	self := selfCommand() // as this demo was started: go run, the PATH, or a path
	pub := `'{"specversion":"1.0","id":"try-1","source":"/me","type":"io.boreas.deploy.request.v1","datacontenttype":"application/json","data":{"app":"my-app","version":"v2.0.0"}}'`
	lines := []string{
		"",
		p.bold("Try next") + p.dim(" (nats CLI: go install github.com/nats-io/natscli/nats@v0.5.0)"),
		"  " + s + " stream ls",
		"  " + s + " sub 'deploy.result.>'",
		"  " + s + " req operator-bridge.environments ''",
		"  " + s + ` req operator-bridge.status.env-k8s-prod '{"app":"my-app"}'`,
		"  " + s + " micro ls",
		"  " + s + " pub deploy.request.env-mock " + pub + p.dim("   # change the id to send again"),
		"  " + s + " sub --stream DEPLOY --all 'deploy.>'" + p.dim("   # replay history"),
		p.bold("or with this command"),
		"  " + self + " envs --nats " + url,
		"  " + self + " deploy --nats " + url + " --env env-mock --app my-app --version v2.0.0",
		"  " + self + " status --nats " + url + " --env env-k8s-prod --app my-app",
		"  " + self + " watch --nats " + url + " --from all",
		"  " + self + " bench --nats " + url + " --setup --requests 2000",
	}
	for _, l := range lines {
		out.line(l)
	}
}
