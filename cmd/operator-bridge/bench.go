package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/bench/mix"
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

// benchSummary is what bench reports (--json prints it as is).
type benchSummary struct {
	RunID         string           `json:"run_id"`
	Requests      int              `json:"requests"`
	Envs          int              `json:"envs"`
	Apps          int              `json:"apps"`
	InFlight      int              `json:"in_flight"`
	Rate          float64          `json:"rate"` // asked for; 0: as fast as possible
	Mix           string           `json:"mix"`
	DupWaitS      float64          `json:"dup_wait_s"` // watched for duplicates after the last result
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
	Processes     []procUsage      `json:"processes,omitempty"` // --pids
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
	mix                            string
	setup                          bool
	prefix, bucket                 string
	wait, dupWait                  time.Duration
	pids                           []int
	progress                       bool
}

// defaultAckWait is the bridge's default ack wait, what --dup-wait falls
// back to when the bridge's consumer cannot be read.
const defaultAckWait = 30 * time.Second

func runBench(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("bench")
	var cf clientFlags
	cf.register(fs, c, 0)
	var bc benchConfig
	fs.IntVar(&bc.requests, "requests", 1000, "`N` deploy requests")
	fs.IntVar(&bc.envs, "envs", 4, "over `E` environments")
	fs.IntVar(&bc.apps, "apps", 50, "and `A` apps per environment")
	fs.StringVar(&bc.mix, "mix", "realistic", "traffic `shape`: realistic or simple (see above)")
	fs.Float64Var(&bc.rate, "rate", 0, "requests per second (0: as fast as possible)")
	fs.IntVar(&bc.inFlight, "in-flight", 1000, "at most `C` requests waiting for their result")
	fs.BoolVar(&bc.setup, "setup", false, "register the environments as mock environments in the environments bucket first")
	fs.StringVar(&bc.prefix, "env-prefix", "bench-", "environment names: `prefix` + 000, 001, ...")
	fs.StringVar(&bc.bucket, "bucket", "environments", "the environments key-value `bucket` (--setup)")
	fs.DurationVar(&bc.wait, "wait", time.Minute, "how long to wait for the last results once everything is published")
	fs.DurationVar(&bc.dupWait, "dup-wait", 0, "how long to watch for duplicates after the last result (0: the bridge consumer's ack wait, else 30s)")
	pids := fs.String("pids", "", "comma-separated process `IDs` whose CPU and memory to measure over the run")
	progress := fs.String("progress", "auto", "progress on stderr: auto (on a terminal), on or off")
	if err := parseFlags(c, fs, benchUsage, args); err != nil {
		return err
	}
	switch {
	case bc.requests <= 0 || bc.envs <= 0 || bc.apps <= 0 || bc.inFlight <= 0:
		return usageError("bench: --requests, --envs, --apps and --in-flight must be positive")
	case bc.rate < 0:
		return usageError("bench: --rate must not be negative")
	case bc.dupWait < 0:
		return usageError("bench: --dup-wait must not be negative")
	case bc.mix != "realistic" && bc.mix != "simple":
		return usageError("bench: --mix %q: want realistic or simple", bc.mix)
	case !events.ValidEnvironmentID(mix.Names(bc.prefix, bc.envs)[bc.envs-1]):
		return usageError("bench: --env-prefix %q makes invalid environment IDs", bc.prefix)
	}
	for f := range strings.FieldsFuncSeq(*pids, func(r rune) bool { return r == ',' || r == ' ' }) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return usageError("bench: --pids: %q is not a process ID", f)
		}
		bc.pids = append(bc.pids, pid)
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
	dupWatchEnd                         atomic.Int64 // unix ns: the end of the watch for duplicates, once it began
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
	envs := mix.Names(cfg.prefix, cfg.envs)
	traffic := mix.New(envs, mix.Names("app-", cfg.apps), cfg.mix == "realistic", time.Now())
	if cfg.setup {
		if err := benchSetup(ctx, js, client, cfg.bucket, envs); err != nil {
			return benchSummary{}, err
		}
	}
	if cfg.dupWait == 0 {
		cfg.dupWait = bridgeAckWait(ctx, js)
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

	procs := startProcUsage(cfg.pids)
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
		env, req := traffic.Request(i)
		msg, _, err := events.NewDeployRequest(source, env, req,
			events.WithID(fmt.Sprintf("%s-%d", run.runID, i)), events.WithTime(time.Now()))
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
		procs.stop()
		run.dupWatchEnd.Store(time.Now().Add(cfg.dupWait).UnixNano())
		// A request whose acknowledgement was lost comes again after the
		// ack wait, and would get a second result: watch that long.
		select {
		case <-time.After(cfg.dupWait):
		case <-ctx.Done():
		}
	case <-time.After(cfg.wait):
	case <-ctx.Done():
	}
	procs.stop()
	cc.Stop()
	if stopProgress != nil {
		stopProgress()
	}
	s := run.summary(cfg, first, publishEnd)
	s.Processes = procs.usage(s.Results)
	return s, nil
}

