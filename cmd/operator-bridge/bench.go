package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/bench/load"
	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
)

const benchUsage = `Usage: operator-bridge bench [--requests N] [--envs E] [--apps A] [--mix realistic|simple] [--rate R] [--in-flight C] [--setup]

A load generator in the manner of 'nats bench': publishes N deploy requests
spread over E environments and A apps, at R requests per second or as fast as
possible with at most C requests waiting for their result, and reads the
results back from the DEPLOY stream. It reports throughput, latency
percentiles (from publish to result) and checks that every request got
exactly one result: once the last result is in, it keeps watching for
--dup-wait (by default the bridge consumer's ack wait) so that a request
delivered again after a lost acknowledgement shows up as a duplicate.

The realistic mix (the default) is traffic like a CD platform's: the app
rotates faster than the environment, each request carries a CloudEvent time,
every other one a two-way canary split whose first deployment carries a
docker package, and versions rise per environment and app. The simple mix
sends one version per request, the environment rotating fastest.

--pids measures processes over the run (from the first publish to the last
result): CPU time per request and peak resident memory, from /proc.

Environments are named <prefix>000, <prefix>001, ...; --setup registers them
as mock environments in the environments key-value bucket, so a bridge
started with nothing configured can serve them.

Exit code 0 when every request got exactly one result and none failed or was
rejected; 1 when a result is missing or duplicated, or a request failed or
was rejected; 3 when NATS could not be reached.
` + clientHelp

func runBench(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("bench")
	var cf clientFlags
	cf.register(fs, c, 0)
	cfg, def := load.Config{}, load.DefaultConfig()
	fs.IntVar(&cfg.Requests, "requests", def.Requests, "`N` deploy requests")
	fs.IntVar(&cfg.Envs, "envs", def.Envs, "over `E` environments")
	fs.IntVar(&cfg.Apps, "apps", def.Apps, "and `A` apps per environment")
	fs.StringVar(&cfg.Mix, "mix", def.Mix, "traffic `shape`: "+load.MixRealistic+" or "+load.MixSimple+" (see above)")
	fs.BoolVar(&cfg.NoRollout, "no-rollout", false, `send every request with "rollout": false (no rollout tracking)`)
	fs.Float64Var(&cfg.Rate, "rate", def.Rate, "requests per second (0: as fast as possible)")
	fs.IntVar(&cfg.InFlight, "in-flight", def.InFlight, "at most `C` requests waiting for their result")
	fs.BoolVar(&cfg.Setup, "setup", false, "register the environments as mock environments in the environments bucket first")
	fs.StringVar(&cfg.EnvPrefix, "env-prefix", def.EnvPrefix, "environment names: `prefix` + 000, 001, ...")
	fs.StringVar(&cfg.Bucket, "bucket", serveDefault(envPrefix+"ENVIRONMENTS_BUCKET"), "the environments key-value `bucket` (--setup)")
	fs.DurationVar(&cfg.Wait, "wait", def.Wait, "how long to wait for the last results once everything is published")
	fs.DurationVar(&cfg.DupWait, "dup-wait", def.DupWait,
		"how long to watch for duplicates after the last result (0: the bridge consumer's ack wait, else "+shortDuration(bridge.DefaultAckWait)+")")
	pids := fs.String("pids", "", "comma-separated process `IDs` whose CPU and memory to measure over the run")
	progress := fs.String("progress", "auto", "progress on stderr: auto (on a terminal), on or off")
	if err := parseFlags(c, fs, benchUsage, args); err != nil {
		return err
	}
	for f := range strings.FieldsFuncSeq(*pids, func(r rune) bool { return r == ',' || r == ' ' }) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return usageError("bench: --pids: %q is not a process ID", f)
		}
		cfg.PIDs = append(cfg.PIDs, pid)
	}
	if err := cfg.Validate(); err != nil {
		return usageError("bench: %v", err)
	}
	showProgress := false
	switch *progress {
	case "auto":
		showProgress = isTerminal(c.stderr)
	case "on":
		showProgress = true
	case "off":
	default:
		return usageError("bench: --progress %q: want auto, on or off", *progress)
	}
	if showProgress {
		cfg.Progress = func(p load.Progress) { printBenchProgress(c.stderr, p) }
	}

	nc, err := cf.connect("bench")
	if err != nil {
		return err
	}
	defer nc.Close()
	client, err := newBridgeClient(nc, "bench")
	if err != nil {
		return err
	}
	bctx, cancel := cf.untilRefused(ctx)
	defer cancel()
	sum, err := load.Run(bctx, nc, client.Client, cfg)
	if showProgress {
		fmt.Fprint(c.stderr, "\r\x1b[K")
	}
	if err != nil {
		return cf.explain(benchError(err))
	}
	if err := cf.refusal(); err != nil {
		return err
	}
	if cf.json {
		if err := writeJSON(c.stdout, sum); err != nil {
			return err
		}
	} else {
		printBench(c.stdout, palette{on: c.useColor(c.stdout)}, sum)
	}
	if !sum.OK {
		return withCode(exitFailed, nil)
	}
	return nil
}

