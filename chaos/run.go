package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// Config configures a run. Zero values take the defaults in brackets.
type Config struct {
	// Duration is how long the faults go on: one phase per fault kind, then
	// mixed phases until Duration has passed [3m].
	Duration time.Duration
	Seed     int64   // random choices [the time]
	Replicas int     // bridge processes [2]
	Rate     float64 // requests a second [15]
	// Burst is how many requests are published at once (half on one hot
	// key) just before each fault, so that many are in flight when it hits
	// [200].
	Burst int
	Envs  int // environments, each with its own fake operator [4]
	Apps  int // apps per environment [4]
	// OperatorTimeout is the replicas' OPERATOR_TIMEOUT [2s].
	OperatorTimeout time.Duration
	// RetryWindow is the replicas' RETRY_WINDOW [60s].
	RetryWindow time.Duration
	// Slack is allowed on top of the retry window for a result [30s].
	Slack time.Duration
	// Dir holds the run's NATS data, the binary and every log.
	Dir string
	// Root is the module's folder, where ./cmd/operator-bridge is built.
	Root string
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

func (c *Config) setDefaults() {
	if c.Duration <= 0 {
		c.Duration = 3 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	if c.Replicas <= 0 {
		c.Replicas = 2
	}
	if c.Rate <= 0 {
		c.Rate = 15
	}
	if c.Burst <= 0 {
		c.Burst = 200
	}
	if c.Envs <= 0 {
		c.Envs = 4
	}
	if c.Apps <= 0 {
		c.Apps = 4
	}
	if c.OperatorTimeout <= 0 {
		c.OperatorTimeout = 2 * time.Second
	}
	if c.RetryWindow <= 0 {
		c.RetryWindow = time.Minute
	}
	if c.Slack <= 0 {
		c.Slack = 30 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// ConfigFromEnv reads CHAOS_DURATION, CHAOS_SEED, CHAOS_REPLICAS and
// CHAOS_RATE and CHAOS_BURST; unset ones keep their zero value (the
// default).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	if v := getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("CHAOS_DURATION %q is not a positive duration", v))
		}
		c.Duration = d
	}
	if v := getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("CHAOS_SEED %q is not an integer", v))
		}
		c.Seed = n
	}
	if v := getenv("CHAOS_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			errs = append(errs, fmt.Errorf("CHAOS_REPLICAS %q is not 1 to 5", v))
		}
		c.Replicas = n
	}
	if v := getenv("CHAOS_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || r > 1000 {
			errs = append(errs, fmt.Errorf("CHAOS_RATE %q is not a rate in (0, 1000] requests a second", v))
		}
		c.Rate = r
	}
	if v := getenv("CHAOS_BURST"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100_000 {
			errs = append(errs, fmt.Errorf("CHAOS_BURST %q is not 1 to 100000", v))
		}
		c.Burst = n
	}
	return c, errors.Join(errs...)
}

