package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
)

// deployJob is one delivery of a deploy request on its way to a result.
type deployJob struct {
	msg   jetstream.Msg
	meta  *jetstream.MsgMetadata
	start time.Time
	env   events.Envelope
	req   events.DeployRequest
	res   events.DeployResult
	entry operator.Entry
	key   string // order key: environment and app
	// waited says what held the request back when it did not reach the
	// operator, for the message of a request whose retry window ends so.
	waited string
	// holder is where to hand the request, when another replica holds its key.
	holder string
	// applied: an operator call applied it (rollout tracking follows it).
	applied bool
	// ensure: an earlier delivery of this message applied it, and may have
	// ended before its rollout was tracked; tracking makes sure it is, once.
	ensure bool
	// resultAt is when its result was stored, for a redelivery that found
	// its result stored.
	resultAt time.Time
	// unsure: the look for its stored result failed, so an earlier
	// delivery's result may be stored; the next delivery must look again.
	unsure bool
	// span is the request's consumer span; nil with tracing off.
	span trace.Span
}

// traced is ctx carrying j's span, or ctx itself with tracing off.
func (j *deployJob) traced(ctx context.Context) context.Context {
	if j.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, j.span)
}

// Key queue bounds: what comes beyond them is nak'd with keyFullDelay.
const (
	keyQueueLen  = 32
	keyFullDelay = time.Second
)

// handleDeploy handles one delivery of a deploy request; see the package
// documentation for what is done with the message. A request whose key is
// busy waits in the key's queue, and the key's owner runs it later.
func (b *Bridge) handleDeploy(ctx context.Context, m jetstream.Msg) {
	j := &deployJob{msg: m, start: time.Now()}
	meta, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to acknowledge or answer.
		b.log.Error("deploy request without metadata", "subject", m.Subject(), "err", err)
		b.release(m)
		return
	}
	j.meta = meta
	if meta.NumDelivered > 1 {
		b.metrics.redeliveries.WithLabelValues(events.TypeDeployRequest).Inc()
	}
	f, hint := b.prepare(ctx, j)
	if f != routed {
		b.settleDeploy(ctx, j, f, hint)
		return
	}
	switch b.keys.enter(j.key, j) {
	case queued:
		return
	case full:
		b.failWith(&j.res, fmt.Errorf("%d requests of %s/%s already wait in this replica", b.keys.perKey, j.res.Environment, j.res.App))
		j.waited = "the queue of its environment and app"
		b.settleDeploy(ctx, j, blocked, keyFullDelay)
		return
	}
	b.runKey(ctx, j)
}

// runKey runs j, then every request that queued behind it for its key.
func (b *Bridge) runKey(ctx context.Context, j *deployJob) {
	key := j.key
	for ; j != nil; j = b.keys.next(key) {
		if b.isStopping() {
			b.settleDeploy(ctx, j, notStarted, 0)
			continue
		}
		f, hint := b.ordered(ctx, j)
		if f == handedOver {
			b.forward(ctx, j, j.holder)
			endSpan(j.span, nil)
			continue
		}
		b.settleDeploy(ctx, j, f, hint)
	}
}

