package host

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/telemetry"
)

// secondsBuckets are the boundaries of the host's duration histograms:
// from a few milliseconds (a warm file.read) to an hour (a long command).
var secondsBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// bytesBuckets are the boundaries of the checkpoint size histogram: 1 KiB
// to 4 GiB by factors of 4.
var bytesBuckets = []float64{1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30, 4 << 30}

// metrics are the host's instruments. They come from the global meter
// provider, and are no-ops unless export.Setup installed one that
// exports. No attribute names a session or a request.
type metrics struct {
	requests   metric.Int64Counter
	total      metric.Float64Histogram
	queueWait  metric.Float64Histogram
	run        metric.Float64Histogram
	start      metric.Float64Histogram
	live       metric.Int64UpDownCounter
	idleExits  metric.Int64Counter
	cpBytes    metric.Int64Histogram
	cpDuration metric.Float64Histogram
	startOnce  sync.Once
}

func newMetrics() *metrics {
	m := otel.GetMeterProvider().Meter("github.com/sandrun/sandrun/internal/host")
	seconds := func(name, desc string) metric.Float64Histogram {
		h, _ := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(secondsBuckets...))
		return h
	}
	// The instruments of a working provider never fail; a failing one
	// leaves no-op instruments behind, which is what metrics off means.
	x := &metrics{
		requests:   telemetry.RequestCounter(m),
		total:      seconds("sandrun.request.duration", "end-to-end time of a request served by a host, from accepted by the dispatcher to finished, by op"),
		queueWait:  seconds("sandrun.request.queue_wait", "time a request served by a host waited, from accepted to started (a cold start included), by op"),
		run:        seconds("sandrun.request.run_duration", "time a host took to run a request, from started to finished, by op"),
		start:      seconds("sandrun.host.start.duration", "time from a launch request to its host taking the session, once per host whose requests waited for it: a cold start, or with pooled=true a warm pool handover"),
		cpDuration: seconds("sandrun.checkpoint.duration", "time to write a checkpoint of a session's workspace, by outcome (ok or failed)"),
	}
	x.live, _ = m.Int64UpDownCounter("sandrun.hosts.live", metric.WithUnit("{host}"), metric.WithDescription("session hosts holding a session's lease"))
	x.idleExits, _ = m.Int64Counter("sandrun.host.idle_exits", metric.WithUnit("{host}"), metric.WithDescription("session hosts that left because they were idle (not stopped, not lost)"))
	x.cpBytes, _ = m.Int64Histogram("sandrun.checkpoint.size", metric.WithUnit("By"), metric.WithDescription("bytes a checkpoint uploaded: the blobs of changed files, changed manifest pages and the manifest"), metric.WithExplicitBucketBoundaries(bytesBuckets...))
	return x
}

// served records a request the host answered, from its completion.
func (x *metrics) served(ctx context.Context, c *api.Completion) {
	telemetry.CountAnswer(ctx, x.requests, telemetry.AnsweredByHost, c)
	op := metric.WithAttributes(telemetry.OpAttr(c.Op))
	x.total.Record(ctx, c.Timing.TotalSeconds, op)
	x.queueWait.Record(ctx, c.Timing.QueueSeconds, op)
	x.run.Record(ctx, c.Timing.RunSeconds, op)
}

// started records, once per host, how long its launch took.
func (x *metrics) started(ctx context.Context, seconds float64, pooled bool) {
	x.startOnce.Do(func() { x.start.Record(ctx, seconds, metric.WithAttributes(attribute.Bool("pooled", pooled))) })
}

// checkpointed records a checkpoint attempt: its duration, and its size
// when it was written.
func (x *metrics) checkpointed(ctx context.Context, since time.Time, bytes int64, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	} else {
		x.cpBytes.Record(ctx, bytes)
	}
	x.cpDuration.Record(ctx, time.Since(since).Seconds(), metric.WithAttributes(attribute.String("outcome", outcome)))
}

// answered records answers the host gave without running them (HOST_LOST
// for what a dead host ran, the answers of a destroy), from their recorded
// JSON.
func (x *metrics) answered(ctx context.Context, completion []byte) {
	var c api.Completion
	if json.Unmarshal(completion, &c) == nil {
		telemetry.CountAnswer(ctx, x.requests, telemetry.AnsweredByHost, &c)
	}
}
