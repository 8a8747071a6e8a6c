package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/telemetry/telemetrytest"
)

// TestMetrics runs requests that succeed, fail and time out through the
// local cloud, with the dispatcher and the host, processes of their own,
// exporting metrics over OTLP, and checks that each counter and histogram
// moved by exactly what was done: requests by who answered, op and
// outcome; latency histograms by op; the launch and its start; live
// background processes and hosts; the checkpoint and the idle exit.
func TestMetrics(t *testing.T) {
	rcv := telemetrytest.Start(t)
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.Endpoint, "OTEL_EXPORTER_OTLP_INSECURE=true", "OTEL_METRIC_EXPORT_INTERVAL=200", "OTEL_TRACES_EXPORTER=none"}
	// No checkpoint on a timer, however slow the machine.
	hostEnv := append([]string{"SANDRUN_CHECKPOINT_INTERVAL=1h"}, otel...)
	w := start(t, options{ownDispatcher: true, idleTimeout: 3 * time.Second, hostEnv: hostEnv})
	for _, kv := range otel {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	w.program("dispatcher")
	tp := w.subscribe(w.sys.Names.Completions)
	const s = "metered"

	// Served by the host: two ok, a missing cwd, a missing file, a timeout.
	expect := func(req *api.Request, status api.Status, code api.ErrorCode) *api.Completion {
		t.Helper()
		req.SessionID = s
		c := w.do(req)
		if c.Status != status || (code != "" && (c.Error == nil || c.Error.Code != code)) {
			t.Fatalf("%s: %s %+v, want %s %s", req.Op, c.Status, c.Error, status, code)
		}
		return c
	}
	// The file is the session's one checkpoint (a workspace that never
	// held a file has none).
	if c := expect(&api.Request{Op: api.OpExec, Command: "echo one > one.txt"}, api.StatusOK, ""); !c.ColdStart {
		t.Errorf("first request: cold_start false, want a cold start")
	}
	expect(&api.Request{Op: api.OpExec, Command: "pwd", Cwd: "/no/such/dir"}, api.StatusError, api.CodeNotFound)
	expect(&api.Request{Op: api.OpFileRead, Path: "no-such-file.txt"}, api.StatusError, api.CodeNotFound)
	expect(&api.Request{Op: api.OpExec, Command: "sleep 30", TimeoutSeconds: 0.5}, api.StatusError, api.CodeTimeout)
	expect(&api.Request{Op: api.OpExec, Command: "sleep 60", Background: true}, api.StatusOK, "")
	waitMetric(t, rcv, "sandrun.processes.live", map[string]float64{"": 1})
	expect(&api.Request{Op: api.OpProcessKill, All: true}, api.StatusOK, "")
	waitMetric(t, rcv, "sandrun.processes.live", map[string]float64{"": 0})
	waitMetric(t, rcv, "sandrun.hosts.live", map[string]float64{"": 1})

	// Answered by the dispatcher: a session.get of this session and of
	// one that does not exist, an unknown op; and a dead letter.
	expect(&api.Request{Op: api.OpSessionGet}, api.StatusOK, "")
	if c := w.do(&api.Request{SessionID: "never-made", Op: api.OpSessionGet}); c.Error == nil || c.Error.Code != api.CodeNotFound {
		t.Fatalf("session.get of a missing session: %+v", c)
	}
	w.publishRaw([]byte(`{"request_id":"metrics-bad-op","session_id":"`+s+`","op":"frobnicate"}`), nil, "")
	tp.waitFor(t, "the unknown op's answer", time.Minute, func(ms []*pubsub.Message) bool { return len(byRequest(ms)["metrics-bad-op"]) > 0 })
	w.publishRaw([]byte("not json"), nil, "")

	// The host leaves once idle: it checkpoints first.
	w.waitNoHost(s)

	ops := func(exec, read, kill float64) map[string]float64 {
		return map[string]float64{"op=exec": exec, "op=file.read": read, "op=process.kill": kill}
	}
	want := map[string]map[string]float64{
		"sandrun.requests": {
			"answered_by=host,op=exec,outcome=ok":                      2,
			"answered_by=host,op=exec,outcome=NOT_FOUND":               1,
			"answered_by=host,op=exec,outcome=TIMEOUT":                 1,
			"answered_by=host,op=file.read,outcome=NOT_FOUND":          1,
			"answered_by=host,op=process.kill,outcome=ok":              1,
			"answered_by=dispatcher,op=session.get,outcome=ok":         1,
			"answered_by=dispatcher,op=session.get,outcome=NOT_FOUND":  1,
			"answered_by=dispatcher,op=other,outcome=INVALID_ARGUMENT": 1,
		},
		// Histograms: the count of each series.
		"sandrun.request.duration":        ops(4, 1, 1),
		"sandrun.request.queue_wait":      ops(4, 1, 1),
		"sandrun.request.run_duration":    ops(4, 1, 1),
		"sandrun.dispatcher.dead_letters": {"reason=not_a_request": 1},
		"sandrun.host.launches":           {"outcome=ok,pooled=false": 1},
		"sandrun.host.start.duration":     {"pooled=false": 1},
		"sandrun.hosts.live":              {"": 0},
		"sandrun.host.idle_exits":         {"": 1},
		"sandrun.processes.live":          {"": 0},
		"sandrun.checkpoint.size":         {"": 1},
		"sandrun.checkpoint.duration":     {"outcome=ok": 1},
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		waitMetric(t, rcv, name, want[name])
	}
	// Nothing more arrives: the values hold over further exports (the
	// dispatcher keeps exporting; the host flushed as it exited).
	for range 3 {
		select {
		case <-rcv.Changed():
		case <-time.After(10 * time.Second):
			t.Fatal("no export for 10s from the dispatcher")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if got := rcv.Points(name); !maps.Equal(got, want[name]) {
			t.Errorf("%s = %v, want %v", name, got, want[name])
		}
	}
}

// waitMetric waits until the series of the named metric are exactly want
// (Points' keys and values), or fails after a minute saying what it saw.
func waitMetric(t *testing.T, rcv *telemetrytest.Receiver, name string, want map[string]float64) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		changed := rcv.Changed()
		got := rcv.Points(name)
		if maps.Equal(got, want) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s after a minute: %s; want %s", name, fmtPoints(got), fmtPoints(want))
		}
	}
}

func fmtPoints(m map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("{%s}=%v", k, m[k]))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