// prepare decodes, checks and routes a request, filling j.res, and says what
// it found: routed when the request needs its key's turn.
func (b *Bridge) prepare(ctx context.Context, j *deployJob) (finding, time.Duration) {
	m := j.msg
	if err := checkSubject(m.Subject(), events.PrefixDeployRequest); err != nil {
		j.res.Message = err.Error()
		return unidentifiable, 0
	}
	env, req, err := events.DecodeDeployRequest(m.Subject(), m.Headers(), m.Data())
	j.env, j.req = env, req
	_, j.span = b.startRequest(ctx, spanDeploy, env)
	j.res = events.DeployResult{RequestID: env.ID, Environment: env.Environment, App: req.App, Version: req.Version}
	if errors.Is(err, events.ErrUnidentifiable) {
		j.res.Message = err.Error()
		return unidentifiable, 0
	}
	if j.meta.NumDelivered > 1 && !b.unstored.follows(j.meta.Sequence.Stream, j.meta.NumDelivered) {
		// A redelivery may come after its result was stored (the ack was
		// lost), later than the duplicate window: look before doing anything.
		stored, serr := b.answered(ctx, events.StreamDeploy, events.DeployResultSubject(env.Environment),
			events.ResultID(env.ID, j.meta.Sequence.Stream), j.meta.Sequence.Stream)
		if serr != nil {
			b.failWith(&j.res, fmt.Errorf("looking for a stored result: %w", serr))
			j.unsure = true
			return retryable, 0
		}
		if stored != nil {
			// Its rollout may not be tracked yet: the replica that stored
			// the result can have ended right after.
			j.ensure = stored.header.Get(events.HeaderBridgeRollout) == rolloutTracked
			j.resultAt = stored.at
			return answered, 0
		}
	}
	if err != nil {
		b.reject(&j.res, err)
		return settled, 0
	}
	if !env.Time.IsZero() && env.Time.Sub(j.meta.Timestamp) > b.cfg.MaxClockSkew {
		b.reject(&j.res, &events.Error{Code: events.CodeInvalidEvent, Field: "time",
			Message: fmt.Sprintf("time %s is %s after JetStream stored the request (at most %s)",
				env.Time.Format(time.RFC3339Nano), env.Time.Sub(j.meta.Timestamp).Round(time.Millisecond), b.cfg.MaxClockSkew)})
		return settled, 0
	}
	entry, err := b.manager.Lookup(env.Environment)
	if err != nil {
		b.reject(&j.res, err)
		return settled, 0
	}
	j.entry = entry
	j.res.Operator = string(entry.Operator.Kind())
	j.key = orderKey(env.Environment, req.App)
	return routed, 0
}

