package e2e

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/logging"
	"github.com/sandrun/sandrun/internal/telemetry"
	"github.com/sandrun/sandrun/internal/telemetry/telemetrytest"
)

// TestOneTracePerRequest follows a request from the backend's publish to
// its completion: the dispatcher and the host, each a process of its own,
// export their spans over OTLP, and every span is of the backend's trace,
// each the child of the one before it across the process boundaries.
func TestOneTracePerRequest(t *testing.T) {
	rcv := telemetrytest.Start(t)
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.Endpoint, "OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_METRIC_EXPORT_INTERVAL=500"}
	w := start(t, options{ownDispatcher: true, idleTimeout: time.Second, hostEnv: otel})
	// The dispatcher, a process of its own, exports too.
	for _, kv := range otel {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	w.program("dispatcher")

	// The backend's own span, as a traced backend would have it.
	var tid trace.TraceID
	var sid trace.SpanID
	rand.Read(tid[:])
	rand.Read(sid[:])
	root := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), root)
	tp := w.subscribe(w.sys.Names.Completions)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	done, err := w.client.Do(rctx, &api.Request{RequestID: "traced-1", SessionID: "traced", Op: api.OpExec, Command: "echo traced"})
	if err != nil || done.Stdout != "traced\n" {
		t.Fatalf("request: %+v, %v", done, err)
	}

	// Every span of the request, the host's checkpoint when it leaves
	// included.
	want := []string{"sandrun.dispatch", "sandrun.launch", "sandrun.host.start", "sandrun.restore", "sandrun.request",
		"sandrun.run", "sandrun.request.checkpoint", "sandrun.record", "sandrun.publish completion", "sandrun.checkpoint"}
	byName := map[string]telemetrytest.Span{}
	deadline := time.After(time.Minute)
	for {
		changed := rcv.Changed()
		for _, s := range rcv.Spans() {
			if s.TraceID == tid.String() {
				byName[s.Name] = s
			}
		}
		if !slices.ContainsFunc(want, func(name string) bool { _, ok := byName[name]; return !ok }) {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("spans of trace %s after a minute: %v; want %v", tid, names(byName), want)
		}
	}
	parents := map[string]string{ // span → its parent
		"sandrun.launch":             "sandrun.dispatch",
		"sandrun.host.start":         "sandrun.launch",
		"sandrun.restore":            "sandrun.host.start",
		"sandrun.request":            "sandrun.dispatch",
		"sandrun.run":                "sandrun.request",
		"sandrun.request.checkpoint": "sandrun.request",
		"sandrun.record":             "sandrun.request",
		"sandrun.publish completion": "sandrun.request",
		"sandrun.checkpoint":         "sandrun.host.start",
	}
	if got := byName["sandrun.dispatch"]; got.ParentSpanID != sid.String() || got.Service != "sandrun-dispatcher" {
		t.Errorf("dispatch span %+v: want the backend's span %s as parent, from the dispatcher", got, sid)
	}
	for child, parent := range parents {
		if byName[child].ParentSpanID != byName[parent].SpanID {
			t.Errorf("%s's parent is %s, want %s (%s)", child, byName[child].ParentSpanID, parent, byName[parent].SpanID)
		}
	}
	for _, name := range []string{"sandrun.host.start", "sandrun.request", "sandrun.run", "sandrun.checkpoint"} {
		if byName[name].Service != "sandrun-executor" {
			t.Errorf("%s came from %q, want the host (sandrun-executor)", name, byName[name].Service)
		}
	}
	req := byName["sandrun.request"]
	for k, v := range map[string]string{"sandrun.session_id": "traced", "sandrun.request_id": "traced-1", "sandrun.op": "exec", "sandrun.execution_id": done.ExecutionID} {
		if req.Attributes[k] != v {
			t.Errorf("request span attribute %s = %q, want %q", k, req.Attributes[k], v)
		}
	}

	// The completion carries the trace out: its publish span's context.
	msgs := tp.waitFor(t, "the completion", time.Minute, func(ms []*pubsub.Message) bool { return len(byRequest(ms)["traced-1"]) > 0 })
	got := telemetry.WithTraceparent(context.Background(), byRequest(msgs)["traced-1"][0].Attributes[api.AttrTraceparent])
	if sc := trace.SpanContextFromContext(got); sc.TraceID() != tid || sc.SpanID().String() != byName["sandrun.publish completion"].SpanID {
		t.Errorf("completion traceparent names %s/%s, want trace %s, span %s", sc.TraceID(), sc.SpanID(), tid, byName["sandrun.publish completion"].SpanID)
	}

	// The host's log line of the request names the trace as Cloud Logging
	// links it.
	if !strings.Contains(w.logs.String(), `"`+logging.TraceKey+`":"projects/`+w.sys.Project+`/traces/`+tid.String()+`"`) {
		t.Errorf("no log line names trace %s", tid)
	}
}

func names(m map[string]telemetrytest.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