// benchError gives a failed bench run its exit code: NATS or the bridge
// not answering is 3.
func benchError(err error) error {
	err = fmt.Errorf("bench: %w", err)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return withCode(exitTimeout, err)
	}
	return requestError(err)
}

// serveDefault is the default of serve's configuration variable name.
func serveDefault(name string) string {
	for _, f := range configFields() {
		if f.env == name {
			return f.def
		}
	}
	panic("bench: no configuration variable " + name)
}

// printBenchProgress prints p over the line before on w.
func printBenchProgress(w io.Writer, p load.Progress) {
	if !p.DupWatchEnd.IsZero() {
		fmt.Fprintf(w, "\r\x1b[Kevery result in; watching for duplicates (a redelivery after the ack wait) for %s more (--dup-wait)",
			time.Until(p.DupWatchEnd).Round(time.Second))
		return
	}
	pct := float64(p.Results) / float64(p.Requests)
	const width = 30
	bar := strings.Repeat("█", int(pct*width)) + strings.Repeat("░", width-int(pct*width))
	fmt.Fprintf(w, "\r\x1b[K%s %3.0f%%  published %d/%d  results %d  in flight %d  %.0f/s",
		bar, pct*100, p.Published, p.Requests, p.Results, p.InFlight, float64(p.Results)/p.Elapsed.Seconds())
}

func printBench(w io.Writer, p palette, s load.Summary) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	rate := "as fast as possible"
	if s.Rate > 0 {
		rate = fmt.Sprintf("%g/s", s.Rate)
	}
	fmt.Fprintf(tw, "requests\t%d over %d environments × %d apps (%s mix), %s, %d in flight\n", s.Requests, s.Envs, s.Apps, s.Mix, rate, s.InFlight)
	fmt.Fprintf(tw, "published\t%d in %.2fs (%.0f/s)\n", s.Published, s.DurationS, s.PublishPerS)
	fmt.Fprintf(tw, "results\t%d (%.0f/s end to end)\n", s.Results, s.ResultsPerS)
	var outs []string
	for _, o := range []events.Outcome{events.Succeeded, events.Superseded, events.Failed, events.Rejected} {
		if n := s.Outcomes[string(o)]; n > 0 {
			outs = append(outs, fmt.Sprintf("%s %d", o, n))
		}
	}
	fmt.Fprintf(tw, "outcomes\t%s\n", orDash(strings.Join(outs, ", ")))
	if n := s.Outcomes[string(events.Superseded)]; n > 0 {
		fmt.Fprintf(tw, "\t%s\n", p.dim(fmt.Sprintf("superseded %d: newer versions of the same app overtook them before their turn, so they were not sent; expected when an app's versions come quickly", n)))
	}
	l := s.LatencyMS
	fmt.Fprintf(tw, "latency\tp50 %.1fms  p90 %.1fms  p99 %.1fms  max %.1fms  (min %.1fms, mean %.1fms)\n", l.P50, l.P90, l.P99, l.Max, l.Min, l.Mean)
	check := p.green("every request got exactly one result") + p.dim(fmt.Sprintf(" (and no second one within %gs of the last)", s.DupWaitS))
	if s.Missing > 0 || s.Duplicates > 0 || s.PublishErrors > 0 {
		check = p.red(fmt.Sprintf("%d missing, %d duplicates, %d publish errors", s.Missing, s.Duplicates, s.PublishErrors))
	}
	for _, u := range s.Processes {
		fmt.Fprintf(tw, "process %d\t%s: CPU %.2fs, %.0fµs per request; peak RSS %.1f MiB\n", u.PID, u.Name, u.CPUS, u.CPUPerRequestUS, u.PeakRSSMiB)
	}
	fmt.Fprintf(tw, "check\t%s\n", check)
	if bad := s.Outcomes[string(events.Failed)] + s.Outcomes[string(events.Rejected)]; bad > 0 {
		fmt.Fprintf(tw, "verdict\t%s\n", p.red(fmt.Sprintf("%d requests failed or were rejected (are the environments registered? try --setup)", bad)))
	}
	tw.Flush()
}
