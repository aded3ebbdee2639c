package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// storedEvent is an event found in a stream: its headers, and when
// JetStream stored it.
type storedEvent struct {
	header nats.Header
	at     time.Time
}

// answered looks for the event with Nats-Msg-Id id on subject, stored after
// the request at sequence after, and returns it (nil when the stream does
// not hold it). It serves redeliveries only (the rare path): a request
// whose result was stored but whose ack was lost must not get a second
// result, however long after the duplicate window it comes back.
func (b *Bridge) answered(ctx context.Context, stream, subject, id string, after uint64) (*storedEvent, error) {
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
		return nil, fmt.Errorf("%s: %w", subject, err)
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
			return nil, fmt.Errorf("%s: %w", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, merr := m.Metadata()
			if m.Headers().Get(jetstream.MsgIDHeader) == id {
				found := &storedEvent{header: m.Headers()}
				if merr == nil {
					found.at = meta.Timestamp
				}
				return found, nil
			}
			if merr == nil && meta.NumPending == 0 {
				return nil, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w", subject, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: %d messages to look through did not come", subject, pending)
		}
		pending -= uint64(min(uint64(n), pending))
	}
	return nil, nil
}

// unstored remembers the deliveries this replica nak'd without trying to
// store a result (a retryable failure, a wait) while knowing that none was
// stored before (a first delivery, or one that looked): when the next
// delivery of the same message comes back here, nobody can have stored its
// result in between, and it need not look. Everything else looks, and so
// does the delivery after a look that failed.
type unstored struct {
	mu sync.Mutex
	m  map[uint64]uint64 // stream sequence -> delivery count nak'd
}

func newUnstored() *unstored { return &unstored{m: make(map[uint64]uint64)} }

// nakd records that delivery n of the message at seq was nak'd unstored.
func (u *unstored) nakd(seq, n uint64) {
	u.mu.Lock()
	if len(u.m) >= maxCached {
		clear(u.m) // forgetting only costs a look
	}
	u.m[seq] = n
	u.mu.Unlock()
}

// follows reports whether delivery n of seq comes right after one this
// replica nak'd unstored.
func (u *unstored) follows(seq, n uint64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return n > 1 && u.m[seq] == n-1
}

// done forgets seq.
func (u *unstored) done(seq uint64) {
	u.mu.Lock()
	delete(u.m, seq)
	u.mu.Unlock()
}
