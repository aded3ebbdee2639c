package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Forwarding keeps each environment and app on one replica while its
// requests keep coming. Replicas share one durable consumer, so one key's
// requests reach every replica; the one that finds the key's lease held by
// another replica hands the request to the holder over core NATS instead of
// waiting for the lease. The holder runs it in its key's queue, stores its
// result, and answers how to settle the message; the forwarding replica
// keeps the message in progress meanwhile and settles it as told. Nothing
// about the message changes hands but the work: its ack stays with the
// replica JetStream delivered it to, and is sent only after the result is
// stored, so a holder that dies or does not answer in time only means a nak
// and a redelivery (which finds the result if it was stored).
//
// Only first deliveries are forwarded, and a forwarded request is never
// forwarded again: a redelivery takes the ordinary way (wait for the lease).

// ForwardPrefix is the subject prefix of forwarded requests; a replica
// listens on ForwardPrefix + its own token.
const ForwardPrefix = "operator-bridge.forward."

// forwardTimeout bounds how long a forwarding replica waits for the holder.
const forwardTimeout = 30 * time.Second

// Headers of a forwarded request, beside the request's own.
const (
	hdrFwdSubject   = "Operator-Bridge-Fwd-Subject"
	hdrFwdSeq       = "Operator-Bridge-Fwd-Seq"
	hdrFwdStored    = "Operator-Bridge-Fwd-Stored"
	hdrFwdDelivered = "Operator-Bridge-Fwd-Delivered"
)

// forward hands j to the replica listening on subject and settles j's
// message as that replica answers, on a goroutine of its own: the waiting
// takes no worker.
func (b *Bridge) forward(ctx context.Context, j *deployJob, subject string) {
	h := nats.Header{}
	for k, v := range j.msg.Headers() {
		h[k] = append([]string(nil), v...)
	}
	h.Set(hdrFwdSubject, j.msg.Subject())
	h.Set(hdrFwdSeq, strconv.FormatUint(j.meta.Sequence.Stream, 10))
	h.Set(hdrFwdStored, j.meta.Timestamp.Format(time.RFC3339Nano))
	h.Set(hdrFwdDelivered, strconv.FormatUint(j.meta.NumDelivered, 10))
	out := &nats.Msg{Subject: subject, Header: h, Data: j.msg.Data()}
	b.metrics.forwarded.Inc()
	b.workers.Go(func() {
		defer b.release(j.msg)
		rctx, cancel := context.WithTimeout(ctx, forwardTimeout)
		resp, err := b.nc.RequestMsgWithContext(rctx, out)
		cancel()
		if err != nil {
			// The holder is gone or slow: the request comes back and takes
			// the ordinary way.
			b.order.forgetKey(j.key)
			_ = j.msg.NakWithDelay(retryBase)
			b.logDeploy(ctx, j, slog.LevelInfo, "forward failed; will retry", "to", subject, "err", err)
			return
		}
		settleAs(j.msg, string(resp.Data))
	})
}

// settleAs does with m what a holder's answer says.
func settleAs(m jetstream.Msg, answer string) {
	verb, arg, _ := strings.Cut(answer, " ")
	switch verb {
	case "ack":
		_ = m.Ack()
	case "term":
		_ = m.TermWithReason(arg)
	case "nak":
		if d, err := time.ParseDuration(arg); err == nil {
			_ = m.NakWithDelay(d)
			return
		}
		_ = m.Nak()
	default:
		_ = m.NakWithDelay(retryBase)
	}
}

// forwarded is a request handed over by another replica: a jetstream.Msg
// whose settling is sent back as the answer, once.
type forwarded struct {
	req  *nats.Msg
	meta jetstream.MsgMetadata
	subj string
	once sync.Once
}

func newForwarded(req *nats.Msg) (*forwarded, error) {
	f := &forwarded{req: req, subj: req.Header.Get(hdrFwdSubject)}
	seq, err1 := strconv.ParseUint(req.Header.Get(hdrFwdSeq), 10, 64)
	stored, err2 := time.Parse(time.RFC3339Nano, req.Header.Get(hdrFwdStored))
	n, err3 := strconv.ParseUint(req.Header.Get(hdrFwdDelivered), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil || f.subj == "" {
		return nil, fmt.Errorf("forwarded request without its delivery: %v", err)
	}
	f.meta = jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: seq}, NumDelivered: n, Timestamp: stored, Consumer: DeployConsumer}
	return f, nil
}

func (f *forwarded) answer(a string) error {
	var err error
	f.once.Do(func() { err = f.req.Respond([]byte(a)) })
	return err
}

func (f *forwarded) Metadata() (*jetstream.MsgMetadata, error) { m := f.meta; return &m, nil }
func (f *forwarded) Data() []byte                              { return f.req.Data }
func (f *forwarded) Headers() nats.Header                      { return f.req.Header }
func (f *forwarded) Subject() string                           { return f.subj }
func (f *forwarded) Reply() string                             { return "" }
func (f *forwarded) Ack() error                                { return f.answer("ack") }
func (f *forwarded) DoubleAck(context.Context) error           { return f.answer("ack") }
func (f *forwarded) Nak() error                                { return f.answer("nak") }
func (f *forwarded) NakWithDelay(d time.Duration) error        { return f.answer("nak " + d.String()) }
func (f *forwarded) Term() error                               { return f.answer("term") }
func (f *forwarded) TermWithReason(r string) error             { return f.answer("term " + r) }

// InProgress does nothing: the forwarding replica keeps the message in
// progress.
func (f *forwarded) InProgress() error { return nil }

// forwards runs the requests other replicas forward to this one.
type forwards struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// listen takes forwarded requests on subject and hands them to workers
// running under work. The returned stop ends that and returns once every
// request taken has been handed over.
func (b *Bridge) listen(work context.Context, subject string) (stop func(), err error) {
	var fw forwards
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		fw.mu.Lock()
		if fw.closed || b.isStopping() {
			fw.mu.Unlock()
			_ = m.Respond([]byte("nak"))
			return
		}
		fw.wg.Add(1)
		fw.mu.Unlock()
		defer fw.wg.Done()
		f, err := newForwarded(m)
		if err != nil {
			_ = m.Respond([]byte("nak"))
			b.log.Warn("forwarded request", "err", err)
			return
		}
		b.hold(f)
		select {
		case b.sem <- struct{}{}:
		case <-b.stopping:
			_ = f.Nak()
			b.release(f)
			return
		}
		b.workers.Go(func() {
			defer func() { <-b.sem }()
			b.handleDeploy(work, f)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("forwarded requests: %w", err)
	}
	return func() {
		_ = sub.Unsubscribe()
		fw.mu.Lock()
		fw.closed = true
		fw.mu.Unlock()
		fw.wg.Wait()
	}, nil
}
