package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotPublished is wrapped by Batch.Publish's error when the request could
// not be handed to NATS; the batch counts it as a publish error.
var ErrNotPublished = errors.New("events: not published")

// Batch publishes many deploy requests without waiting for each, and follows
// their results as the DEPLOY stream stores them: every result of every
// request, a second one of the same request too, so that a duplicate shows.
// It is what a load generator needs (operator-bridge bench): where Deploy
// costs a waiter and a decoded, validated result per call, a Batch reads all
// its results through one ordered consumer and takes of each only its
// request id and outcome.
//
// A Batch's requests have the ids <ID>-0, <ID>-1, ... in the order Publish
// is called. It is safe for concurrent use; Stop it before closing the
// connection.
type Batch struct {
	js       jetstream.JetStream // its own: the async publish error handler and pending limit belong to it
	enc      encoder
	source   string
	id       string
	prefix   string // id + "-"
	onResult func(BatchResult)

	next   atomic.Int64   // index of the next request
	sent   []int64        // unix ns when request i was published; 0 before, or when publishing failed
	counts []atomic.Int32 // results of request i
	slots  chan struct{}  // the in-flight limit: one token per request awaiting its first result

	published, pubErrors, results, dups atomic.Int64
	sealed                              atomic.Bool // Answered was called: no more Publish
	answered                            chan struct{}
	answeredOnce                        sync.Once

	cc       jetstream.ConsumeContext
	stopOnce sync.Once
}

// BatchOptions configures a Batch.
type BatchOptions struct {
	// Size is how many requests the batch publishes at most (required).
	Size int
	// MaxInFlight bounds the requests published and still waiting for
	// their first result: Publish waits while there are that many
	// (default 1000). Publishes waiting for the stream's acknowledgement
	// are bounded by it too, or by 256 if that is more.
	MaxInFlight int
	// ID names the batch and prefixes its requests' ids (default "batch-"
	// and 12 random hexadecimal digits). Results whose request id has the
	// prefix are taken for the batch's own: it must be unique.
	ID string
	// OnResult, when set, is called with every result of one of the
	// batch's requests, in the order the stream stored them, from one
	// goroutine, before Stats and Answered count it. It holds up the next
	// result: it must return quickly.
	OnResult func(BatchResult)
}

// BatchResult is a result of one of a Batch's requests.
type BatchResult struct {
	Index     int    // the request's place in the batch: 0 for the first published
	RequestID string // <batch ID>-<Index>
	Outcome   Outcome
	// Count is how many results the request has had, this one included: 1
	// for the first; more is a duplicate.
	Count    int
	Received time.Time
	// Latency is from the request's publishing to this result (0 when the
	// batch counted the request's publishing as failed).
	Latency time.Duration
}

// BatchStats counts what a Batch has done so far.
type BatchStats struct {
	Published     int64 // handed to NATS and not refused (some may still wait for the stream's acknowledgement)
	PublishErrors int64 // not handed to NATS, or refused by the stream
	Results       int64 // requests with a result
	Duplicates    int64 // results after a request's first
	InFlight      int   // published and waiting for their first result
}

