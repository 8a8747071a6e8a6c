// Package control is the command line of sandrun's control plane: the
// dispatcher and the reaper (see package programs, which holds what they
// share with the executor). Unlike the executor, they serve their metrics
// for Prometheus on their HTTP server.
package control

import (
	"context"
	"log/slog"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/sandrun/sandrun/internal/config"
	"github.com/sandrun/sandrun/internal/programs"
	"github.com/sandrun/sandrun/internal/system"
	"github.com/sandrun/sandrun/internal/telemetry/prometheus"
)

// Dispatcher runs the dispatcher.
func Dispatcher(ctx context.Context, env *programs.Env, args []string) error {
	fs := programs.FlagSet(env, "dispatcher", `dispatcher [flags]

Pulls requests from the requests subscription, validates and de-duplicates
them, appends them to their session's inbox in order, and launches session
hosts as Cloud Run Jobs executions in the background (at most --max-hosts
running; sessions beyond wait in line). Unless --reaper=false it also runs
the reaper's loop (see reaper --help), so that one always-on process is the
whole control plane. Stops pulling on SIGTERM and finishes the messages in
hand. With --http-addr it serves /live, /health, /ready (its dependencies:
Firestore, Pub/Sub, the Cloud Run job) and /metrics.`+programs.TelemetryHelp)
	s, logger, stop, err := start(ctx, fs, env, args, system.Dispatcher)
	if err != nil {
		return err
	}
	defer stop()
	inProcess := &s.Reaper
	if !s.WithReaper {
		inProcess = nil
	}
	return system.RunDispatcher(ctx, &s.Config, s.Dispatcher, inProcess, logger)
}

// Reaper runs the reaper.
func Reaper(ctx context.Context, env *programs.Env, args []string) error {
	fs := programs.FlagSet(env, "reaper", `reaper [--once] [flags]

Recovers from dead hosts (HOST_LOST), relaunches hosts for sessions with
queued work, re-publishes lost completions, destroys sessions idle past their
TTL, and cancels orphaned executions: in a loop, or one pass with --once.
The dispatcher runs the same loop in its own process by default; run this
program only for a dispatcher started with --reaper=false. With --http-addr
it serves /live, /health, /ready (its dependencies: Firestore, Pub/Sub, the
Cloud Run job) and /metrics.`+programs.TelemetryHelp)
	once := fs.Bool("once", false, "make one pass and exit (for a scheduler)")
	s, logger, stop, err := start(ctx, fs, env, args, system.Reaper)
	if err != nil {
		return err
	}
	defer stop()
	return system.RunReaper(ctx, &s.Config, s.Reaper, *once, logger)
}

// start parses the settings of program p from env and args and sets up
// its logs and its telemetry; stop flushes the telemetry.
func start(ctx context.Context, fs *config.FlagSet, env *programs.Env, args []string, p system.Program) (s *system.Settings, logger *slog.Logger, stop func(), err error) {
	if s, logger, err = programs.Parse(fs, env, args, p); err != nil {
		return nil, nil, nil, err
	}
	if stop, err = StartTelemetry(ctx, "sandrun-"+fs.Name(), s, logger); err != nil {
		return nil, nil, nil, err
	}
	return s, logger, stop, nil
}

// StartTelemetry sets up the telemetry of service (see
// programs.StartTelemetry), and when s has an HTTP server, the metrics it
// serves for Prometheus (s.HTTP.Metrics).
func StartTelemetry(ctx context.Context, service string, s *system.Settings, logger *slog.Logger) (stop func(), err error) {
	t := programs.Telemetry{Service: service, Project: s.Project}
	if s.HTTP.Addr != "" {
		reader, handler, err := prometheus.New()
		if err != nil {
			return nil, err
		}
		t.Readers, s.HTTP.Metrics = []sdkmetric.Reader{reader}, handler
	}
	return programs.StartTelemetry(ctx, t, logger)
}
