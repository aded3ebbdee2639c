package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
)

const benchUsage = `Usage: operator-bridge bench [--requests N] [--envs E] [--apps A] [--rate R] [--in-flight C] [--setup]

A load generator in the manner of 'nats bench': publishes N deploy requests
spread over E environments and A apps, at R requests per second or as fast as
possible with at most C requests waiting for their result, and reads the
results back from the DEPLOY stream. It reports throughput, latency
percentiles (from publish to result) and checks that every request got
exactly one result.

Environments are named <prefix>000, <prefix>001, ...; --setup registers them
as mock environments in the environments key-value bucket, so a bridge
started with nothing configured can serve them.

Exit code 0 when every request got exactly one result and none failed or was
rejected; 1 when a result is missing or duplicated, or a request failed or
was rejected; 3 when NATS could not be reached.
` + clientHelp

// benchSummary is what bench reports (--json prints it as is).
type benchSummary struct {
	RunID         string           `json:"run_id"`
	Requests      int              `json:"requests"`
	Envs          int              `json:"envs"`
	Apps          int              `json:"apps"`
	InFlight      int              `json:"in_flight"`
	Rate          float64          `json:"rate"` // asked for; 0: as fast as possible
	Published     int64            `json:"published"`
	PublishErrors int64            `json:"publish_errors"`
	Results       int64            `json:"results"`
	Missing       int64            `json:"missing"`
	Duplicates    int64            `json:"duplicates"`
	Outcomes      map[string]int64 `json:"outcomes"`
	DurationS     float64          `json:"duration_s"`    // first publish to last result
	PublishPerS   float64          `json:"publish_per_s"` // publish throughput
	ResultsPerS   float64          `json:"results_per_s"` // end-to-end throughput
	LatencyMS     latencySummary   `json:"latency_ms"`
	OK            bool             `json:"ok"`
}

type latencySummary struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

type benchConfig struct {
	requests, envs, apps, inFlight int
	rate                           float64
	setup                          bool
	prefix, bucket                 string
	wait                           time.Duration
	progress                       bool
}

