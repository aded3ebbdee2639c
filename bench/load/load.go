// Package load is the load generator of operator-bridge bench, in the
// manner of 'nats bench': it publishes deploy requests of a traffic mix
// (package mix) over environments and apps, at a steady rate or as fast as
// an in-flight limit allows, reads their results back from the DEPLOY
// stream (an events.Batch), and sums up throughput, latency from publish to
// result, outcomes, and whether every request got exactly one result.
//
// Exactly one: once the last result is in, Run keeps watching for DupWait,
// by default the ack wait of the bridge's deploy consumer, since a request
// whose acknowledgement was lost is delivered again only after it and its
// second result would show up then.
package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/bench/mix"
	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
)

// The traffic mixes (Config.Mix; package mix describes them).
const (
	MixRealistic = "realistic"
	MixSimple    = "simple"
)

// Config is one run's configuration. Zero values take DefaultConfig's.
type Config struct {
	Requests int     // deploy requests
	Envs     int     // environments: EnvPrefix + 000, 001, ...
	Apps     int     // apps per environment: app-000, app-001, ...
	InFlight int     // at most this many requests waiting for their result
	Rate     float64 // requests per second; 0: as fast as InFlight allows
	Mix      string  // MixRealistic or MixSimple
	// NoRollout sends every request with "rollout": false, so that the
	// bridge does not track its rollout (what that tracking costs).
	NoRollout bool

	EnvPrefix string
	// Setup registers the environments as mock environments in the key-value
	// bucket Bucket first, and waits until the bridge lists them.
	Setup  bool
	Bucket string // required with Setup

	// Wait bounds the wait for the acknowledgements once everything is
	// published, and then for the last results.
	Wait time.Duration
	// DupWait is how long to watch for duplicates after the last result;
	// 0: the ack wait of the bridge's deploy consumer, or
	// bridge.DefaultAckWait when it cannot be read.
	DupWait time.Duration

	// PIDs are processes whose CPU time and peak memory to measure over the
	// run, from /proc (Linux).
	PIDs []int
	// Progress, when set, is called about every 200 ms while the run lasts,
	// from a goroutine of its own that has ended when Run returns.
	Progress func(Progress)
}

// DefaultConfig is the configuration the zero values of Config stand for.
func DefaultConfig() Config {
	return Config{Requests: 1000, Envs: 4, Apps: 50, InFlight: 1000, Mix: MixRealistic, EnvPrefix: "bench-", Wait: time.Minute}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Requests == 0 {
		c.Requests = d.Requests
	}
	if c.Envs == 0 {
		c.Envs = d.Envs
	}
	if c.Apps == 0 {
		c.Apps = d.Apps
	}
	if c.InFlight == 0 {
		c.InFlight = d.InFlight
	}
	if c.Mix == "" {
		c.Mix = d.Mix
	}
	if c.EnvPrefix == "" {
		c.EnvPrefix = d.EnvPrefix
	}
	if c.Wait == 0 {
		c.Wait = d.Wait
	}
	return c
}

// Validate checks c as it is, zero values included.
func (c Config) Validate() error {
	switch {
	case c.Requests <= 0 || c.Envs <= 0 || c.Apps <= 0 || c.InFlight <= 0:
		return errors.New("requests, envs, apps and in-flight must be positive")
	case c.Rate < 0:
		return errors.New("rate must not be negative")
	case c.DupWait < 0:
		return errors.New("dup-wait must not be negative")
	case c.Wait <= 0:
		return errors.New("wait must be positive")
	case c.Mix != MixRealistic && c.Mix != MixSimple:
		return fmt.Errorf("mix %q: want %s or %s", c.Mix, MixRealistic, MixSimple)
	case !events.ValidEnvironmentID(mix.Names(c.EnvPrefix, c.Envs)[c.Envs-1]):
		return fmt.Errorf("env-prefix %q makes invalid environment IDs", c.EnvPrefix)
	case c.Setup && c.Bucket == "":
		return errors.New("setup needs a bucket")
	}
	for _, pid := range c.PIDs {
		if pid <= 0 {
			return fmt.Errorf("pids: %d is not a process ID", pid)
		}
	}
	return nil
}