// ordered runs a routed request in its key's turn: circuit, order step,
// operator call.
func (b *Bridge) ordered(ctx context.Context, j *deployJob) (finding, time.Duration) {
	env, req, endpoint := j.env, j.req, j.entry.Endpoint
	// Check the circuit first: a request that must wait should not take the
	// order lease only to give it back.
	if err, wait := b.circuits.Allow(endpoint); err != nil {
		b.failWith(&j.res, err)
		j.waited = "the operator's open circuit"
		return blocked, wait
	}
	// A request handed over by another replica is never handed on.
	_, fwd := j.msg.(*forwarded)
	mayForward := !fwd
	_, span := b.startChild(j.traced(ctx), j.span, spanOrder, trace.SpanKindInternal)
	t, err := b.order.Begin(ctx, j.key, j.ref(), mayForward)
	endSpan(span, err)
	if err != nil || t.verdict != proceed {
		b.circuits.Cancel(endpoint)
	}
	if err != nil {
		if errors.Is(err, ErrOrderState) {
			b.metrics.orderErrors.Inc()
			b.log.Error("order state unreadable: key stopped", "environment", env.Environment, "app", req.App, "err", err)
		}
		b.failWith(&j.res, fmt.Errorf("%w; not sent", err))
		j.waited = "the order state of its environment and app"
		return retryable, 0
	}
	switch t.verdict {
	case alreadyApplied:
		j.res.Outcome, j.res.Success = events.Succeeded, true
		if j.meta.NumDelivered > 1 && t.appliedSeq == j.meta.Sequence.Stream {
			// This very message was applied by an earlier delivery, which
			// ended before storing its result: this is that result, and
			// the rollout is followed as it would have been.
			j.applied, j.ensure = true, true
			j.res.Message = fmt.Sprintf("already applied by an earlier delivery of this request to %s/%s; not sent again", env.Environment, req.App)
			if t.sentBefore {
				j.res.Message = fmt.Sprintf("already applied by an earlier delivery of this request; request %s, newer, was applied for %s/%s since; not sent again", t.winner, env.Environment, req.App)
			}
			return settled, 0
		}
		j.res.Message = fmt.Sprintf("already applied: request %s is the one applied last for %s/%s; not sent again", t.winner, env.Environment, req.App)
		if t.sentBefore {
			j.res.Message = fmt.Sprintf("applied earlier; request %s, newer, was applied for %s/%s since; not sent again", t.winner, env.Environment, req.App)
		}
		return settled, 0
	case superseded:
		j.res.Outcome = events.Superseded
		switch {
		case t.sentBefore:
			j.res.Message = fmt.Sprintf("sent to the operator earlier with no answer recorded; request %s, newer, was %s for %s/%s since; not sent again", t.winner, appliedOrSent(t.winnerApplied), env.Environment, req.App)
		case j.meta.NumDelivered == 1:
			// A first delivery: nobody can have sent it before.
			j.res.Message = fmt.Sprintf("superseded by request %s, %s for %s/%s and newer than this one; not sent", t.winner, appliedOrSent(t.winnerApplied), env.Environment, req.App)
		default:
			// An earlier delivery may have reached the operator, and the
			// order state no longer remembers it: say only what this one did.
			j.res.Message = fmt.Sprintf("superseded by request %s, %s for %s/%s and newer than this one; this delivery was not passed to the operator (an earlier one may have been)", t.winner, appliedOrSent(t.winnerApplied), env.Environment, req.App)
		}
		j.res.Error = &events.ErrorInfo{Code: events.CodeSuperseded, Message: j.res.Message}
		return settled, 0
	case elsewhere:
		j.holder = t.holder
		return handedOver, 0
	case wait:
		b.metrics.leaseConflicts.Inc()
		b.failWith(&j.res, fmt.Errorf("another replica is applying a request of %s/%s", env.Environment, req.App))
		j.waited = "another replica applying its environment and app"
		return blocked, t.waitFor
	}

	j.res.Attempts = t.attempt
	if left := b.order.Left(t); left < minCall {
		// The write that took the lease was too slow to leave room for a call.
		b.order.Done(t, outcomeRefused)
		b.circuits.Cancel(endpoint)
		j.res.Attempts--
		b.failWith(&j.res, fmt.Errorf("order lease of %s/%s taken too slowly (%s left of it); not sent", env.Environment, req.App, left.Round(time.Millisecond)))
		j.waited = "slow writes of the order state"
		return retryable, 0
	}
	// The call ends inside the lease, whatever the operator client's own
	// timeout says.
	cctx, cancel := context.WithDeadline(j.traced(ctx), t.deadline)
	resp, err := b.apply(cctx, j.entry, req, t)
	cancel()
	b.circuits.Done(endpoint, unavailable(err))
	if err == nil {
		b.order.Done(t, outcomeApplied)
		j.applied = true
		j.res.Outcome, j.res.Success, j.res.Message = events.Succeeded, true, resp.Message
		return settled, 0
	}
	if oe, ok := errors.AsType[*operator.Error](err); ok && oe.Reason == operator.Stale {
		// A fencing operator refused it: a newer request reached it first.
		b.order.Done(t, outcomeRefused)
		j.res.Outcome = events.Superseded
		j.res.Message = fmt.Sprintf("sent with fence %d; the operator refused it as stale: a newer request of %s/%s reached it first (%s)", t.fence, env.Environment, req.App, oe.Message)
		j.res.Error = &events.ErrorInfo{Code: events.CodeSuperseded, Message: j.res.Message}
		return settled, 0
	}
	b.failWith(&j.res, err)
	if !j.res.Error.Retryable {
		b.order.Done(t, outcomeRefused)
		return settled, 0
	}
	// No answer, or a 5xx: it may have been applied. Its retry repeats its
	// fence; nothing older goes after it.
	b.order.Done(t, outcomeUnknown)
	if ctx.Err() != nil {
		return notStarted, 0
	}
	return retryable, 0
}

// ref is the request's place in its key's order: its CloudEvent time (the
// time JetStream stored it when it has none), then its stream sequence.
func (j *deployJob) ref() ref {
	when := j.env.Time
	if when.IsZero() {
		when = j.meta.Timestamp
	}
	return ref{ID: j.env.ID, Time: when, Seq: j.meta.Sequence.Stream}
}

func appliedOrSent(applied bool) string {
	if applied {
		return "applied"
	}
	return "sent to the operator"
}

// checkSubject makes sure a request's subject is prefix + one valid
// environment token; on any other (deploy.request.a.b, say) no result
// subject could answer it, and it goes to the dead letters.
func checkSubject(subject, prefix string) error {
	env, ok := strings.CutPrefix(subject, prefix)
	if !ok || !events.ValidEnvironmentID(env) {
		return fmt.Errorf("subject %q is not %s<environment ID>: no result subject can answer it", subject, prefix)
	}
	return nil
}

