package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracesShutdownTimeout bounds the flush of the last spans on exit.
const tracesShutdownTimeout = 5 * time.Second

// tracingConfigured says whether the standard OpenTelemetry variables ask
// for traces: an OTLP endpoint is set and OTEL_TRACES_EXPORTER is not
// "none". The exporter reads the process environment itself, so this does too.
func tracingConfigured(getenv func(string) string) bool {
	if strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) == "none" {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// startTracing builds the tracer provider of serve: OTLP over HTTP,
// configured by the OTEL_* variables, with service.name operator-bridge
// unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) says otherwise.
// It returns a nil provider and a no-op stop when tracing is not configured.
func startTracing(ctx context.Context, log *slog.Logger) (trace.TracerProvider, func(), error) {
	if !tracingConfigured(os.Getenv) {
		return nil, func() {}, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("OpenTelemetry traces (OTEL_EXPORTER_OTLP_*): %w", err)
	}
	// Later options win: the environment's attributes over the default name.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "operator-bridge")),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv())
	if err != nil {
		return nil, nil, fmt.Errorf("OpenTelemetry resource (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("exporting OpenTelemetry traces over OTLP/HTTP")
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracesShutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("OpenTelemetry traces not all exported", "err", err)
		}
	}
	return tp, stop, nil
}
