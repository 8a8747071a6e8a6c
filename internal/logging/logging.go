// Package logging makes the structured JSON loggers of sandrun's programs:
// one event per line, with the keys Cloud Logging reads (severity, message,
// timestamp) and sandrun's own stable keys (event, session_id,
// execution_id, request_id, command, duration_seconds, exit_code).
package logging

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
)

// New returns a JSON logger writing to w at the given level. A line
// logged with a context that carries a span (InfoContext and the like)
// names its trace and span in the fields Cloud Logging links to Cloud
// Trace; project is the Google Cloud project the trace belongs to.
func New(w io.Writer, level slog.Level, project string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: cloudLogging})
	return slog.New(traceHandler{Handler: h, project: project})
}

// The fields of a log entry that Cloud Logging links to a trace.
const (
	TraceKey        = "logging.googleapis.com/trace"
	SpanKey         = "logging.googleapis.com/spanId"
	TraceSampledKey = "logging.googleapis.com/trace_sampled"
)

// traceHandler adds the trace of the record's context to the record.
type traceHandler struct {
	slog.Handler
	project string
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String(TraceKey, "projects/"+h.project+"/traces/"+sc.TraceID().String()),
			slog.String(SpanKey, sc.SpanID().String()), slog.Bool(TraceSampledKey, sc.IsSampled()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{Handler: h.Handler.WithAttrs(attrs), project: h.project}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{Handler: h.Handler.WithGroup(name), project: h.project}
}

// cloudLogging renames the standard keys to those Cloud Logging reads from a
// JSON line.
func cloudLogging(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		a.Key = "timestamp"
	case slog.MessageKey:
		a.Key = "message"
	case slog.LevelKey:
		a.Key = "severity"
		switch lvl := a.Value.Any().(slog.Level); {
		case lvl >= slog.LevelError:
			a.Value = slog.StringValue("ERROR")
		case lvl >= slog.LevelWarn:
			a.Value = slog.StringValue("WARNING")
		case lvl >= slog.LevelInfo:
			a.Value = slog.StringValue("INFO")
		default:
			a.Value = slog.StringValue("DEBUG")
		}
	}
	return a
}

// ParseLevel reads debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// maxCommand bounds how much of a command a log line carries.
const maxCommand = 200

// secretAssignment matches NAME=value where the name suggests a secret.
var secretAssignment = regexp.MustCompile(`(?i)\b([A-Z0-9_]*(?:SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|CREDENTIAL|PRIVATE)[A-Z0-9_]*)=("[^"]*"|'[^']*'|\S+)`)

// Command returns a command as a log line may show it: cut to a bounded
// length, with values assigned to names that look secret replaced by ***.
func Command(cmd string) string {
	s := secretAssignment.ReplaceAllString(cmd, "$1=***")
	if len(s) > maxCommand {
		n := maxCommand
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
