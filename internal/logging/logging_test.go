package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestNewWritesCloudLoggingKeys(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, slog.LevelInfo, "p").Warn("lease lost", "event", "host.lease_lost", "session_id", "s1")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	for k, want := range map[string]string{"severity": "WARNING", "message": "lease lost", "event": "host.lease_lost", "session_id": "s1"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %q", k, line[k], want)
		}
	}
	if _, ok := line["timestamp"]; !ok {
		t.Errorf("no timestamp in %v", line)
	}
	if _, ok := line[TraceKey]; ok {
		t.Errorf("a line logged without a span names a trace: %v", line)
	}
}

// TestLinesNameTheirTrace: a line logged with a span's context carries
// the trace and span in the fields Cloud Logging links on, also through a
// logger derived With attributes.
func TestLinesNameTheirTrace(t *testing.T) {
	var buf bytes.Buffer
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	New(&buf, slog.LevelInfo, "proj").With("session_id", "s1").InfoContext(ctx, "request served", "event", "request.done")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	for k, want := range map[string]any{TraceKey: "projects/proj/traces/4bf92f3577b34da6a3ce929d0e0e4736", SpanKey: "00f067aa0ba902b7", TraceSampledKey: true, "session_id": "s1"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v", k, line[k], want)
		}
	}
}

func TestCommandRedactsAndClips(t *testing.T) {
	tests := []struct{ in, want string }{
		{"echo hello", "echo hello"},
		{"export API_KEY=abc123 && run", "export API_KEY=*** && run"},
		{"GITHUB_TOKEN='x y' git push", "GITHUB_TOKEN=*** git push"},
		{`DB_PASSWORD="p w" psql`, "DB_PASSWORD=*** psql"},
		{"PATH=/usr/bin ls", "PATH=/usr/bin ls"},
	}
	for _, tt := range tests {
		if got := Command(tt.in); got != tt.want {
			t.Errorf("Command(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := strings.Repeat("é", 300)
	got := Command(long)
	if len(got) > maxCommand+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Errorf("long command clipped to %d bytes: %q", len(got), got)
	}
}