// Run is one run of the suite: it sets everything up, runs the load through
// the fault phases, lets the bridge settle, stops it and returns what
// happened. The Rig's logs stay in cfg.Dir. An error means the run itself
// could not be carried out (not that the bridge failed a check).
func Run(ctx context.Context, cfg Config) (History, error) {
	cfg.setDefaults()
	h := History{Seed: cfg.Seed, RetryWindow: cfg.RetryWindow, Slack: cfg.Slack}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)>>1|1))
	logf := cfg.Logf
	logf("chaos: seed %d (replay with CHAOS_SEED=%d), %s of faults, %d replicas, %.0f requests/s", cfg.Seed, cfg.Seed, cfg.Duration, cfg.Replicas, cfg.Rate)

	cluster, err := StartCluster(filepath.Join(cfg.Dir, "nats"), 3)
	if err != nil {
		return h, err
	}
	defer cluster.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := cluster.WaitMetaLeader(wctx); err != nil {
		return h, err
	}
	nc, err := nats.Connect(cluster.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.Name("chaos"))
	if err != nil {
		return h, fmt.Errorf("connect to the cluster: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return h, err
	}
	if err := createR3(wctx, js, cluster); err != nil {
		return h, err
	}

	// Operators and environments.
	rig := &Rig{Cluster: cluster, Operators: map[string]*operatortest.Server{}, OperatorTimeout: cfg.OperatorTimeout}
	var envRecords []map[string]any
	var keys []Key
	for i := range cfg.Envs {
		env := fmt.Sprintf("chaos-%d", i)
		kind := []operator.Kind{operator.Kubernetes, operator.Physical}[i%2]
		srv := operatortest.NewServer(kind)
		defer srv.Close()
		srv.SetFencing(true)
		srv.SetMaxRecorded(1 << 21)
		rig.Envs = append(rig.Envs, env)
		rig.Operators[env] = srv
		envRecords = append(envRecords, map[string]any{"id": env, "name": env, "type": string(kind), "operator_url": srv.URL, "active": true})
		for a := range cfg.Apps {
			keys = append(keys, Key{env, fmt.Sprintf("app-%d", a)})
		}
	}
	envFile := filepath.Join(cfg.Dir, "environments.json")
	data, _ := json.Marshal(envRecords)
	if err := os.WriteFile(envFile, data, 0o644); err != nil {
		return h, err
	}

	// Bridge replicas, each behind its own proxy.
	logf("chaos: building the bridge")
	bin, err := BuildBridge(ctx, cfg.Root, cfg.Dir)
	if err != nil {
		return h, err
	}
	ports, err := freePorts(cfg.Replicas)
	if err != nil {
		return h, err
	}
	for i := range cfg.Replicas {
		p, err := NewProxy(cluster.Addrs())
		if err != nil {
			return h, err
		}
		defer p.Close()
		name := fmt.Sprintf("replica-%d", i+1)
		rep := &Replica{
			Name:     name,
			Bin:      bin,
			LogPath:  filepath.Join(cfg.Dir, name+".log"),
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			Env: []string{
				"OPERATOR_BRIDGE_NATS_URL=nats://" + p.Addr(),
				"OPERATOR_BRIDGE_ENVIRONMENTS_FILE=" + envFile,
				"OPERATOR_BRIDGE_INSTANCE=" + name,
				fmt.Sprintf("OPERATOR_BRIDGE_HTTP_ADDR=127.0.0.1:%d", ports[i]),
				"OPERATOR_BRIDGE_OPERATOR_TIMEOUT=" + cfg.OperatorTimeout.String(),
				"OPERATOR_BRIDGE_RETRY_WINDOW=" + cfg.RetryWindow.String(),
				"OPERATOR_BRIDGE_REPLICAS=3",
				"OPERATOR_BRIDGE_HEALTH_INTERVAL=5s",
				"OPERATOR_BRIDGE_LOG_FORMAT=text",
			},
		}
		rig.Proxies = append(rig.Proxies, p)
		rig.Replicas = append(rig.Replicas, rep)
	}
	stopped := false
	defer func() { // should the run end early
		if !stopped {
			for _, rep := range rig.Replicas {
				rep.Stop(time.Second)
			}
		}
	}()
	for _, rep := range rig.Replicas {
		if err := rep.Start(); err != nil {
			return h, err
		}
	}
	for _, rep := range rig.Replicas {
		if err := rep.WaitReady(wctx); err != nil {
			return h, err
		}
	}
	logf("chaos: %d replicas ready; load on %d keys", len(rig.Replicas), len(keys))

	// Load through the phases.
	load := &Load{JS: js, Keys: keys, Rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); load.Run(loadCtx, cfg.Rate) }()
	defer func() { stopLoad(); <-loadDone }()

	var runErr error
	faults, phases, err := runPhases(ctx, cfg, rig, rng, func() { load.Burst(cfg.Burst) })
	h.Faults, h.Phases = faults, phases
	if err != nil {
		runErr = err
	}
	stopLoad()
	<-loadDone
	lastPublish := time.Now()
	logf("chaos: load stopped: %d new, %d late, %d sent again, %d replayed, %d in bursts, %d failed to publish",
		load.New.Load(), load.Late.Load(), load.Resent.Load(), load.Replayed.Load(), load.Bursts.Load(), load.Failed.Load())
	if err := rig.Heal(); err != nil {
		runErr = errors.Join(runErr, err)
	}

	// Settle: every stored request answered and the consumer drained, or
	// the retry window and slack have passed since the last publish.
	deadline := lastPublish.Add(cfg.RetryWindow + cfg.Slack)
	for {
		reqs, res, err := ReadDeploy(ctx, js)
		if err == nil {
			answered := map[string]bool{}
			for _, r := range res {
				answered[r.ID] = true
			}
			left := 0
			for _, q := range reqs {
				if !answered[events.ResultID(q.ID, q.Seq)] {
					left++
				}
			}
			cs := consumerState(ctx, js)
			logf("chaos: settling: %d of %d request messages without a result; consumer: %d unacknowledged, %d not delivered; DEPLOY has %d consumers",
				left, len(reqs), cs.NumAckPending, cs.NumPending, cs.StreamConsumers)
			if left == 0 && cs.Read && cs.NumAckPending == 0 && cs.NumPending == 0 {
				h.Settled = true
				break
			}
		} else {
			logf("chaos: settling: read DEPLOY: %v", err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, 3*time.Second)
	}
	h.SettleTook = time.Since(lastPublish)
	h.Consumer = consumerState(ctx, js)

	// Stop the replicas, then read everything.
	for _, rep := range rig.Replicas {
		took, ok := rep.Stop(20 * time.Second)
		h.Shutdowns = append(h.Shutdowns, Shutdown{Replica: rep.Name, Took: took, InGrace: ok})
	}
	stopped = true
	var reqs []RequestMsg
	var res []ResultMsg
	for try := 1; ; try++ { // a read can fail while the cluster settles
		if reqs, res, err = ReadDeploy(ctx, js); err == nil {
			break
		}
		if try == 10 || ctx.Err() != nil {
			return h, errors.Join(runErr, fmt.Errorf("read the DEPLOY stream: %w", err))
		}
		sleep(ctx, 2*time.Second)
	}
	h.Requests, h.Results = reqs, res
	for _, env := range rig.Envs {
		h.Applies = append(h.Applies, Applies(env, rig.Operators[env])...)
	}
	return h, runErr
}

