package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Deadlines of the bridge's own waits on NATS.
const (
	// publishTimeout bounds one try to store an event; storeTries tries in
	// all, so a result waits out a stream leader election but never holds a
	// request near its ack wait.
	publishTimeout = 4 * time.Second
	storeTries     = 4
	// scanTimeout bounds the search for a stored result.
	scanTimeout = 10 * time.Second
)

// store publishes an event to its stream and waits for JetStream to confirm
// it, within a deadline. A try whose confirmation does not come (a stream
// leader lost, say) is published again under the same Nats-Msg-Id, which
// the duplicate window stores once.
func (b *Bridge) store(ctx context.Context, out *nats.Msg) error {
	var err error
	for try := range storeTries {
		if try > 0 && !sleep(ctx, time.Duration(try)*250*time.Millisecond) {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		_, err = b.js.PublishMsg(pctx, out)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// answered reports whether the stream already holds the event with
// Nats-Msg-Id id on subject, stored after the request at sequence after. It
// serves redeliveries only (the rare path): a request whose result was
// stored but whose ack was lost must not get a second result, however long
// after the duplicate window it comes back.
func (b *Bridge) answered(ctx context.Context, stream, subject, id string, after uint64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, scanTimeout)
	defer cancel()
	// A plain ephemeral consumer: an ordered one would be made anew at
	// every fetch.
	cons, err := b.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Name:          "operator-bridge-look-" + nats.NewInbox()[len(nats.InboxPrefix):],
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   after + 1,
		AckPolicy:     jetstream.AckNonePolicy,
		HeadersOnly:   true,
		MemoryStorage: true,
		Replicas:      1,
		// Deleted below; this only bounds one left behind by a lost delete.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", subject, err)
	}
	defer func() {
		// Redeliveries can come by the hundred after a fault: never leave
		// their consumers to pile up against the stream's limits.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
		_ = b.js.DeleteConsumer(dctx, stream, cons.CachedInfo().Name)
		cancel()
	}()
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return false, fmt.Errorf("%s: %w", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if m.Headers().Get(jetstream.MsgIDHeader) == id {
				return true, nil
			}
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				return false, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return false, fmt.Errorf("%s: %w", subject, err)
		}
		if n == 0 {
			return false, fmt.Errorf("%s: %d messages to look through did not come", subject, pending)
		}
		pending -= uint64(min(uint64(n), pending))
	}
	return false, nil
}
