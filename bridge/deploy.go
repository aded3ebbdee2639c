package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	// commit is the order ticket of an applied request, committed while its
	// result is stored.
	commit *ticket
	// unlock frees the request's key for the next local request.
	unlock func()
}

// handleDeploy handles one delivery of a deploy request; see the package
// documentation for what is done with the message.
func (b *Bridge) handleDeploy(ctx context.Context, m jetstream.Msg) {
	j := &deployJob{msg: m, start: time.Now()}
	meta, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to acknowledge or answer.
		b.log.Error("deploy request without metadata", "subject", m.Subject(), "err", err)
		return
	}
	j.meta = meta
	if meta.NumDelivered > 1 {
		b.metrics.redeliveries.WithLabelValues(events.TypeDeployRequest).Inc()
	}
	f, hint := b.deploy(ctx, j)
	b.settleDeploy(ctx, j, f, hint)
	if j.unlock != nil {
		// Only now, with its order state committed, may the next request
		// of the key go.
		j.unlock()
	}
}

// deploy runs a request through decode, route, order and the operator call,
// filling j.res, and says what it found.
func (b *Bridge) deploy(ctx context.Context, j *deployJob) (finding, time.Duration) {
	m := j.msg
	if err := checkSubject(m.Subject(), events.PrefixDeployRequest); err != nil {
		j.res.Message = err.Error()
		return unidentifiable, 0
	}
	env, req, err := events.DecodeDeployRequest(m.Subject(), m.Headers(), m.Data())
	j.env, j.req = env, req
	j.res = events.DeployResult{RequestID: env.ID, Environment: env.Environment, App: req.App, Version: req.Version}
	if errors.Is(err, events.ErrUnidentifiable) {
		j.res.Message = err.Error()
		return unidentifiable, 0
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
	j.res.Operator = string(entry.Operator.Kind())

	key := orderKey(env.Environment, req.App)
	unlock, err := b.keys.Lock(ctx, key)
	if err != nil {
		return notStarted, 0
	}
	j.unlock = unlock
	if b.isStopping() {
		return notStarted, 0
	}
	// Check the circuit first: a request that must wait should not take the
	// order lease only to give it back.
	if err, wait := b.circuits.Allow(entry.Endpoint); err != nil {
		b.failWith(&j.res, err)
		return blocked, wait
	}
	when := env.Time
	if when.IsZero() {
		when = j.meta.Timestamp
	}
	t, err := b.order.Begin(ctx, key, ref{ID: env.ID, Time: when, Seq: j.meta.Sequence.Stream})
	if err != nil || t.verdict != proceed {
		b.circuits.Cancel(entry.Endpoint)
	}
	if err != nil {
		b.failWith(&j.res, err)
		return retryable, 0
	}
	if t.verdict != proceed {
		if rerr := b.order.Release(ctx, t); rerr != nil {
			b.log.Warn("order release", "key", key, "err", rerr)
		}
	}
	switch t.verdict {
	case alreadyApplied:
		j.res.Outcome, j.res.Success = events.Succeeded, true
		j.res.Message = fmt.Sprintf("already applied: request %s is the one applied last for %s/%s; not sent again", t.winner, env.Environment, req.App)
		return settled, 0
	case superseded:
		j.res.Outcome = events.Superseded
		j.res.Message = fmt.Sprintf("superseded by request %s, applied for %s/%s and newer than this one; not sent", t.winner, env.Environment, req.App)
		j.res.Error = &events.ErrorInfo{Code: events.CodeSuperseded, Message: j.res.Message}
		return settled, 0
	case wait:
		b.failWith(&j.res, fmt.Errorf("another request for %s/%s is being applied", env.Environment, req.App))
		return blocked, t.waitFor
	}

	j.res.Attempts = t.attempt
	resp, err := b.apply(ctx, entry, req)
	b.circuits.Done(entry.Endpoint, unavailable(err))
	if err == nil {
		// The order state is committed in settleDeploy, while the result
		// is being stored.
		j.commit = &t
		j.res.Outcome, j.res.Success, j.res.Message = events.Succeeded, true, resp.Message
		return settled, 0
	}
	if rerr := b.order.Release(ctx, t); rerr != nil {
		b.log.Warn("order release", "key", key, "err", rerr)
	}
	if ctx.Err() != nil {
		return notStarted, 0
	}
	b.failWith(&j.res, err)
	if j.res.Error.Retryable {
		return retryable, 0
	}
	return settled, 0
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

// apply calls the operator and records its latency.
func (b *Bridge) apply(ctx context.Context, e operator.Entry, req events.DeployRequest) (operator.ApplyResponse, error) {
	deps := req.Effective()
	ar := operator.ApplyRequest{App: req.App, Version: req.Version, Deployments: make([]operator.Deployment, len(deps))}
	for i, d := range deps {
		ar.Deployments[i] = operator.Deployment{Version: d.Version, Percent: d.Percent, Package: d.Package}
	}
	start := time.Now()
	resp, err := e.Operator.Apply(ctx, ar)
	b.metrics.callSeconds.WithLabelValues(string(e.Operator.Kind()), "apply").Observe(time.Since(start).Seconds())
	return resp, err
}

// settleDeploy does what decide says with a deploy request's message.
func (b *Bridge) settleDeploy(ctx context.Context, j *deployJob, f finding, hint time.Duration) {
	act, delay := decide(f, time.Since(j.meta.Timestamp), b.cfg.RetryWindow, j.meta.NumDelivered, hint)
	switch act {
	case deadLetter:
		b.deadLetter(ctx, j.msg, j.res.Message)
		return
	case nakNow:
		_ = j.msg.Nak()
		b.logDeploy(ctx, j, slog.LevelInfo, "requeued: bridge stopping")
		return
	case nakWithDelay:
		_ = j.msg.NakWithDelay(delay)
		b.logDeploy(ctx, j, slog.LevelDebug, "retry", "delay", delay, "reason", j.res.Error.Message)
		return
	case failAfterWindow:
		j.res.Outcome, j.res.Success = events.Failed, false
		j.res.Error.Retryable = true
		j.res.Error.Message = fmt.Sprintf("retry window of %s spent: %s", b.cfg.RetryWindow, j.res.Error.Message)
		j.res.Message = j.res.Error.Message
	}
	j.res.DurationMS = time.Since(j.start).Milliseconds()
	out, err := events.NewDeployResult(b.source, j.env, j.meta.Sequence.Stream, j.res)
	if err != nil {
		// No result can be made for it (this does not pass on a retry):
		// keep it as a dead letter rather than lose it.
		b.deadLetter(ctx, j.msg, "result cannot be made: "+err.Error())
		return
	}
	if err := b.store(ctx, j, out); err != nil {
		// Not stored: the request stays, and comes back. An applied request
		// then finds itself applied, or is applied again with the same
		// version, which operators take as a no-op.
		_ = j.msg.NakWithDelay(retryBase)
		b.logDeploy(ctx, j, slog.LevelWarn, "result not stored; will retry", "err", err)
		return
	}
	// Rollout tracking (issue 12): a request that an operator call applied
	// (not a replay answered "already applied") is followed from here on.
	if j.commit != nil {
		b.trackRollout(ctx, j)
	}
	_ = j.msg.Ack()
	b.metrics.events.WithLabelValues(events.TypeDeployRequest, string(j.res.Outcome)).Inc()
	level := slog.LevelInfo
	if j.res.Outcome != events.Succeeded && j.res.Outcome != events.Superseded {
		level = slog.LevelWarn
	}
	b.logDeploy(ctx, j, level, "deploy "+string(j.res.Outcome))
}

// store stores a deploy result and, for an applied request, commits its
// order state at the same time: two writes, one round trip of waiting.
func (b *Bridge) store(ctx context.Context, j *deployJob, out *nats.Msg) error {
	if j.commit == nil {
		_, err := b.js.PublishMsg(ctx, out)
		return err
	}
	fut, err := b.js.PublishMsgAsync(out)
	if err != nil {
		return err
	}
	cerr := b.order.Commit(ctx, *j.commit)
	select {
	case <-fut.Ok():
	case err := <-fut.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	return cerr
}

func (b *Bridge) logDeploy(ctx context.Context, j *deployJob, level slog.Level, msg string, args ...any) {
	if !b.log.Enabled(ctx, level) {
		return
	}
	attrs := []any{"environment", j.res.Environment, "app", j.res.App, "version", j.res.Version,
		"id", j.env.ID, "outcome", j.res.Outcome, "attempts", j.res.Attempts,
		"delivery", j.meta.NumDelivered, "duration", time.Since(j.start).Round(time.Microsecond)}
	if j.res.Error != nil {
		attrs = append(attrs, "code", j.res.Error.Code)
	}
	b.log.Log(ctx, level, msg, append(attrs, args...)...)
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