// createR3 creates the streams and buckets at 3 replicas before any bridge
// starts (bridges keep existing replica counts).
func createR3(ctx context.Context, js jetstream.JetStream, c *Cluster) error {
	for _, sc := range events.StreamConfigs() {
		sc.Replicas = 3
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range []jetstream.KeyValueConfig{bridge.OrderBucketConfig(), bridge.EnvironmentsBucketConfig("environments")} {
		kc.Replicas = 3
		if _, err := js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return fmt.Errorf("bucket %s: %w", kc.Bucket, err)
		}
	}
	for _, s := range []string{events.StreamDeploy, orderStream} {
		if _, err := c.WaitStreamLeader(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// runPhases runs a quiet baseline, one phase per fault kind, then mixed
// phases until cfg.Duration has passed. burst is called just before faults.
func runPhases(ctx context.Context, cfg Config, rig *Rig, rng *rand.Rand, burst func()) ([]FaultWindow, []Phase, error) {
	var (
		mu     sync.Mutex
		faults []FaultWindow
		phases []Phase
		errs   []error
	)
	record := func(kind string, w FaultWindow, ok bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		if ok {
			w.Kind = kind
			faults = append(faults, w)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", kind, err))
		}
	}
	phase := func(name string, body func()) {
		p := Phase{Name: name, Start: time.Now()}
		body()
		p.End = time.Now()
		phases = append(phases, p)
		cfg.Logf("chaos: phase %s done (%s)", name, p.End.Sub(p.Start).Round(time.Second))
	}
	start := time.Now()
	phase("baseline", func() { sleep(ctx, 5*time.Second) })
	for _, k := range FaultKinds {
		if ctx.Err() != nil {
			break
		}
		phase(k.Name, func() {
			sleep(ctx, 2*time.Second)
			burst()
			w, ok, err := k.Run(ctx, rig, rng)
			record(k.Name, w, ok, err)
			sleep(ctx, 3*time.Second)
		})
	}
	for n := 1; ctx.Err() == nil; n++ {
		left := cfg.Duration - time.Since(start)
		if left < 30*time.Second && n > 1 {
			break
		}
		length := min(max(left, 30*time.Second), 60*time.Second)
		phase(fmt.Sprintf("mixed-%d", n), func() {
			var wg sync.WaitGroup
			end := time.Now().Add(length - 15*time.Second) // the longest fault ends by the phase's end
			for time.Now().Before(end) && ctx.Err() == nil {
				k := FaultKinds[rng.IntN(len(FaultKinds))]
				sub := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
				if rng.IntN(3) == 0 {
					burst()
				}
				wg.Go(func() {
					w, ok, err := k.Run(ctx, rig, sub)
					record(k.Name, w, ok, err)
				})
				sleep(ctx, time.Duration(500+rng.IntN(2500))*time.Millisecond)
			}
			wg.Wait()
			sleep(ctx, 3*time.Second)
		})
	}
	slices.SortFunc(faults, func(a, b FaultWindow) int { return a.Start.Compare(b.Start) })
	return faults, phases, errors.Join(errs...)
}

// consumerState reads the deploy consumer's state.
func consumerState(ctx context.Context, js jetstream.JetStream) ConsumerState {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, events.StreamDeploy, bridge.DeployConsumer)
	if err != nil {
		return ConsumerState{}
	}
	info, err := c.Info(ctx)
	if err != nil {
		return ConsumerState{}
	}
	cs := ConsumerState{Read: true, NumAckPending: info.NumAckPending, NumPending: info.NumPending}
	if s, err := js.Stream(ctx, events.StreamDeploy); err == nil {
		cs.StreamConsumers = s.CachedInfo().State.Consumers
	}
	return cs
}
