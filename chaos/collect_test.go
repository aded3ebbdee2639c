package chaos

import (
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/natsembed"
)

// TestReadDeployPastTheConsumerLimit reads the history back whether or not
// the stream takes one more consumer.
func TestReadDeployPastTheConsumerLimit(t *testing.T) {
	s, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ctx := t.Context()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cfg := events.StreamConfigs()[0]
	cfg.MaxConsumers = 1
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg, _, err := events.NewDeployRequest(LoadSource, "e", events.DeployRequest{App: "a", Version: fmt.Sprint("v", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	js.Publish(ctx, "deploy.other.e", []byte("{}")) // not read back
	var want []string
	for _, limited := range []bool{false, true} {
		if limited {
			if _, err := js.CreateConsumer(ctx, events.StreamDeploy, jetstream.ConsumerConfig{Durable: "fills-the-limit"}); err != nil {
				t.Fatal(err)
			}
		}
		reqs, res, _, err := ReadDeploy(ctx, js)
		if err != nil {
			t.Fatalf("limited %v: %v", limited, err)
		}
		var got []string
		for _, r := range reqs {
			got = append(got, fmt.Sprintf("%d %s %s", r.Seq, r.Version, r.Env))
		}
		if len(got) != 3 || len(res) != 0 || (want != nil && !slices.Equal(want, got)) {
			t.Errorf("limited %v: read %v and %d results; want 3 requests, as without the limit %v", limited, got, len(res), want)
		}
		want = got
	}
}