// Progress is where a run stands.
type Progress struct {
	Requests  int   // to publish
	Published int64 // so far
	Results   int64
	InFlight  int
	Elapsed   time.Duration // since the progress began
	// DupWatchEnd is when the watch for duplicates ends, once every result
	// is in; zero before.
	DupWatchEnd time.Time
}

// Summary is what a run reports (bench --json prints it as is).
type Summary struct {
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
	LatencyMS     LatencySummary   `json:"latency_ms"`
	Processes     []ProcUsage      `json:"processes,omitempty"` // Config.PIDs
	OK            bool             `json:"ok"`
}

// LatencySummary sums up the latencies from publish to first result, in
// milliseconds.
type LatencySummary struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// run is what a run keeps of the results, besides the batch's counts.
type run struct {
	latency     []int64  // first result's latency of request i (ns); 0: none
	outcomes    sync.Map // outcome -> *atomic.Int64
	lastResult  atomic.Int64
	dupWatchEnd atomic.Int64 // unix ns: the end of the watch for duplicates, once it began
}

func (r *run) onResult(res events.BatchResult) {
	if res.Count > 1 {
		return // a duplicate: the batch counts it
	}
	if res.Latency > 0 {
		atomic.StoreInt64(&r.latency[res.Index], int64(res.Latency))
	}
	v, ok := r.outcomes.Load(res.Outcome)
	if !ok {
		v, _ = r.outcomes.LoadOrStore(res.Outcome, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
	r.lastResult.Store(res.Received.UnixNano())
}

// Run makes one bench run against the bridge that serves nc's NATS, with
// client's source, and sums it up. The error is for what kept the run from
// being made (NATS, no DEPLOY stream, Setup); lost, duplicated, failed or
// rejected requests are in the Summary, which is then not OK.
func Run(ctx context.Context, nc *nats.Conn, client *events.Client, cfg Config) (Summary, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return Summary{}, err
	}
	envs := mix.Names(cfg.EnvPrefix, cfg.Envs)
	traffic := mix.New(envs, mix.Names("app-", cfg.Apps), cfg.Mix == MixRealistic, time.Now())
	if cfg.Setup {
		if err := setup(ctx, js, client, cfg.Bucket, envs); err != nil {
			return Summary{}, fmt.Errorf("setup: %w", err)
		}
	}
	if cfg.DupWait == 0 {
		cfg.DupWait = bridgeAckWait(ctx, js)
	}

	r := &run{latency: make([]int64, cfg.Requests)}
	// The batch reads results before the first request goes out.
	batch, err := client.NewBatch(ctx, events.BatchOptions{
		Size: cfg.Requests, MaxInFlight: cfg.InFlight, OnResult: r.onResult,
		ID: "bench-" + strings.ReplaceAll(events.NewEventID(), "-", "")[:12],
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return Summary{}, fmt.Errorf("no %s stream (has a bridge started on this NATS?)", events.StreamDeploy)
	}
	if err != nil {
		return Summary{}, err
	}
	defer batch.Stop()

	stopProgress := func() {}
	if cfg.Progress != nil {
		stopProgress = r.showProgress(batch, cfg.Requests, cfg.Progress)
	}
	defer stopProgress()

	procs := startProcUsage(cfg.PIDs)
	first := time.Now()
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
publish:
	for i := range cfg.Requests {
		if interval > 0 {
			if wait := time.Until(first.Add(time.Duration(i) * interval)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					break publish
				}
			}
		}
		env, req := traffic.Request(i)
		if cfg.NoRollout {
			req.Rollout = &events.Rollout{Off: true}
		}
		_, err := batch.Publish(ctx, env, req, events.WithTime(time.Now()))
		switch {
		case err == nil:
		case ctx.Err() != nil:
			break publish
		case errors.Is(err, events.ErrNotPublished):
			if nc.IsClosed() {
				break publish
			}
		default:
			return Summary{}, err
		}
	}
	select {
	case <-batch.Acked():
	case <-time.After(cfg.Wait):
	case <-ctx.Done():
	}
	publishEnd := time.Now()
	select {
	case <-batch.Answered():
		procs.stop()
		r.dupWatchEnd.Store(time.Now().Add(cfg.DupWait).UnixNano())
		// A request whose acknowledgement was lost comes again after the
		// ack wait, and would get a second result: watch that long.
		select {
		case <-time.After(cfg.DupWait):
		case <-ctx.Done():
		}
	case <-time.After(cfg.Wait):
	case <-ctx.Done():
	}
	procs.stop()
	batch.Stop()
	stopProgress()
	s := r.summary(cfg, batch.ID(), batch.Stats(), first, publishEnd)
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
	return bridge.DefaultAckWait
}

// setup registers envs as mock environments and waits until the bridge
// lists them.
func setup(ctx context.Context, js jetstream.JetStream, client *events.Client, bucket string, envs []string) error {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, bridge.EnvironmentsBucketConfig(bucket))
	}
	if err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	for _, env := range envs {
		rec, _ := json.Marshal(map[string]any{"id": env, "name": "bench " + env, "type": "mock", "active": true})
		if _, err := kv.Put(ctx, env, rec); err != nil {
			return fmt.Errorf("put %s: %w", env, err)
		}
	}
	// Wait until the bridge knows them all.
	deadline := time.Now().Add(15 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		list, err := client.Environments(rctx)
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
			return err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// showProgress calls report about every 200 ms until the returned func is
// called; it returns once the calls have ended, and may be called again.
func (r *run) showProgress(b *events.Batch, total int, report func(Progress)) func() {
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
				return
			case <-t.C:
				st := b.Stats()
				p := Progress{Requests: total, Published: st.Published, Results: st.Results, InFlight: st.InFlight, Elapsed: time.Since(begin)}
				if end := r.dupWatchEnd.Load(); end > 0 {
					p.DupWatchEnd = time.Unix(0, end)
				}
				report(p)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stop); <-done }) }
}