func runBench(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("bench")
	var cf clientFlags
	cf.register(fs, c, 0)
	var bc benchConfig
	fs.IntVar(&bc.requests, "requests", 1000, "`N` deploy requests")
	fs.IntVar(&bc.envs, "envs", 10, "over `E` environments")
	fs.IntVar(&bc.apps, "apps", 100, "and `A` apps per environment")
	fs.Float64Var(&bc.rate, "rate", 0, "requests per second (0: as fast as possible)")
	fs.IntVar(&bc.inFlight, "in-flight", 1000, "at most `C` requests waiting for their result")
	fs.BoolVar(&bc.setup, "setup", false, "register the environments as mock environments in the environments bucket first")
	fs.StringVar(&bc.prefix, "env-prefix", "bench-", "environment names: `prefix` + 000, 001, ...")
	fs.StringVar(&bc.bucket, "bucket", "environments", "the environments key-value `bucket` (--setup)")
	fs.DurationVar(&bc.wait, "wait", time.Minute, "how long to wait for the last results once everything is published")
	progress := fs.String("progress", "auto", "progress on stderr: auto (on a terminal), on or off")
	if err := parseFlags(c, fs, benchUsage, args); err != nil {
		return err
	}
	switch {
	case bc.requests <= 0 || bc.envs <= 0 || bc.apps <= 0 || bc.inFlight <= 0:
		return usageError("bench: --requests, --envs, --apps and --in-flight must be positive")
	case bc.rate < 0:
		return usageError("bench: --rate must not be negative")
	case !events.ValidEnvironmentID(envName(bc.prefix, bc.envs-1)):
		return usageError("bench: --env-prefix %q makes invalid environment IDs", bc.prefix)
	}
	switch *progress {
	case "auto":
		bc.progress = isTerminal(c.stderr)
	case "on":
		bc.progress = true
	case "off":
	default:
		return usageError("bench: --progress %q: want auto, on or off", *progress)
	}

	nc, err := cf.connect("bench")
	if err != nil {
		return err
	}
	defer nc.Close()
	bctx, cancel := cf.untilRefused(ctx)
	defer cancel()
	sum, err := bench(bctx, nc, bc, c.stderr)
	if err != nil {
		return cf.explain(err)
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

func envName(prefix string, i int) string { return fmt.Sprintf("%s%03d", prefix, i) }

// benchRun is the state of one bench run, shared by the publisher and the
// result reader.
type benchRun struct {
	runID    string
	start    []int64        // publish time of request i (unix ns), 0 before
	counts   []atomic.Int32 // results of request i
	latency  []int64        // first result's latency of request i (ns), written once
	slots    chan struct{}  // in-flight limit: one token per request awaiting its result
	outcomes sync.Map       // outcome -> *atomic.Int64

	published, pubErrors, results, dups atomic.Int64
	lastResult                          atomic.Int64 // unix ns
	allDone                             chan struct{}
	doneOnce                            sync.Once
	want                                atomic.Int64 // results to wait for (published ok, once publishing ends; else -1)
}

func (r *benchRun) index(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, r.runID+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || i >= len(r.start) {
		return 0, false
	}
	return i, true
}

func (r *benchRun) release() {
	select {
	case <-r.slots:
	default:
	}
}

func (r *benchRun) checkDone() {
	if w := r.want.Load(); w >= 0 && r.results.Load() >= w {
		r.doneOnce.Do(func() { close(r.allDone) })
	}
}

// onResult counts one result message from the DEPLOY stream.
func (r *benchRun) onResult(m jetstream.Msg) {
	var ev struct {
		RequestID string `json:"requestid"`
		Data      struct {
			RequestID string `json:"request_id"`
			Outcome   string `json:"outcome"`
		} `json:"data"`
	}
	if json.Unmarshal(m.Data(), &ev) != nil {
		return
	}
	id := ev.RequestID
	if id == "" {
		id = ev.Data.RequestID
	}
	i, ok := r.index(id)
	if !ok {
		return // not ours
	}
	now := time.Now().UnixNano()
	if r.counts[i].Add(1) > 1 {
		r.dups.Add(1)
		return
	}
	if s := atomic.LoadInt64(&r.start[i]); s > 0 {
		atomic.StoreInt64(&r.latency[i], now-s)
	}
	v, _ := r.outcomes.LoadOrStore(ev.Data.Outcome, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	r.lastResult.Store(now)
	r.results.Add(1)
	r.release()
	r.checkDone()
}

func bench(ctx context.Context, nc *nats.Conn, cfg benchConfig, progressOut io.Writer) (benchSummary, error) {
	run := &benchRun{
		runID:   "bench-" + strings.ReplaceAll(events.NewEventID(), "-", "")[:12],
		start:   make([]int64, cfg.requests),
		counts:  make([]atomic.Int32, cfg.requests),
		latency: make([]int64, cfg.requests),
		slots:   make(chan struct{}, cfg.inFlight), // the in-flight limit itself
		allDone: make(chan struct{}),
	}
	run.want.Store(-1)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
		run.pubErrors.Add(1)
		if i, ok := run.index(m.Header.Get(events.HeaderMsgID)); ok {
			atomic.StoreInt64(&run.start[i], 0)
		}
		run.release()
	}), jetstream.WithPublishAsyncMaxPending(max(cfg.inFlight, 256)))
	if err != nil {
		return benchSummary{}, err
	}
	client, err := newBridgeClient(nc, "bench")
	if err != nil {
		return benchSummary{}, err
	}
	envs := make([]string, cfg.envs)
	for i := range envs {
		envs[i] = envName(cfg.prefix, i)
	}
	if cfg.setup {
		if err := benchSetup(ctx, js, client, cfg.bucket, envs); err != nil {
			return benchSummary{}, err
		}
	}

	// Read results from the stream before the first request goes out.
	rctx, stopResults := context.WithCancel(ctx)
	defer stopResults()
	cons, err := js.OrderedConsumer(rctx, events.StreamDeploy, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.PrefixDeployResult + ">"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return benchSummary{}, errors.New("bench: no DEPLOY stream (has a bridge started on this NATS?)")
		}
		if isTimeout(err) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			return benchSummary{}, withCode(exitTimeout, fmt.Errorf("bench: %w", err))
		}
		return benchSummary{}, fmt.Errorf("bench: %w", err)
	}
	cc, err := cons.Consume(run.onResult)
	if err != nil {
		return benchSummary{}, fmt.Errorf("bench: %w", err)
	}
	defer cc.Stop()

	var stopProgress func()
	if cfg.progress {
		stopProgress = run.showProgress(progressOut, cfg.requests)
	}

	first := time.Now()
	source := client.source
	var interval time.Duration
	if cfg.rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.rate)
	}