// apply calls the operator with the ticket's fencing headers and records
// its latency.
func (b *Bridge) apply(ctx context.Context, e operator.Entry, req events.DeployRequest, t ticket) (operator.ApplyResponse, error) {
	deps := req.Effective()
	ar := operator.ApplyRequest{App: req.App, Version: req.Version, Deployments: make([]operator.Deployment, len(deps)),
		RequestID: t.req.ID, RequestTime: t.req.Time, Fence: t.fence}
	for i, d := range deps {
		ar.Deployments[i] = operator.Deployment{Version: d.Version, Percent: d.Percent, Package: d.Package}
	}
	ctx, span := b.startCall(ctx, e, http.MethodPost)
	start := time.Now()
	resp, err := e.Operator.Apply(ctx, ar)
	endCall(span, err)
	b.metrics.callSeconds.WithLabelValues(string(e.Operator.Kind()), "apply").Observe(time.Since(start).Seconds())
	return resp, err
}

// settleDeploy does what decide says with a deploy request's message, and
// lets the bridge forget the message.
func (b *Bridge) settleDeploy(ctx context.Context, j *deployJob, f finding, hint time.Duration) {
	defer b.release(j.msg)
	defer endSpan(j.span, nil)
	act, delay := decide(f, time.Since(j.meta.Timestamp), b.cfg.RetryWindow, j.meta.NumDelivered, hint)
	seq := j.meta.Sequence.Stream
	if act == nakWithDelay && !j.unsure {
		b.unstored.nakd(seq, j.meta.NumDelivered)
	} else {
		b.unstored.done(seq)
	}
	switch act {
	case deadLetter:
		b.deadLetter(ctx, j.msg, j.res.Message)
		return
	case ackOnly:
		if j.ensure {
			if err := b.trackRollout(ctx, j, nil); err != nil {
				_ = j.msg.NakWithDelay(retryBase)
				b.logDeploy(ctx, j, slog.LevelWarn, "result already stored; rollout not tracked yet, will retry", slog.Any("err", err))
				return
			}
		}
		_ = j.msg.Ack()
		b.logDeploy(ctx, j, slog.LevelInfo, "result already stored for this message")
		return
	case nakNow:
		_ = j.msg.Nak()
		b.logDeploy(ctx, j, slog.LevelInfo, "requeued: bridge stopping")
		return
	case nakWithDelay:
		_ = j.msg.NakWithDelay(delay)
		b.logDeploy(ctx, j, slog.LevelDebug, "retry", slog.Duration("delay", delay), slog.String("reason", j.res.Error.Message))
		return
	case failAfterWindow:
		j.res.Outcome, j.res.Success = events.Failed, false
		j.res.Error.Retryable = true
		if f == blocked || j.res.Attempts == 0 {
			// It never reached the operator on its last try: say what held
			// it, and how often the operator was called before.
			j.res.Attempts = b.order.Attempts(j.key, j.env.ID)
			j.res.Error.Message = fmt.Sprintf("retry window of %s spent waiting on %s, after %d operator calls: %s",
				b.cfg.RetryWindow, j.waited, j.res.Attempts, j.res.Error.Message)
		} else {
			j.res.Error.Message = fmt.Sprintf("retry window of %s spent: %s", b.cfg.RetryWindow, j.res.Error.Message)
		}
		j.res.Message = j.res.Error.Message
	}
	j.res.DurationMS = time.Since(j.start).Milliseconds()
	out, err := events.NewDeployResult(b.source, withSpanContext(j.env, j.span), j.meta.Sequence.Stream, j.res)
	if err != nil {
		// No result can be made for it (this does not pass on a retry):
		// keep it as a dead letter rather than lose it.
		b.deadLetter(ctx, j.msg, "result cannot be made: "+err.Error())
		return
	}
	tracked := j.applied && j.req.Rollout.Tracked()
	var ahead func() *follower
	if tracked {
		// A redelivery that finds this result stored makes sure the
		// rollout is tracked (the replica storing it may end right after).
		out.Header.Set(events.HeaderBridgeRollout, rolloutTracked)
		if !j.ensure {
			ahead = b.lookAhead(ctx, j)
		}
	}
	_, span := b.startChild(j.traced(ctx), j.span, spanDeployPublish, trace.SpanKindProducer)
	err = b.store(ctx, out)
	endSpan(span, err)
	if err != nil {
		// Not stored: the request stays, and comes back. An applied request
		// then finds itself applied (or sent, and is sent again with the
		// same fence, which operators take as a no-op).
		_ = j.msg.NakWithDelay(retryBase)
		b.logDeploy(ctx, j, slog.LevelWarn, "result not stored; will retry", slog.Any("err", err))
		return
	}
	// Rollout tracking: a request that an operator call applied (not a
	// replay answered "already applied") is followed from here on. When it
	// cannot be recorded, the message comes back, finds its result and
	// tries again.
	if tracked {
		if err := b.trackRollout(ctx, j, ahead); err != nil {
			_ = j.msg.NakWithDelay(retryBase)
			b.logDeploy(ctx, j, slog.LevelWarn, "result stored; rollout not tracked yet, will retry", slog.Any("err", err))
			return
		}
	}
	_ = j.msg.Ack()
	b.metrics.events.WithLabelValues(events.TypeDeployRequest, string(j.res.Outcome)).Inc()
	level := slog.LevelInfo
	if j.res.Outcome != events.Succeeded && j.res.Outcome != events.Superseded {
		level = slog.LevelWarn
	}
	b.logDeploy(ctx, j, level, "deploy "+string(j.res.Outcome))
}