func (r *run) summary(cfg Config, runID string, st events.BatchStats, first, publishEnd time.Time) Summary {
	s := Summary{
		RunID: runID, Requests: cfg.Requests, Envs: cfg.Envs, Apps: cfg.Apps, InFlight: cfg.InFlight, Rate: cfg.Rate,
		Mix: cfg.Mix, DupWaitS: cfg.DupWait.Seconds(),
		Published: st.Published, PublishErrors: st.PublishErrors,
		Results: st.Results, Duplicates: st.Duplicates, Outcomes: map[string]int64{},
	}
	s.Missing = int64(cfg.Requests) - s.Results
	r.outcomes.Range(func(k, v any) bool {
		s.Outcomes[string(k.(events.Outcome))] = v.(*atomic.Int64).Load()
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
	s.LatencyMS = summarizeLatency(lat)
	bad := s.Outcomes[string(events.Failed)] + s.Outcomes[string(events.Rejected)]
	s.OK = s.Missing == 0 && s.Duplicates == 0 && s.PublishErrors == 0 && bad == 0
	return s
}

// summarizeLatency sums up latencies in nanoseconds (it sorts them).
func summarizeLatency(lat []int64) LatencySummary {
	if len(lat) == 0 {
		return LatencySummary{}
	}
	slices.Sort(lat)
	var total float64
	for _, l := range lat {
		total += float64(l)
	}
	ms := func(ns float64) float64 { return round3(ns / 1e6) }
	q := func(p float64) float64 {
		return ms(float64(lat[int(math.Ceil(p*float64(len(lat))))-1]))
	}
	return LatencySummary{Min: ms(float64(lat[0])), Mean: ms(total / float64(len(lat))), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(float64(lat[len(lat)-1]))}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