// bridgeAckWait is the ack wait of the bridge's deploy consumer, or the
// bridge's default when it cannot be read.
func bridgeAckWait(ctx context.Context, js jetstream.JetStream) time.Duration {
	ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if c, err := js.Consumer(ictx, events.StreamDeploy, bridge.DeployConsumer); err == nil {
		if w := c.CachedInfo().Config.AckWait; w > 0 {
			return w
		}
	}
	return defaultAckWait
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
				if end := r.dupWatchEnd.Load(); end > 0 {
					fmt.Fprintf(w, "\r\x1b[Kevery result in; watching for duplicates (a redelivery after the ack wait) for %s more (--dup-wait)",
						time.Until(time.Unix(0, end)).Round(time.Second))
					continue
				}
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
		Mix: cfg.mix, DupWaitS: cfg.dupWait.Seconds(),
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

// procWatch measures processes over a run from /proc (Linux): CPU time
// between start and stop, and peak resident memory at stop.
type procWatch struct {
	pids          []int
	before, after []float64 // CPU seconds; -1: unreadable
	peak          []float64 // VmHWM, MiB
	stopped       bool
}

func startProcUsage(pids []int) *procWatch {
	w := &procWatch{pids: pids, before: make([]float64, len(pids))}
	for i, pid := range pids {
		w.before[i] = procCPU(pid)
	}
	return w
}

// stop takes the second reading; later calls do nothing.
func (w *procWatch) stop() {
	if w.stopped {
		return
	}
	w.stopped = true
	w.after, w.peak = make([]float64, len(w.pids)), make([]float64, len(w.pids))
	for i, pid := range w.pids {
		w.after[i], w.peak[i] = procCPU(pid), procPeakRSS(pid)
	}
}

// procUsage is one process's use over a bench run.
type procUsage struct {
	PID             int     `json:"pid"`
	Name            string  `json:"name"`
	CPUS            float64 `json:"cpu_s"` // user + system, first publish to last result
	CPUPerRequestUS float64 `json:"cpu_per_request_us"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"` // the process's peak so far
}

func (w *procWatch) usage(requests int64) []procUsage {
	var out []procUsage
	for i, pid := range w.pids {
		if w.before[i] < 0 || w.after[i] < 0 {
			continue
		}
		u := procUsage{PID: pid, Name: procName(pid), CPUS: round3(w.after[i] - w.before[i]), PeakRSSMiB: round3(w.peak[i])}
		if requests > 0 {
			u.CPUPerRequestUS = round3(u.CPUS / float64(requests) * 1e6)
		}
		out = append(out, u)
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// Linux whatever the kernel's own tick.
const clockTicks = 100

// procCPU is pid's user + system CPU time in seconds, or -1.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; fields 14 and 15 (utime,
	// stime) are the 12th and 13th after it.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if !ok || len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (u + st) / clockTicks
}

// procPeakRSS is pid's peak resident set (VmHWM) in MiB, or 0.
func procPeakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kib / 1024
		}
	}
	return 0
}

func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}
