// Package telemetry makes sandrun's spans and carries trace context across
// Pub/Sub and into session hosts. Its spans and the instruments each
// package declares follow the global tracer and meter providers, the no-op
// ones unless the program installed others (package export does, for the
// deployed programs); the public client links this package and nothing
// that exports.
//
// The package owns no instruments of its own; each package declares the
// instruments of what it does, from the global meter provider. Only the
// request counter, which three programs add to, is declared here once
// (RequestCounter), so that they agree on it.
package telemetry

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the tracer of sandrun's spans.
const instrumentation = "github.com/sandrun/sandrun"

// Start starts a span of kind named name under ctx's span. With tracing
// off the span records nothing but carries ctx's span context on, so that
// trace context still flows from the request to the completion.
//
// The tracer is asked of the global provider each time, the no-op one
// unless Setup installed another: a tracer kept from before follows only
// the first provider ever installed, so after a second Setup in one
// process (a test run twice) its spans would go to the first, shut down.
func Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return otel.Tracer(instrumentation).Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
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
