package bridge

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/boreas/operator-bridge/events"
	"github.com/boreas/operator-bridge/operator"
)

// tracerName names the bridge's instrumentation scope.
const tracerName = "github.com/boreas/operator-bridge/bridge"

// Span names: one consumer span per request, children for its steps.
const (
	spanDeploy        = "deploy.request process"
	spanOrder         = "order"
	spanDeployPublish = "deploy.result publish"
	spanStatus        = "status.query process"
	spanStatusPublish = "status.result publish"
)

// tracer is the bridge's tracer, nil when Config.TracerProvider is nil: then
// no span is started and no result's traceparent changes.
func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(tracerName)
}

// traceContext is the W3C propagator of the traceparent extension.
var traceContext = propagation.TraceContext{}

// startRequest starts the consumer span of a request whose envelope is env,
// continuing the trace of its traceparent when it has a valid one. With
// tracing off it returns ctx and nil.
func (b *Bridge) startRequest(ctx context.Context, name string, env events.Envelope) (context.Context, trace.Span) {
	if b.tracer == nil {
		return ctx, nil
	}
	if env.TraceParent != "" {
		ctx = traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": env.TraceParent})
	}
	ctx, span := b.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("cloudevents.event_id", env.ID),
			attribute.String("operator_bridge.environment", env.Environment)))
	return ctx, span
}

// startChild starts an internal or producer step of a traced request; with
// tracing off (span nil) it returns ctx and nil.
func (b *Bridge) startChild(ctx context.Context, parent trace.Span, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if parent == nil {
		return ctx, nil
	}
	return b.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// startCall starts the client span of an operator call, named and described
// as an HTTP call: method and the operator's base URL (which never holds
// credentials). A call of the in-process mock has no URL.
func (b *Bridge) startCall(ctx context.Context, e operator.Entry, method string) (context.Context, trace.Span) {
	if b.tracer == nil || !trace.SpanFromContext(ctx).SpanContext().IsValid() {
		return ctx, nil
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("operator_bridge.operator", string(e.Operator.Kind())),
	}
	if strings.HasPrefix(e.Endpoint, "http://") || strings.HasPrefix(e.Endpoint, "https://") {
		attrs = append(attrs, attribute.String("url.full", e.Endpoint))
	}
	return b.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endCall ends an operator call's span with its error and, when the
// operator refused the call, the HTTP status it answered with. (A success's
// exact 2xx status is not told by the operator client.)
func endCall(span trace.Span, err error) {
	if span == nil {
		return
	}
	if oe, ok := errors.AsType[*operator.Error](err); ok && oe.StatusCode != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", oe.StatusCode))
	}
	endSpan(span, err)
}

// endSpan ends span (nil with tracing off), marking it failed on err.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// withSpanContext is env with its traceparent replaced by span's context,
// for the result of a traced request: the result continues the same trace
// from the bridge's span. With tracing off env is returned as it is, so the
// request's own traceparent is copied.
func withSpanContext(env events.Envelope, span trace.Span) events.Envelope {
	if span == nil {
		return env
	}
	c := propagation.MapCarrier{}
	traceContext.Inject(trace.ContextWithSpan(context.Background(), span), c)
	if tp := c["traceparent"]; tp != "" {
		env.TraceParent = tp
	}
	return env
}