// logDeploy writes the one line of a request's outcome. It is on the hot
// path: typed attributes into a fixed array, no boxing of values.
func (b *Bridge) logDeploy(ctx context.Context, j *deployJob, level slog.Level, msg string, extra ...slog.Attr) {
	if !b.log.Enabled(ctx, level) {
		return
	}
	var buf [12]slog.Attr
	attrs := append(buf[:0],
		slog.String("environment", j.res.Environment), slog.String("app", j.res.App),
		slog.String("version", j.res.Version), slog.String("id", j.env.ID),
		slog.String("outcome", string(j.res.Outcome)), slog.Int("attempts", j.res.Attempts),
		slog.Uint64("delivery", j.meta.NumDelivered), slog.Duration("duration", time.Since(j.start).Round(time.Microsecond)))
	if j.res.Error != nil {
		attrs = append(attrs, slog.String("code", string(j.res.Error.Code)))
	}
	b.log.LogAttrs(ctx, level, msg, append(attrs, extra...)...)
}

// reject fills res for a request that no operator will see.
func (b *Bridge) reject(res *events.DeployResult, err error) {
	b.failWith(res, err)
	res.Outcome = events.Rejected
}

// failWith fills res as a failure caused by err.
func (b *Bridge) failWith(res *events.DeployResult, err error) {
	res.Outcome, res.Success = events.Failed, false
	res.Error = errorInfo(err)
	res.Message = res.Error.Message
}

// errorInfo is a result's error for err: its contract code, a message that
// does not repeat the code, and whether it may pass on its own.
func errorInfo(err error) *events.ErrorInfo {
	if ee, ok := errors.AsType[*events.Error](err); ok {
		return ee.Info()
	}
	code := errorCode(err)
	return &events.ErrorInfo{Code: code, Message: err.Error(), Retryable: code.Retryable()}
}

// errorCode maps an error to the contract's error.code; it is the one place
// that does.
func errorCode(err error) events.ErrorCode {
	var ee *events.Error
	var oe *operator.Error
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, operator.ErrUnknownEnvironment):
		return events.CodeUnknownEnvironment
	case errors.Is(err, operator.ErrEnvironmentInactive):
		return events.CodeEnvironmentInactive
	case errors.As(err, &oe):
		switch oe.Reason {
		case operator.Rejected:
			return events.CodeOperatorRejected
		case operator.InvalidResponse:
			return events.CodeOperatorInvalidResponse
		case operator.Timeout:
			return events.CodeOperatorTimeout
		}
		return events.CodeOperatorUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return events.CodeOperatorTimeout
	}
	// The circuit, the order bucket or a lost connection: retryable trouble.
	return events.CodeOperatorUnavailable
}

// unavailable returns err when it says the operator endpoint is down (what
// opens its circuit), and nil otherwise: a rejection or a bad answer means
// the endpoint is up.
func unavailable(err error) error {
	var oe *operator.Error
	if errors.As(err, &oe) && oe.Retryable() {
		return err
	}
	return nil
}