publish:
	for i := range cfg.requests {
		if interval > 0 {
			if wait := time.Until(first.Add(time.Duration(i) * interval)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					break publish
				}
			}
		}
		select {
		case run.slots <- struct{}{}:
		case <-ctx.Done():
			break publish
		}
		env := envs[i%cfg.envs]
		app := fmt.Sprintf("app-%03d", (i/cfg.envs)%cfg.apps)
		msg, _, err := events.NewDeployRequest(source, env, events.DeployRequest{App: app, Version: fmt.Sprintf("v0.0.%d", i)},
			events.WithID(fmt.Sprintf("%s-%d", run.runID, i)))
		if err != nil {
			return benchSummary{}, err
		}
		atomic.StoreInt64(&run.start[i], time.Now().UnixNano())
		if _, err := js.PublishMsgAsync(msg); err != nil {
			run.pubErrors.Add(1)
			atomic.StoreInt64(&run.start[i], 0)
			run.release()
			if errors.Is(err, nats.ErrConnectionClosed) {
				break
			}
			continue
		}
		run.published.Add(1)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(cfg.wait):
	case <-ctx.Done():
	}
	publishEnd := time.Now()
	run.want.Store(run.published.Load() - run.pubErrors.Load())
	run.checkDone()
	select {
	case <-run.allDone:
		// Stay a moment for duplicates to show up.
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
		}
	case <-time.After(cfg.wait):
	case <-ctx.Done():
	}
	cc.Stop()
	if stopProgress != nil {
		stopProgress()
	}
	return run.summary(cfg, first, publishEnd), nil
}

