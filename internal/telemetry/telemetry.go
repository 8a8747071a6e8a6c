// Package telemetry sets up a program's traces and metrics with
// OpenTelemetry, and carries trace context across Pub/Sub and into session
// hosts.
//
// Traces and metrics are exported over OTLP only when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or its per-signal variants) is set; otherwise
// the global providers stay the no-op ones, and instrumentation costs
// nothing. A program that serves a Prometheus endpoint (the dispatcher and
// the reaper, for local use) gets a metrics reader for it either way.
//
// The package owns no instruments of its own; each package declares the
// instruments of what it does, from the global meter provider. Only the
// request counter, which three programs add to, is declared here once
// (RequestCounter), so that they agree on it.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Options say what Setup sets up.
type Options struct {
	// Service names the program in its resource (service.name).
	Service string
	// Prometheus, when true, makes Setup return a handler that serves the
	// program's metrics in Prometheus's format.
	Prometheus bool
}

// Telemetry is what Setup set up.
type Telemetry struct {
	// Metrics serves the metrics for Prometheus, or is nil.
	Metrics  http.Handler
	shutdown []func(context.Context) error
}

// OTLPEnabled reports whether the environment asks for OTLP export of
// traces or metrics.
func OTLPEnabled(getenv func(string) string) (traces, metrics bool) {
	any := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	off := func(k string) bool { return getenv(k) == "none" }
	traces = (any || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") && !off("OTEL_TRACES_EXPORTER")
	metrics = (any || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "") && !off("OTEL_METRICS_EXPORTER")
	return traces, metrics
}

// Setup installs the global tracer and meter providers and the W3C trace
// context propagator. Shutdown flushes and stops them.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	t := &Telemetry{}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	// Each process is an instance of its own, so that the cumulative
	// series of many hosts add up rather than overwrite each other.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(opts.Service), semconv.ServiceInstanceID(uuid.NewString())))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	traces, metrics := OTLPEnabled(os.Getenv)
	if traces {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)), sdktrace.WithResource(res))
		otel.SetTracerProvider(tp)
		t.shutdown = append(t.shutdown, tp.Shutdown)
	}
	var readers []sdkmetric.Option
	if metrics {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP metric exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	if opts.Prometheus {
		reg := prometheus.NewRegistry()
		// The Go runtime's and the process's own figures (goroutines,
		// memory, open files) come along, for a soak to watch.
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("Prometheus exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(exp))
		t.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	if len(readers) > 0 {
		mp := sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(res))...)
		otel.SetMeterProvider(mp)
		t.shutdown = append(t.shutdown, mp.Shutdown)
	}
	return t, nil
}

// Shutdown flushes what is buffered and stops the providers Setup
// installed.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}

// tracer makes sandrun's spans. It follows the global tracer provider,
// the no-op one unless Setup installed another.
var tracer = otel.Tracer("github.com/sandrun/sandrun")

// Start starts a span of kind named name under ctx's span. With tracing
// off the span records nothing but carries ctx's span context on, so that
// trace context still flows from the request to the completion.
func Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// End ends span, marking it failed when err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Traceparent returns the W3C traceparent of ctx's span context, or "" when
// ctx carries none.
func Traceparent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// WithTraceparent returns ctx carrying the remote span context that the
// W3C traceparent tp names; an empty or malformed tp leaves ctx as it is.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}
