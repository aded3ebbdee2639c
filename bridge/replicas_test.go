package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/bridge"
	"github.com/boreas/operator-bridge/events"
)

// startCluster starts a 3-node JetStream cluster in the process, routes on
// loopback, and returns its client URLs once JetStream answers.
func startCluster(t *testing.T) string {
	t.Helper()
	ports := []string{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, "nats://127.0.0.1:"+p)
	}
	var urls []string
	for i := range ports {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "bridge-test", Host: "127.0.0.1"},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}
		fmt.Sscan(ports[i], &opts.Cluster.Port)
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("server n%d not ready", i+1)
		}
		urls = append(urls, s.ClientURL())
	}
	url := strings.Join(urls, ",")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster's JetStream did not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// replicasOf reports the replica count of every stream and bucket the bridge
// makes: the four streams, the environments bucket and the order bucket.
func replicasOf(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	names := []string{"KV_environments", "KV_" + bridge.OrderBucket}
	for _, sc := range events.StreamConfigs() {
		names = append(names, sc.Name)
	}
	got := map[string]int{}
	for _, name := range names {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		got[name] = s.CachedInfo().Config.Replicas
	}
	return got
}

func TestReplicasOnACluster(t *testing.T) {
	url := startCluster(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	run := func(replicas int) {
		t.Helper()
		f, err := newFactory(t)
		if err != nil {
			t.Fatal(err)
		}
		bnc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer bnc.Close()
		b, err := bridge.New(bnc, f, bridge.Config{Replicas: replicas, EnvironmentsBucket: "environments", HealthInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		deadline := time.Now().Add(30 * time.Second)
		for !b.Ready() {
			select {
			case err := <-done:
				t.Fatalf("Run: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("bridge not ready on the cluster")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}

	// A fresh cluster gets what REPLICAS says.
	run(3)
	want := map[string]int{}
	for name := range replicasOf(t, js) {
		want[name] = 3
	}
	if diff := cmp.Diff(want, replicasOf(t, js)); diff != "" {
		t.Fatalf("replicas after a first start with Replicas 3 (-want +got):\n%s", diff)
	}
	// A bridge started later with another count keeps what exists.
	run(1)
	if diff := cmp.Diff(want, replicasOf(t, js)); diff != "" {
		t.Fatalf("replicas after a start with Replicas 1, not kept (-want +got):\n%s", diff)
	}
}

func TestReplicasOutOfRange(t *testing.T) {
	w := newWorld(t)
	f, err := newFactory(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{-1, 6} {
		if _, err := bridge.New(w.nc, f, bridge.Config{Replicas: n}); err == nil || !strings.Contains(err.Error(), "1 to 5") {
			t.Errorf("New with Replicas %d = %v, want an error saying 1 to 5", n, err)
		}
	}
}
