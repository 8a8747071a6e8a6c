package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sandrun/sandrun/api"
)

// Who answered a request, the answered_by attribute of sandrun.requests.
const (
	AnsweredByHost       = "host"
	AnsweredByDispatcher = "dispatcher"
	AnsweredByReaper     = "reaper"
)

// RequestCounter declares on m the counter of requests answered,
// sandrun.requests. The host, the dispatcher and the reaper each add to it
// (see CountAnswer); it is declared here once so that the three agree on
// its name, unit and description, which a Prometheus registry that holds
// two of them (sandrun dev) requires.
func RequestCounter(m metric.Meter) metric.Int64Counter {
	c, _ := m.Int64Counter("sandrun.requests", metric.WithUnit("{request}"),
		metric.WithDescription("requests answered, by who answered (answered_by: host, dispatcher, reaper), op and outcome (ok or the error code)"))
	return c
}

// CountAnswer adds the answer c to counter, a RequestCounter. Its
// attributes are few-valued whatever the request said: an op sandrun does
// not serve counts as "other".
func CountAnswer(ctx context.Context, counter metric.Int64Counter, answeredBy string, c *api.Completion) {
	counter.Add(ctx, 1, metric.WithAttributes(attribute.String("answered_by", answeredBy), OpAttr(c.Op), attribute.String("outcome", Outcome(c))))
}

// OpAttr is the op attribute of a metric: the op, or "other" when sandrun
// does not serve it, so that no client can grow the number of series.
func OpAttr(op api.Op) attribute.KeyValue {
	if !api.Served(op) {
		op = "other"
	}
	return attribute.String("op", string(op))
}

// Outcome is a completion's outcome as metrics name it: "ok", or its error
// code.
func Outcome(c *api.Completion) string {
	switch {
	case c.Status == api.StatusOK:
		return "ok"
	case c.Error != nil && c.Error.Code != "":
		return string(c.Error.Code)
	}
	return "error"
}
