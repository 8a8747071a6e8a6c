package bench

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandrun/sandrun/internal/telemetry"
)

// tracing measures what a request's tracing costs with tracing off (no
// OTEL_EXPORTER_OTLP_ENDPOINT: the no-op provider): the spans and
// trace-context hand-offs one request makes across the client, the
// dispatcher and its host, repeated in this process, against the warm
// request measured in this run.
func (r *runner) tracing(ctx context.Context) error {
	// The bench installs no tracer provider: the global one is the no-op.
	const n = 200000
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	start := time.Now()
	for range n {
		oneRequestsTracing(ctx, tp)
	}
	per := time.Since(start) / n
	warm := 0.0
	for _, res := range r.report.Results {
		if res.Name == "warm request: true" {
			warm = res.P50
		}
	}
	res := Result{Name: "tracing off: one request's spans", Unit: "ms", Value: float64(per.Nanoseconds()) / 1e6, Samples: n,
		Note: fmt.Sprintf("%v a request, with the no-op provider (OTEL_EXPORTER_OTLP_ENDPOINT unset)", per)}
	if warm > 0 {
		res.Floor, res.FloorName = warm, "a warm request (true)"
	}
	r.add(res)
	return nil
}

// oneRequestsTracing makes the tracing calls of one request, as
// client.Send, dispatcher.Handle and Launch, and host.serveRequest make
// them.
func oneRequestsTracing(ctx context.Context, incoming string) {
	attrs := []attribute.KeyValue{attribute.String("sandrun.session_id", "s"), attribute.String("sandrun.request_id", "r"), attribute.String("sandrun.op", "exec")}
	cctx, client := telemetry.Start(ctx, "sandrun.publish exec", trace.SpanKindProducer, attrs...)
	_ = telemetry.Traceparent(cctx)
	telemetry.End(client, nil)
	dctx, dispatch := telemetry.Start(telemetry.WithTraceparent(ctx, incoming), "sandrun.dispatch", trace.SpanKindConsumer, attrs...)
	stored := telemetry.Traceparent(dctx)
	telemetry.End(dispatch, nil)
	hctx, req := telemetry.Start(telemetry.WithTraceparent(ctx, stored), "sandrun.request", trace.SpanKindServer, attrs...)
	for _, name := range []string{"sandrun.run", "sandrun.record", "sandrun.publish completion"} {
		sctx, s := telemetry.Start(hctx, name, trace.SpanKindInternal)
		_ = telemetry.Traceparent(sctx)
		s.End()
	}
	req.End()
}
