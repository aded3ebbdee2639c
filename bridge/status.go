package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
)

// handleStatusQuery answers one status.query message with a status.result
// event. Status questions never wait on retries: an operator failure gives a
// degraded result at once.
func (b *Bridge) handleStatusQuery(ctx context.Context, m jetstream.Msg) {
	defer b.release(m)
	start := time.Now()
	meta, err := m.Metadata()
	if err != nil {
		b.log.Error("status query without metadata", "subject", m.Subject(), "err", err)
		return
	}
	if meta.NumDelivered > 1 {
		b.metrics.redeliveries.WithLabelValues(events.TypeStatusQuery).Inc()
	}
	if err := checkSubject(m.Subject(), events.PrefixStatusQuery); err != nil {
		b.deadLetter(ctx, m, err.Error())
		return
	}
	env, q, err := events.DecodeStatusQuery(m.Subject(), m.Headers(), m.Data())
	if errors.Is(err, events.ErrUnidentifiable) {
		b.deadLetter(ctx, m, err.Error())
		return
	}
	if b.isStopping() && err == nil {
		_ = m.Nak()
		return
	}
	if meta.NumDelivered > 1 {
		// Its result may be stored already, its ack lost.
		stored, serr := b.answered(ctx, events.StreamStatus, events.StatusResultSubject(env.Environment),
			events.ResultID(env.ID, meta.Sequence.Stream), meta.Sequence.Stream)
		if serr != nil {
			_ = m.NakWithDelay(retryBase)
			b.log.Warn("status query: cannot tell whether its result is stored; will retry", "id", env.ID, "err", serr)
			return
		}
		if stored != nil {
			_ = m.Ack()
			return
		}
	}
	tctx, span := b.startRequest(ctx, spanStatus, env)
	defer endSpan(span, nil)
	res := b.status(tctx, env, q, err)
	if ctx.Err() != nil {
		_ = m.Nak()
		return
	}
	out, err := events.NewStatusResult(b.source, withSpanContext(env, span), meta.Sequence.Stream, res)
	if err != nil {
		b.deadLetter(ctx, m, "result cannot be made: "+err.Error())
		return
	}
	_, pspan := b.startChild(tctx, span, spanStatusPublish, trace.SpanKindProducer)
	err = b.store(ctx, out)
	endSpan(pspan, err)
	if err != nil {
		_ = m.NakWithDelay(retryBase)
		b.log.Warn("status result not stored; will retry", "id", env.ID, "err", err)
		return
	}
	_ = m.Ack()
	b.logStatus(ctx, env, res, time.Since(start))
}

// status answers a decoded status query; decodeErr is the decoder's verdict.
func (b *Bridge) status(ctx context.Context, env events.Envelope, q events.StatusQuery, decodeErr error) events.StatusResult {
	res := events.StatusResult{
		RequestID: env.ID, Environment: env.Environment, App: q.App,
		// Degraded until the operator answers.
		Status: appStatus(operator.DegradedStatus(q.App)),
	}
	degrade := func(err error) events.StatusResult {
		res.Degraded = true
		res.Error = errorInfo(err)
		return res
	}
	if decodeErr != nil {
		return degrade(decodeErr)
	}
	entry, err := b.manager.Lookup(env.Environment)
	if err != nil {
		return degrade(err)
	}
	res.Operator = string(entry.Operator.Kind())
	cctx, span := b.startCall(ctx, entry, http.MethodGet)
	start := time.Now()
	st, err := entry.Operator.Status(cctx, q.App)
	endCall(span, err)
	b.metrics.callSeconds.WithLabelValues(string(entry.Operator.Kind()), "status").Observe(time.Since(start).Seconds())
	if err != nil {
		return degrade(err)
	}
	res.Status = appStatus(st)
	return res
}

// appStatus carries an operator's status answer into the event's data.
func appStatus(st operator.Status) events.AppStatus {
	out := events.AppStatus{App: st.App, Healthy: events.AppHealth{Level: st.Healthy.Level},
		Versions: make([]events.VersionStatus, len(st.Versions))}
	for i, v := range st.Versions {
		nodes := make([]events.NodeStatus, len(v.Nodes))
		for k, n := range v.Nodes {
			nodes[k] = events.NodeStatus{Node: n.Node, Healthy: events.AppHealth{Level: n.Healthy.Level}}
		}
		out.Versions[i] = events.VersionStatus{Version: v.Version, Percent: v.Percent,
			Healthy: events.AppHealth{Level: v.Healthy.Level}, Nodes: nodes}
	}
	return out
}

func (b *Bridge) logStatus(ctx context.Context, env events.Envelope, res events.StatusResult, d time.Duration) {
	outcome := "answered"
	level := slog.LevelInfo
	attrs := []any{"environment", res.Environment, "app", res.App, "id", env.ID, "duration", d.Round(time.Microsecond)}
	if res.Degraded {
		outcome, level = "degraded", slog.LevelWarn
		attrs = append(attrs, "code", res.Error.Code)
	}
	b.metrics.events.WithLabelValues(events.TypeStatusQuery, outcome).Inc()
	b.log.Log(ctx, level, "status "+outcome, attrs...)
}

// serveStatus answers operator-bridge.status.<env> at once, outside the
// streams; the request is a status.query event or its bare data.
func (b *Bridge) serveStatus(ctx context.Context, r micro.Request) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.OperatorTimeout+time.Second)
	defer cancel()
	subject := events.StatusQuerySubject(lastToken(r.Subject()))
	env, q, err := events.DecodeStatusQueryOrData(subject, nats.Header(r.Headers()), r.Data())
	res := b.status(ctx, env, q, err)
	out, err := events.NewStatusResult(b.source, env, 0, res)
	if err != nil {
		_ = r.Error("500", err.Error(), nil)
		return
	}
	b.logStatus(ctx, env, res, 0)
	_ = r.Respond(out.Data, micro.WithHeaders(micro.Headers(out.Header)))
}

// serveEnvironments answers operator-bridge.environments with every
// registered environment and its last health.
func (b *Bridge) serveEnvironments(r micro.Request) {
	data, err := json.Marshal(b.environmentInfos())
	if err != nil {
		_ = r.Error("500", err.Error(), nil)
		return
	}
	_ = r.Respond(data, micro.WithHeaders(micro.Headers{"Content-Type": {"application/json"}}))
}

// environmentInfos lists every registered environment with this replica's
// last health of it.
func (b *Bridge) environmentInfos() []events.EnvironmentInfo {
	entries := b.manager.Entries()
	list := make([]events.EnvironmentInfo, len(entries))
	for i, e := range entries {
		list[i] = events.EnvironmentInfo{
			// The environment's own type; with USE_MOCK its operator (and
			// endpoint) is the mock "whatever its type" (docs/operators.md).
			ID: e.Environment.ID, Name: e.Environment.Name, Type: string(e.Environment.Type),
			Endpoint: e.Endpoint, Active: !e.Environment.Inactive, Health: b.health.last(e.Environment.ID),
		}
	}
	return list
}

func lastToken(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[i+1:]
		}
	}
	return subject
}
