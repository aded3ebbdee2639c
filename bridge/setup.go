package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/boreas/operator-bridge/events"
)

// ConsumerConfigs are the durable consumers the bridge creates, the same as
// deploy/nats/consumer-*.json.
func ConsumerConfigs(ackWait time.Duration, maxInFlight int) map[string]jetstream.ConsumerConfig {
	// Requests waiting out a NakWithDelay still count against MaxAckPending,
	// so it is well above MaxInFlight: an operator that is down for the whole
	// retry window must not stop other environments' requests.
	maxAckPending := max(20_000, 4*maxInFlight)
	return map[string]jetstream.ConsumerConfig{
		events.StreamDeploy: {
			Durable:       DeployConsumer,
			Description:   "operator-bridge: deploy requests",
			FilterSubject: "deploy.request.>",
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxDeliver:    -1,
			MaxAckPending: maxAckPending,
		},
		events.StreamStatus: {
			Durable:       StatusConsumer,
			Description:   "operator-bridge: status queries",
			FilterSubject: "status.query.>",
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxDeliver:    -1,
			MaxAckPending: maxAckPending,
		},
	}
}

// OrderStateTTL is how long the order state of an environment and app is
// kept after its last request.
const OrderStateTTL = 8 * 24 * time.Hour

// OrderBucketConfig is the bucket of the per environment-and-app order state.
func OrderBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      OrderBucket,
		Description: "operator-bridge: last applied request and lease per environment and app",
		History:     1,
		// An idle key's state goes after OrderStateTTL, which outlasts the
		// DEPLOY stream's 7 days: any request that can still be replayed
		// from the stream finds what was applied after it.
		TTL:     OrderStateTTL,
		Storage: jetstream.FileStorage,
	}
}

// EnvironmentsBucketConfig is the bucket of environments (docs/operators.md, Environments).
func EnvironmentsBucketConfig(name string) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "operator-bridge: environments (key = environment ID)",
		History:     5,
		Storage:     jetstream.FileStorage,
	}
}

// setupStreams creates or updates the four streams and the environments
// bucket, or, when the bridge does not manage them, checks they exist.
func (b *Bridge) setupStreams(ctx context.Context) error {
	for _, sc := range events.StreamConfigs() {
		if !b.cfg.ExternalStreams {
			// An update keeps the replica count the operators chose (say 3 on
			// a cluster); the contract's definition leaves it open.
			sc.Replicas = b.cfg.Replicas
			if s, err := b.js.Stream(ctx, sc.Name); err == nil {
				sc.Replicas = s.CachedInfo().Config.Replicas
			}
			if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
				return fmt.Errorf("stream %s: %w", sc.Name, err)
			}
			continue
		}
		if _, err := b.js.Stream(ctx, sc.Name); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("stream %s does not exist and MANAGE_STREAMS is off: create it (nats stream add --config deploy/nats/stream-%s.json) or turn MANAGE_STREAMS on", sc.Name, sc.Name)
			}
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	if name := b.cfg.EnvironmentsBucket; name != "" {
		var err error
		if !b.cfg.ExternalStreams {
			b.envKV, err = b.js.CreateOrUpdateKeyValue(ctx, b.keepReplicas(ctx, EnvironmentsBucketConfig(name)))
		} else {
			b.envKV, err = b.js.KeyValue(ctx, name)
			if errors.Is(err, jetstream.ErrBucketNotFound) {
				return fmt.Errorf("key-value bucket %s does not exist and MANAGE_STREAMS is off: create it (nats kv add %s) or turn MANAGE_STREAMS on", name, name)
			}
		}
		if err != nil {
			return fmt.Errorf("key-value bucket %s: %w", name, err)
		}
	}
	// The order state is the bridge's own, created whatever MANAGE_STREAMS says.
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, b.keepReplicas(ctx, OrderBucketConfig()))
	if err != nil {
		return fmt.Errorf("key-value bucket %s: %w", OrderBucket, err)
	}
	b.order = newOrderBook(kv, b.owner, b.cfg.OperatorTimeout)
	b.order.forward = b.inbox
	return nil
}

// keepReplicas gives cfg the replica count of the bucket if it exists, so
// that starting the bridge never scales a bucket, and Config.Replicas if not.
func (b *Bridge) keepReplicas(ctx context.Context, cfg jetstream.KeyValueConfig) jetstream.KeyValueConfig {
	cfg.Replicas = b.cfg.Replicas
	if kv, err := b.js.KeyValue(ctx, cfg.Bucket); err == nil {
		if st, err := kv.Status(ctx); err == nil {
			if s, ok := st.(*jetstream.KeyValueBucketStatus); ok {
				cfg.Replicas = s.StreamInfo().Config.Replicas
			}
		}
	}
	return cfg
}

func (b *Bridge) ensureConsumer(ctx context.Context, stream string) (jetstream.Consumer, error) {
	cfg := ConsumerConfigs(b.cfg.AckWait, b.cfg.MaxInFlight)[stream]
	c, err := b.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return c, nil
}