// NewBatch starts a batch: it reads the deploy results stored from now on
// (deploy.result.> in DEPLOY) before it returns, so that no result of the
// batch's requests is missed. The error wraps jetstream.ErrStreamNotFound
// when there is no DEPLOY stream.
func (c *Client) NewBatch(ctx context.Context, opts BatchOptions) (*Batch, error) {
	b, err := newBatch(c.enc, c.source, opts)
	if err != nil {
		return nil, err
	}
	b.js, err = jetstream.New(c.nc, jetstream.WithPublishAsyncErrHandler(b.onPublishError),
		jetstream.WithPublishAsyncMaxPending(max(cap(b.slots), 256)))
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	cons, err := c.js.OrderedConsumer(ctx, StreamDeploy, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{PrefixDeployResult + ">"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("batch: results: %w", err)
	}
	b.cc, err = cons.Consume(func(m jetstream.Msg) { b.onMessage(m.Headers(), m.Data(), time.Now()) },
		jetstream.PullHeartbeat(followHeartbeat))
	if err != nil {
		return nil, fmt.Errorf("batch: results: %w", err)
	}
	return b, nil
}

// newBatch is a Batch without its NATS side.
func newBatch(enc encoder, source string, opts BatchOptions) (*Batch, error) {
	if opts.Size <= 0 {
		return nil, fmt.Errorf("batch: size %d is not positive", opts.Size)
	}
	if opts.MaxInFlight < 0 {
		return nil, fmt.Errorf("batch: in-flight limit %d is negative", opts.MaxInFlight)
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = 1000
	}
	if opts.ID == "" {
		opts.ID = "batch-" + strings.ReplaceAll(enc.newID(), "-", "")[:12]
	}
	return &Batch{
		enc: enc, source: source, id: opts.ID, prefix: opts.ID + "-", onResult: opts.OnResult,
		sent:     make([]int64, opts.Size),
		counts:   make([]atomic.Int32, opts.Size),
		slots:    make(chan struct{}, opts.MaxInFlight),
		answered: make(chan struct{}),
	}, nil
}

// ID is the batch's id, the prefix of its requests' ids.
func (b *Batch) ID() string { return b.id }

// Publish publishes the batch's next deploy request for env without waiting
// for the stream to store it, once fewer than MaxInFlight requests wait for
// their result (or returns ctx's error). It returns the request's id; opts
// may set anything but the id. A request that cannot be encoded is an error
// and is not counted; one NATS does not take is counted as a publish error
// and its error wraps ErrNotPublished; one the stream refuses later is
// counted then. Publish must not be called after Answered.
func (b *Batch) Publish(ctx context.Context, env string, req DeployRequest, opts ...EventOption) (string, error) {
	if b.next.Load() >= int64(len(b.sent)) {
		return "", b.full()
	}
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	i := int(b.next.Add(1) - 1)
	if i >= len(b.sent) { // the last place went to another caller
		b.release()
		return "", b.full()
	}
	id := b.prefix + strconv.Itoa(i)
	msg, _, err := b.enc.deployRequest(b.source, env, req, append(opts[:len(opts):len(opts)], WithID(id))...)
	if err != nil {
		b.release()
		return "", err
	}
	atomic.StoreInt64(&b.sent[i], time.Now().UnixNano())
	if _, err := b.js.PublishMsgAsync(msg); err != nil {
		atomic.StoreInt64(&b.sent[i], 0)
		b.pubErrors.Add(1)
		b.release()
		return id, fmt.Errorf("%w: %s: %w", ErrNotPublished, msg.Subject, err)
	}
	b.published.Add(1)
	return id, nil
}

func (b *Batch) full() error {
	return fmt.Errorf("batch %s: all %d requests published", b.id, len(b.sent))
}

// onPublishError counts a request the stream refused (or did not confirm).
func (b *Batch) onPublishError(_ jetstream.JetStream, m *nats.Msg, _ error) {
	if i, ok := b.index(m.Header.Get(HeaderMsgID)); ok {
		atomic.StoreInt64(&b.sent[i], 0)
	}
	b.pubErrors.Add(1)
	b.published.Add(-1)
	b.release()
	b.checkAnswered()
}

// Acked is closed once every request published so far has been
// acknowledged by the stream or counted as a publish error.
func (b *Batch) Acked() <-chan struct{} { return b.js.PublishAsyncComplete() }

// Answered ends the batch's publishing and returns a channel closed once
// every request published and not refused has had a result. A request whose
// acknowledgement was lost comes again after the bridge's ack wait: watch
// for duplicates that long after it is closed.
func (b *Batch) Answered() <-chan struct{} {
	b.sealed.Store(true)
	b.checkAnswered()
	return b.answered
}

func (b *Batch) checkAnswered() {
	// After Answered, Published only falls and Results only rises.
	if b.sealed.Load() && b.results.Load() >= b.published.Load() {
		b.answeredOnce.Do(func() { close(b.answered) })
	}
}

// Stats returns the batch's counts so far.
func (b *Batch) Stats() BatchStats {
	return BatchStats{
		Published: max(b.published.Load(), 0), PublishErrors: b.pubErrors.Load(),
		Results: b.results.Load(), Duplicates: b.dups.Load(), InFlight: len(b.slots),
	}
}

// Stop stops reading results; OnResult is not called once it has returned.
func (b *Batch) Stop() {
	b.stopOnce.Do(func() {
		if b.cc != nil {
			b.cc.Stop()
			<-b.cc.Closed()
		}
	})
}

func (b *Batch) release() {
	select {
	case <-b.slots:
	default:
	}
}

// index is the place in the batch of the request with id, if it is one of
// the batch's.
func (b *Batch) index(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, b.prefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || i >= len(b.sent) {
		return 0, false
	}
	return i, true
}

// onMessage counts one deploy result message received at now.
func (b *Batch) onMessage(h nats.Header, body []byte, now time.Time) {
	id, outcome, ok := peekDeployResult(h, body)
	if !ok {
		return
	}
	i, ok := b.index(id)
	if !ok {
		return // not ours
	}
	r := BatchResult{Index: i, RequestID: id, Outcome: outcome, Count: int(b.counts[i].Add(1)), Received: now}
	if s := atomic.LoadInt64(&b.sent[i]); s > 0 {
		r.Latency = time.Duration(now.UnixNano() - s)
	}
	if b.onResult != nil {
		b.onResult(r)
	}
	if r.Count > 1 {
		b.dups.Add(1)
		return
	}
	b.results.Add(1)
	b.release()
	b.checkAnswered()
}

// peekDeployResult reads a deploy result's request id and outcome. A
// structured-mode event, what the bridge publishes, is read for those
// alone, without the CloudEvent decoding and the schema; one in binary mode
// is decoded in full.
func peekDeployResult(h nats.Header, body []byte) (string, Outcome, bool) {
	ct, hasID := scanHeaders(h)
	if mediaType(ct) != ContentTypeStructured && hasID {
		e, r, err := DecodeDeployResult(h, body)
		if err != nil {
			return "", "", false
		}
		return resultRequestID(e.Extensions(), r), r.Outcome, true
	}
	var ev struct {
		RequestID string `json:"requestid"`
		Data      struct {
			RequestID string  `json:"request_id"`
			Outcome   Outcome `json:"outcome"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &ev) != nil {
		return "", "", false
	}
	id := ev.RequestID
	if id == "" {
		id = ev.Data.RequestID
	}
	if id == "" {
		return "", "", false
	}
	return id, ev.Data.Outcome, true
}

// resultRequestID is the id of the request a deploy result answers: its
// requestid extension, else the data's request_id.
func resultRequestID(ext map[string]any, r DeployResult) string {
	if id, _ := ext[ExtRequestID].(string); id != "" {
		return id
	}
	return r.RequestID
}
