package load

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed/natsembedtest"
	"github.com/boreas/operator-bridge/operator"
)

// startBridge starts a NATS server and a bridge with nothing configured
// but the environments bucket, and returns the URL.
func startBridge(t *testing.T) string {
	t.Helper()
	url := natsembedtest.Start(t).ClientURL()
	nc, _ := natsembedtest.Connect(t, url)
	f, err := operator.NewFactory(operator.DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	br, err := bridge.New(nc, f, bridge.Config{EnvironmentsBucket: "environments", HealthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !br.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the bridge never got ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return url
}

func newClient(t *testing.T, url string) (*nats.Conn, *events.Client) {
	t.Helper()
	nc, _ := natsembedtest.Connect(t, url)
	c, err := events.NewClient(nc, events.WithSource("/bench/test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return nc, c
}

func TestRunAgainstTheBridge(t *testing.T) {
	url := startBridge(t)
	cases := []struct {
		name string
		cfg  Config
	}{
		{"realistic", Config{Requests: 300, Envs: 3, Apps: 10, InFlight: 50}},
		{"simple at a rate", Config{Requests: 100, Envs: 2, Apps: 5, Mix: MixSimple, Rate: 1000}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nc, client := newClient(t, url)
			cfg := c.cfg
			cfg.Setup, cfg.Bucket, cfg.DupWait = true, "environments", 200*time.Millisecond
			cfg.PIDs = []int{os.Getpid()}
			var progress []Progress
			var mu sync.Mutex
			cfg.Progress = func(p Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() }
			s, err := Run(t.Context(), nc, client, cfg)
			if err != nil {
				t.Fatal(err)
			}
			n := int64(cfg.Requests)
			if !s.OK || s.Published != n || s.Results != n || s.Missing != 0 || s.Duplicates != 0 || s.PublishErrors != 0 {
				t.Errorf("summary %+v", s)
			}
			if got := s.Outcomes["succeeded"] + s.Outcomes["superseded"]; got != n {
				t.Errorf("outcomes %v: %d succeeded or superseded, want %d", s.Outcomes, got, n)
			}
			if l := s.LatencyMS; l.Min <= 0 || l.P50 < l.Min || l.P99 < l.P50 || l.Max < l.P99 {
				t.Errorf("latency %+v", l)
			}
			wantMix := c.cfg.Mix
			if wantMix == "" {
				wantMix = MixRealistic
			}
			if !strings.HasPrefix(s.RunID, "bench-") || s.Mix != wantMix || s.DupWaitS != 0.2 {
				t.Errorf("run %q, mix %q, duplicates watched %gs", s.RunID, s.Mix, s.DupWaitS)
			}
			if len(s.Processes) != 1 || s.Processes[0].PID != os.Getpid() {
				t.Errorf("processes %+v", s.Processes)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range progress {
				if p.Requests != cfg.Requests || p.Results > n || p.Published > n {
					t.Errorf("progress %+v", p)
				}
			}
		})
	}
}

// answerTwice plays a bridge whose every request is delivered twice: it
// answers each deploy request, then again after a while under another
// result id, as a redelivery after a lost acknowledgement would.
func answerTwice(t *testing.T, url string, after time.Duration) {
	t.Helper()
	_, js := natsembedtest.Connect(t, url)
	cons, err := js.CreateOrUpdateConsumer(t.Context(), events.StreamDeploy, jetstream.ConsumerConfig{
		Durable: bridge.DeployConsumer, FilterSubject: events.PrefixDeployRequest + ">", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) {
		meta, err := m.Metadata()
		if err != nil {
			t.Error(err)
			return
		}
		env, req, err := events.DecodeDeployRequest(m.Subject(), m.Headers(), m.Data())
		if err != nil {
			t.Error(err)
			return
		}
		res := events.DeployResult{App: req.App, Version: req.Version, Operator: "mock", Outcome: events.Succeeded, Success: true, Attempts: 1}
		for i, seq := range []uint64{meta.Sequence.Stream, meta.Sequence.Stream + 1<<40} {
			msg, err := events.NewDeployResult(events.SourceFor("twice"), env, seq, res)
			if err != nil {
				t.Error(err)
				return
			}
			wg.Go(func() {
				time.Sleep(time.Duration(i) * after)
				if _, err := js.PublishMsg(context.WithoutCancel(t.Context()), msg); err != nil {
					t.Error(err)
				}
			})
		}
		_ = m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Stop(); <-cc.Closed(); wg.Wait() })
}

func startStreams(t *testing.T) string {
	t.Helper()
	url := natsembedtest.Start(t).ClientURL()
	_, js := natsembedtest.Connect(t, url)
	for _, sc := range events.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(t.Context(), sc); err != nil {
			t.Fatal(err)
		}
	}
	return url
}

// A second result that comes after the last first one, within the watch,
// is a duplicate: the run is not OK.
func TestRunCountsLateDuplicates(t *testing.T) {
	url := startStreams(t)
	answerTwice(t, url, 300*time.Millisecond)
	nc, client := newClient(t, url)
	s, err := Run(t.Context(), nc, client, Config{Requests: 20, Envs: 2, Apps: 2, DupWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.OK || s.Results != 20 || s.Missing != 0 || s.Duplicates != 20 {
		t.Errorf("summary %+v, want every request's second result counted as a duplicate", s)
	}
}

// Without DupWait the watch lasts the bridge consumer's ack wait.
func TestRunWatchesForTheAckWait(t *testing.T) {
	url := startStreams(t)
	_, js := natsembedtest.Connect(t, url)
	const ackWait = 1500 * time.Millisecond
	cfg := bridge.ConsumerConfigs(ackWait, 16)[events.StreamDeploy]
	if _, err := js.CreateOrUpdateConsumer(t.Context(), events.StreamDeploy, cfg); err != nil {
		t.Fatal(err)
	}
	nc, client := newClient(t, url)
	if got := bridgeAckWait(t.Context(), js); got != ackWait {
		t.Errorf("ack wait read %v, want %v", got, ackWait)
	}
	// Nobody answers: the run ends after Wait, and names the watch it
	// would have kept.
	s, err := Run(t.Context(), nc, client, Config{Requests: 3, Envs: 1, Apps: 1, Wait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.OK || s.Missing != 3 || s.Published != 3 || s.DupWaitS != ackWait.Seconds() {
		t.Errorf("summary %+v", s)
	}
}

func TestRunWithoutADeployStream(t *testing.T) {
	url := natsembedtest.Start(t).ClientURL()
	nc, client := newClient(t, url)
	_, err := Run(t.Context(), nc, client, Config{Requests: 1, DupWait: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no DEPLOY stream") {
		t.Errorf("run on a server without the bridge's streams: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("the default configuration: %v", err)
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no requests", func(c *Config) { c.Requests = 0 }, "must be positive"},
		{"negative envs", func(c *Config) { c.Envs = -1 }, "must be positive"},
		{"no in flight", func(c *Config) { c.InFlight = 0 }, "must be positive"},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "rate"},
		{"negative dup wait", func(c *Config) { c.DupWait = -time.Second }, "dup-wait"},
		{"no wait", func(c *Config) { c.Wait = 0 }, "wait"},
		{"unknown mix", func(c *Config) { c.Mix = "bursty" }, `mix "bursty"`},
		{"invalid environment IDs", func(c *Config) { c.EnvPrefix = "no spaces " }, "env-prefix"},
		{"setup without a bucket", func(c *Config) { c.Setup = true }, "bucket"},
		{"bad process ID", func(c *Config) { c.PIDs = []int{0} }, "pids"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.edit(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate: %v, want an error about %q", err, c.want)
			}
		})
	}
}

func TestSummarizeLatency(t *testing.T) {
	var lat []int64
	for i := 100; i >= 1; i-- {
		lat = append(lat, int64(i)*int64(time.Millisecond))
	}
	want := LatencySummary{Min: 1, Mean: 50.5, P50: 50, P90: 90, P99: 99, Max: 100}
	if diff := cmp.Diff(want, summarizeLatency(lat)); diff != "" {
		t.Errorf("latency (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(LatencySummary{}, summarizeLatency(nil)); diff != "" {
		t.Errorf("no latency (-want +got):\n%s", diff)
	}
}

func TestProcUsageReadsThisProcess(t *testing.T) {
	w := startProcUsage([]int{os.Getpid()})
	deadline := time.Now().Add(5 * time.Second)
	for procCPU(os.Getpid()) == w.before[0] && time.Now().Before(deadline) {
		// Spend some CPU, so that the reading moves.
		_ = json.Valid([]byte(`{"a":[1,2,3,{"b":"c"}]}`))
	}
	w.stop()
	u := w.usage(10)
	if len(u) != 1 || u[0].CPUS <= 0 || u[0].CPUPerRequestUS <= 0 || u[0].PeakRSSMiB <= 0 || u[0].Name == "" {
		t.Fatalf("usage %+v", u)
	}
	gone := startProcUsage([]int{1 << 30})
	gone.stop()
	if u := gone.usage(10); len(u) != 0 {
		t.Errorf("a process that does not exist measured as %+v", u)
	}
}

// With NoRollout the requests say "rollout": false: the bridge applies
// them and tracks no rollout, so no progress event is stored.
func TestRunWithoutRolloutTracking(t *testing.T) {
	url := startBridge(t)
	nc, client := newClient(t, url)
	s, err := Run(t.Context(), nc, client, Config{Requests: 40, Envs: 2, Apps: 4, NoRollout: true,
		Setup: true, Bucket: "environments", DupWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !s.OK || s.Results != 40 {
		t.Fatalf("summary %+v", s)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), events.StreamDeploy)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(events.PrefixDeployProgress+">"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(info.State.Subjects); n != 0 {
		t.Errorf("progress events stored on %d subjects: %v", n, info.State.Subjects)
	}
}
