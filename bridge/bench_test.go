package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/boreas/operator-bridge/bench/mix"
	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed"
	"github.com/boreas/operator-bridge/operator"
	"github.com/boreas/operator-bridge/operator/operatortest"
)

// BenchmarkEndToEnd pushes b.N deploy requests of make bench's realistic
// mix (bench/mix) through a real JetStream and waits for every result: the
// bridge with the mock operator and with an HTTP operator (operatortest),
// beside a bare consume → call → publish loop measured the same way, so the
// bridge's cost reads as a ratio of the bare loop's ns/op. The bridge's
// runs also report the order and rollout buckets' writes per request.
func BenchmarkEndToEnd(b *testing.B) {
	for _, op := range []string{"mock", "http"} {
		b.Run("bare/"+op, func(b *testing.B) { benchEndToEnd(b, op, false) })
		b.Run("bridge/"+op, func(b *testing.B) { benchEndToEnd(b, op, true) })
	}
}

func benchEndToEnd(b *testing.B, op string, full bool) {
	dir := b.TempDir()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	// Each environment has an operator of its own, as clusters do: one
	// operator's status of an app cannot tell environments apart.
	envs, apps := mix.Names("bench-", 4), mix.Names("app-", 50)
	typ, urls := "mock", map[string]string{}
	var list []string
	for _, id := range envs {
		if op == "http" {
			fake := operatortest.NewServer(operator.Kubernetes)
			defer fake.Close()
			typ, urls[id] = "kubernetes", fake.URL
		}
		list = append(list, fmt.Sprintf(`{"id":%q,"type":%q,"operator_url":%q}`, id, typ, urls[id]))
	}
	file := filepath.Join(dir, "envs.json")
	if err := os.WriteFile(file, []byte("["+strings.Join(list, ",")+"]"), 0o600); err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	for _, sc := range events.StreamConfigs() {
		if _, err := js.CreateStream(b.Context(), sc); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	done := make(chan struct{})
	if full {
		f, err := operator.NewFactory(operator.DefaultSettings())
		if err != nil {
			b.Fatal(err)
		}
		bnc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer bnc.Close()
		br, err := bridge.New(bnc, f, bridge.Config{EnvironmentsFile: file, EnvironmentsBucket: "environments",
			HealthInterval: time.Hour, Registerer: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		go func() { _ = br.Run(ctx); close(done) }()
		for !br.Ready() {
			time.Sleep(5 * time.Millisecond)
		}
	} else {
		go func() { bareLoop(ctx, srv.ClientURL(), urls); close(done) }()
	}

	var got atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	sub, err := nc.Subscribe("deploy.result.>", func(*nats.Msg) {
		if got.Add(1) == target {
			close(all)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	msgs := make([]*nats.Msg, b.N)
	traffic := mix.New(envs, apps, true, time.Now())
	for i := range msgs {
		env, req := traffic.Request(i)
		if msgs[i], _, err = events.NewDeployRequest("/bench", env, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for _, m := range msgs {
		// A busy machine may take long to confirm: wait rather than fail.
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d of %d results", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	b.StopTimer()
	if full {
		// Each write to the order bucket is a message of its stream.
		s, err := js.Stream(b.Context(), "KV_"+bridge.OrderBucket)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.CachedInfo().State.LastSeq)/float64(b.N), "order-writes/op")
		r, err := js.Stream(b.Context(), "KV_"+bridge.RolloutBucket)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.CachedInfo().State.LastSeq)/float64(b.N), "rollout-writes/op")
	}
	cancel()
	<-done
}

// bareLoop is the bare minimum of the job, as bench/baseline does it: the
// operator of each environment in opURLs is called (none when empty).
func bareLoop(ctx context.Context, url string, opURLs map[string]string) {
	nc, err := nats.Connect(url)
	if err != nil {
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cons, err := js.CreateOrUpdateConsumer(ctx, events.StreamDeploy, jetstream.ConsumerConfig{
		Durable: "bare", FilterSubject: "deploy.request.>", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000})
	if err != nil {
		return
	}
	httpc := operator.NewHTTPClient(nil) // the bridge's pool
	sem := make(chan struct{}, 256)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			var req struct {
				ID   string `json:"id"`
				Data struct {
					App, Version string
					Deployments  json.RawMessage
				}
			}
			_ = json.Unmarshal(m.Data(), &req)
			env := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
			if opURL, ok := opURLs[env]; ok {
				deployments := req.Data.Deployments
				if len(deployments) == 0 {
					deployments, _ = json.Marshal([]map[string]any{{"version": req.Data.Version, "percent": 1}})
				}
				body, _ := json.Marshal(map[string]any{"app": req.Data.App, "version": req.Data.Version, "deployments": deployments})
				if resp, err := httpc.Post(opURL+"/api/apply", "application/json", bytes.NewReader(body)); err == nil {
					var ar struct{ Success bool }
					_ = json.NewDecoder(resp.Body).Decode(&ar)
					resp.Body.Close()
				}
			}
			out, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": req.ID + "-r", "type": events.TypeDeployResult,
				"source": "/bare", "requestid": req.ID, "data": map[string]any{"request_id": req.ID, "outcome": "succeeded"}})
			fut, err := js.PublishMsgAsync(&nats.Msg{Subject: events.DeployResultSubject(env), Data: out})
			if err != nil {
				return
			}
			select {
			case <-fut.Ok():
				_ = m.Ack()
			case <-fut.Err():
			}
		}()
	}, jetstream.PullMaxMessages(256))
	if err != nil {
		return
	}
	<-ctx.Done()
	cc.Stop()
}

// BenchmarkStartEnvironments measures a bridge's start, from Run to ready,
// with 10,000 and 100,000 environments (on 10 operator endpoints) in its
// file, or as entries of its environments bucket.
func BenchmarkStartEnvironments(b *testing.B) {
	for _, source := range []string{"file", "bucket"} {
		for _, n := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/%d", source, n), func(b *testing.B) { benchStart(b, n, source == "bucket") })
		}
	}
}

func benchStart(b *testing.B, n int, bucket bool) {
	dir := b.TempDir()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	record := func(i int) string {
		return fmt.Sprintf(`{"id":"env-%06d","type":"k8s","operator_url":"http://127.0.0.1:%d"}`, i, 20000+i%10)
	}
	file := ""
	if bucket {
		fillBucket(b, srv.ClientURL(), n, record)
	} else {
		var list []string
		for i := range n {
			list = append(list, record(i))
		}
		file = filepath.Join(dir, "envs.json")
		if err := os.WriteFile(file, []byte("["+strings.Join(list, ",")+"]"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		f, _ := operator.NewFactory(operator.DefaultSettings())
		br, err := bridge.New(nc, f, bridge.Config{EnvironmentsFile: file, EnvironmentsBucket: "environments",
			HealthInterval: time.Hour, Registerer: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan struct{})
		go func() { _ = br.Run(ctx); close(done) }()
		for !br.Ready() {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		if got := br.Manager().Len(); got != n {
			b.Fatalf("%d environments, want %d", got, n)
		}
		cancel()
		<-done
		nc.Close()
		b.StartTimer()
	}
}

// fillBucket puts n environments (record(i) each) into the environments
// bucket.
func fillBucket(b *testing.B, url string, n int, record func(int) string) {
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateKeyValue(b.Context(), bridge.EnvironmentsBucketConfig("environments")); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := js.PublishAsync(fmt.Sprintf("$KV.environments.env-%06d", i), []byte(record(i))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("bucket not filled")
	}
}