// benchSetup registers envs as mock environments and waits until the bridge
// lists them.
func benchSetup(ctx context.Context, js jetstream.JetStream, client *bridgeClient, bucket string, envs []string) error {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, bridge.EnvironmentsBucketConfig(bucket))
	}
	if err != nil {
		if isTimeout(err) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return withCode(exitTimeout, fmt.Errorf("bench --setup: bucket %s: %w", bucket, err))
		}
		return fmt.Errorf("bench --setup: bucket %s: %w", bucket, err)
	}
	for _, env := range envs {
		rec, _ := json.Marshal(map[string]any{"id": env, "name": "bench " + env, "type": "mock", "active": true})
		if _, err := kv.Put(ctx, env, rec); err != nil {
			return fmt.Errorf("bench --setup: put %s: %w", env, err)
		}
	}
	// Wait until the bridge knows them all.
	deadline := time.Now().Add(15 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		list, err := client.environments(rctx)
		cancel()
		if err == nil {
			known := map[string]bool{}
			for _, e := range list {
				known[e.ID] = e.Active
			}
			missing := 0
			for _, env := range envs {
				if !known[env] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
			err = fmt.Errorf("the bridge does not list %d of the %d environments yet", missing, len(envs))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench --setup: %w", err)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// showProgress prints a progress line on w until the returned func is called.
func (r *benchRun) showProgress(w io.Writer, total int) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		begin := time.Now()
		for {
			select {
			case <-stop:
				fmt.Fprint(w, "\r\x1b[K")
				return
			case <-t.C:
				res := r.results.Load()
				pct := float64(res) / float64(total)
				const width = 30
				bar := strings.Repeat("█", int(pct*width)) + strings.Repeat("░", width-int(pct*width))
				fmt.Fprintf(w, "\r\x1b[K%s %3.0f%%  published %d/%d  results %d  in flight %d  %.0f/s",
					bar, pct*100, r.published.Load(), total, res, len(r.slots), float64(res)/time.Since(begin).Seconds())
			}
		}
	}()
	return func() { close(stop); <-done }
}

func (r *benchRun) summary(cfg benchConfig, first, publishEnd time.Time) benchSummary {
	s := benchSummary{
		RunID: r.runID, Requests: cfg.requests, Envs: cfg.envs, Apps: cfg.apps, InFlight: cfg.inFlight, Rate: cfg.rate,
		Published: r.published.Load() - r.pubErrors.Load(), PublishErrors: r.pubErrors.Load(),
		Results: r.results.Load(), Duplicates: r.dups.Load(), Outcomes: map[string]int64{},
	}
	if s.Published < 0 {
		s.Published = 0
	}
	s.Missing = int64(cfg.requests) - s.Results
	r.outcomes.Range(func(k, v any) bool {
		s.Outcomes[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	end := publishEnd
	if last := r.lastResult.Load(); last > 0 {
		end = time.Unix(0, last)
	}
	if d := end.Sub(first).Seconds(); d > 0 {
		s.DurationS = round3(d)
		s.ResultsPerS = round3(float64(s.Results) / d)
	}
	if d := publishEnd.Sub(first).Seconds(); d > 0 {
		s.PublishPerS = round3(float64(s.Published) / d)
	}
	var lat []int64
	for i := range r.latency {
		if l := atomic.LoadInt64(&r.latency[i]); l > 0 {
			lat = append(lat, l)
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		var total float64
		for _, l := range lat {
			total += float64(l)
		}
		ms := func(ns float64) float64 { return round3(ns / 1e6) }
		q := func(p float64) float64 {
			return ms(float64(lat[int(math.Ceil(p*float64(len(lat))))-1]))
		}
		s.LatencyMS = latencySummary{Min: ms(float64(lat[0])), Mean: ms(total / float64(len(lat))), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(float64(lat[len(lat)-1]))}
	}
	bad := s.Outcomes[string(events.Failed)] + s.Outcomes[string(events.Rejected)]
	s.OK = s.Missing == 0 && s.Duplicates == 0 && s.PublishErrors == 0 && bad == 0
	return s
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func printBench(w io.Writer, p palette, s benchSummary) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	rate := "as fast as possible"
	if s.Rate > 0 {
		rate = fmt.Sprintf("%g/s", s.Rate)
	}
	fmt.Fprintf(tw, "requests\t%d over %d environments × %d apps, %s, %d in flight\n", s.Requests, s.Envs, s.Apps, rate, s.InFlight)
	fmt.Fprintf(tw, "published\t%d in %.2fs (%.0f/s)\n", s.Published, s.DurationS, s.PublishPerS)
	fmt.Fprintf(tw, "results\t%d (%.0f/s end to end)\n", s.Results, s.ResultsPerS)
	var outs []string
	for _, o := range []events.Outcome{events.Succeeded, events.Superseded, events.Failed, events.Rejected} {
		if n := s.Outcomes[string(o)]; n > 0 {
			outs = append(outs, fmt.Sprintf("%s %d", o, n))
		}
	}
	fmt.Fprintf(tw, "outcomes\t%s\n", orDash(strings.Join(outs, ", ")))
	l := s.LatencyMS
	fmt.Fprintf(tw, "latency\tp50 %.1fms  p90 %.1fms  p99 %.1fms  max %.1fms  (min %.1fms, mean %.1fms)\n", l.P50, l.P90, l.P99, l.Max, l.Min, l.Mean)
	check := p.green("every request got exactly one result")
	if s.Missing > 0 || s.Duplicates > 0 || s.PublishErrors > 0 {
		check = p.red(fmt.Sprintf("%d missing, %d duplicates, %d publish errors", s.Missing, s.Duplicates, s.PublishErrors))
	}
	fmt.Fprintf(tw, "check\t%s\n", check)
	if bad := s.Outcomes[string(events.Failed)] + s.Outcomes[string(events.Rejected)]; bad > 0 {
		fmt.Fprintf(tw, "verdict\t%s\n", p.red(fmt.Sprintf("%d requests failed or were rejected (are the environments registered? try --setup)", bad)))
	}
	tw.Flush()
}
