//go:build chaos

package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterLeaderComesBack shuts down the node leading an R3 stream and
// starts it again on the same folder and ports: the stream keeps its
// messages and takes new ones throughout.
func TestClusterLeaderComesBack(t *testing.T) {
	c, err := StartCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := c.WaitMetaLeader(ctx); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		t.Helper()
		for i := range n {
			for {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "t.x", []byte{byte(i)})
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish: %v", err)
				}
			}
		}
	}
	publish(10)
	leader, err := c.WaitStreamLeader(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(leader)
	if c.Running(leader) {
		t.Fatal("the stopped node still runs")
	}
	publish(10) // a new leader takes them
	if l, err := c.WaitStreamLeader(ctx, "T"); err != nil || l == leader {
		t.Fatalf("leader after the stop: %d, %v; want another than %d", l, err, leader)
	}
	if err := c.Start(leader); err != nil {
		t.Fatalf("start again on the same folder and ports: %v", err)
	}
	publish(10)
	s, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	// The node that came back catches up with all 30.
	for {
		info, err := s.Info(ctx)
		if err == nil && info.State.Msgs == 30 && len(info.Cluster.Replicas) == 2 && allCurrent(info.Cluster.Replicas) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream after the restart: %+v, %v", info, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func allCurrent(ps []*jetstream.PeerInfo) bool {
	for _, p := range ps {
		if !p.Current || p.Offline {
			return false
		}
	}
	return true
}
