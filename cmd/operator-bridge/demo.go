package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/boreas/operator-bridge/demo"
	"github.com/boreas/operator-bridge/events"
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

	level := slog.LevelError // the demo prints every outcome itself
	if *verbose {
		level = slog.LevelInfo
	}
	w, err := demo.Start(ctx, demo.Config{Listen: *listen, Version: semver(version), Logger: c.newLogger(c.stderr, level, "text")})
	if err != nil {
		return err
	}
	defer w.Close()

	// The demo's own connection prints every event as it happens.
	nc, err := nats.Connect(w.URL, nats.Name("operator-bridge demo"))
	if err != nil {
		return connectError(w.URL, err)
	}
	defer nc.Close()
	for _, subj := range []string{"deploy.result.>", "deploy.progress.>", "status.result.>"} {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) { out.line(eventLine(p, m.Subject, m.Header, m.Data)) }); err != nil {
			return err
		}
	}
	if err := nc.Flush(); err != nil {
		return err
	}

	cfg := w.Config
	out.line(p.bold("operator-bridge demo") + " " + p.dim(version))
	out.line(fmt.Sprintf("  NATS (embedded, JetStream)  %s  %s", p.cyan(w.URL), p.dim("data in "+w.Dir)))
	out.line(fmt.Sprintf("  fake Kubernetes operator    %s", w.K8s.URL))
	out.line(fmt.Sprintf("  fake physical operator      %s", w.PM.URL))
	out.line(fmt.Sprintf("  status page and /metrics    http://%s/", w.HTTPAddr))
	out.line(p.dim(fmt.Sprintf("  settings: OPERATOR_TIMEOUT=%s RETRY_WINDOW=%s HEALTH_INTERVAL=%s ROLLOUT_POLL=%s ROLLOUT_GRACE=%s",
		cfg.OperatorTimeout, cfg.RetryWindow, cfg.HealthInterval, cfg.RolloutPoll, cfg.RolloutGrace)))
	out.line("")

	// Health events from the stream's start: the first round came while
	// the bridge was getting ready.
	stopHealth, err := printHealth(ctx, nc, p, out)
	if err != nil {
		return err
	}
	defer stopHealth()

	rep, err := w.Run(ctx, w.Script(), demoPrinter{p: p, out: out})
	if err != nil {
		return nil // interrupted
	}
	failures, steps := rep.Failed(), len(rep.Steps)
	out.line("")
	if failures == 0 {
		out.line(p.green(fmt.Sprintf("All %d scripted steps got their expected outcome.", steps)))
	} else {
		out.line(p.red(fmt.Sprintf("%d of %d scripted steps did not get their expected outcome.", failures, steps)))
	}
	printTryNext(out, p, w.URL)
	if *once {
		if failures > 0 {
			return withCode(exitFailed, fmt.Errorf("demo: %d of %d steps failed", failures, steps))
		}
		return nil
	}
	out.line(p.dim("Running until Ctrl-C; events keep printing below."))
	<-ctx.Done()
	out.line(p.dim("stopping..."))
	return nil
}

// printHealth prints the operator.health events stored from the start of
// the stream on, until the returned stop is called.
func printHealth(ctx context.Context, nc *nats.Conn, p palette, out *syncWriter) (stop func(), err error) {
	bc, err := newBridgeClient(nc, "demo")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range bc.Watch(ctx, events.WatchOptions{Subjects: []string{events.PrefixHealth + ">"}}) {
			if err != nil && m.Data == nil {
				return // the watch ended
			}
			out.line(eventLine(p, m.Subject, m.Header, m.Data))
		}
	}()
	return func() {
		cancel()
		<-done
		bc.Close()
	}, nil
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

// demoPrinter prints what the demo's script tells as it happens.
type demoPrinter struct {
	p   palette
	out *syncWriter
}

func (d demoPrinter) Observe(e demo.Event) {
	switch e.Kind {
	case demo.StepStarted:
		d.out.line("")
		d.out.line(d.p.bold(fmt.Sprintf("%d. %s", e.Step, e.Text)))
	case demo.Sent:
		d.out.line(d.p.dim(fmt.Sprintf("   → %s %s", e.Subject, compactJSON(e.Data))))
	case demo.Told:
		d.out.line(d.p.yellow("   ! " + e.Text))
	case demo.StatusAnswered:
		var buf strings.Builder
		printStatus(&buf, d.p, e.Status)
		for _, l := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
			d.out.line("   " + l)
		}
	case demo.Judged:
		if e.OK {
			d.out.line("   " + d.p.green("✔ as expected: ") + e.Text)
		} else {
			d.out.line("   " + d.p.red("✘ NOT as expected: ") + e.Text)
		}
	}
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
		"  " + s + " sub --stream DEPLOY --all 'deploy.progress.>'" + p.dim("   # rollouts, from the start"),
		"  " + s + " req operator-bridge.environments ''",
		"  " + s + ` req operator-bridge.status.env-k8s-prod '{"app":"my-app"}'`,
		"  " + s + " micro ls",
		"  " + s + " pub deploy.request.env-mock " + pub + p.dim("   # change the id to send again"),
		"  " + s + " sub --stream DEPLOY --all 'deploy.>'" + p.dim("   # replay history"),
		p.bold("or with this command"),
		"  " + self + " envs --nats " + url,
		"  " + self + " deploy --nats " + url + " --env env-mock --app my-app --version v2.0.0",
		"  " + self + " deploy --nats " + url + " --env env-k8s-prod --app my-app --version v1.3.0 --wait converged",
		"  " + self + " status --nats " + url + " --env env-k8s-prod --app my-app",
		"  " + self + " watch --nats " + url + " --from all",
		"  " + self + " bench --nats " + url + " --setup --requests 2000",
	}
	for _, l := range lines {
		out.line(l)
	}
}
