package cli

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	"google.golang.org/api/option"

	"github.com/sandrun/sandrun/internal/config"
	"github.com/sandrun/sandrun/internal/dispatcher"
	"github.com/sandrun/sandrun/internal/hostcred"
	"github.com/sandrun/sandrun/internal/logging"
	"github.com/sandrun/sandrun/internal/reaper"
	"github.com/sandrun/sandrun/internal/system"
	"github.com/sandrun/sandrun/internal/telemetry/export"
)

// defineLogLevel registers the log level flag of a long-running program.
func defineLogLevel(fs *config.FlagSet) *string {
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Env("log-level", "SANDRUN_LOG_LEVEL")
	return level
}

func newLogger(env *Env, level string) (*slog.Logger, error) {
	l, err := logging.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	project := env.Getenv("SANDRUN_PROJECT")
	if project == "" {
		project = env.Getenv("GOOGLE_CLOUD_PROJECT")
	}
	if project == "" {
		project = system.DefaultProject
	}
	return logging.New(env.Stderr, l, project), nil
}

// telemetryHelp ends the help of the programs that export traces and
// metrics.
const telemetryHelp = `

Traces and metrics go out over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set,
or to Cloud Trace and Cloud Monitoring (project --project, as the program's
own identity) with OTEL_TRACES_EXPORTER=google_cloud_trace and
OTEL_METRICS_EXPORTER=google_cloud_monitoring; otherwise nowhere.`

// startTelemetry sets up the program's traces and metrics (exported where
// the OTEL_* environment says: see package export) and returns what
// flushes them when the program ends. With prometheus, it also returns the
// handler that serves the metrics for Prometheus. Google's exporters write
// to project, as the program's own identity, or with google's options.
func startTelemetry(ctx context.Context, service string, prometheus bool, project string, google []option.ClientOption, logger *slog.Logger) (metrics http.Handler, stop func(), err error) {
	tel, err := export.Setup(ctx, export.Options{Service: service, Prometheus: prometheus, Project: project, GoogleClientOptions: google})
	if err != nil {
		return nil, nil, err
	}
	return tel.Metrics, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			logger.Warn("telemetry not flushed", "event", "telemetry.shutdown_failed", "error", err.Error())
		}
	}, nil
}

func runDispatcher(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "dispatcher", `dispatcher [flags]

Pulls requests from the requests subscription, validates and de-duplicates
them, appends them to their session's inbox in order, and launches session
hosts as Cloud Run Jobs executions in the background (at most --max-hosts
running; sessions beyond wait in line). Unless --reaper=false it also runs
the reaper's loop (see reaper --help), so that one always-on process is the
whole control plane. Stops pulling on SIGTERM and finishes the messages in
hand. With --http-addr it serves /live, /health, /ready (its dependencies:
Firestore, Pub/Sub, the Cloud Run job) and /metrics.`+telemetryHelp)
	var sys system.Config
	sys.Define(fs)
	sys.DefinePool(fs)
	sys.DefineLaunch(fs)
	withReaper := fs.Bool("reaper", true, "run the reaper's loop in this process")
	fs.Env("reaper", "SANDRUN_REAPER")
	var rc reaper.Config
	defineReaper(fs, &rc)
	var dc dispatcher.Config
	fs.IntVar(&dc.MaxOutstanding, "max-outstanding", dispatcher.DefaultMaxOutstanding, "messages in hand at once (flow control)")
	fs.Env("max-outstanding", "SANDRUN_MAX_OUTSTANDING")
	fs.DurationVar(&dc.ShutdownTimeout, "shutdown-timeout", dispatcher.DefaultShutdownTimeout, "how long a stopping dispatcher waits for the messages in hand")
	fs.Env("shutdown-timeout", "SANDRUN_SHUTDOWN_TIMEOUT")
	fs.DurationVar(&dc.AckExtension, "ack-extension", dispatcher.DefaultAckExtension, "how far at a time the ack deadline of messages in hand is extended (10s to 10m); a dead dispatcher's messages are redelivered after about that long")
	fs.Env("ack-extension", "SANDRUN_ACK_EXTENSION")
	fs.DurationVar(&dc.OrderHold, "order-hold", dispatcher.DefaultOrderHold, "how long a session's later requests wait for a failed earlier one to be redelivered before going on without it")
	fs.Env("order-hold", "SANDRUN_ORDER_HOLD")
	fs.DurationVar(&dc.RefuseDelay, "refuse-delay", dispatcher.DefaultRefuseDelay, "how long requests held behind a failed earlier one of their session are kept in hand before they are nacked")
	fs.Env("refuse-delay", "SANDRUN_REFUSE_DELAY")
	sys.DefineHTTP(fs)
	level := defineLogLevel(fs)
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	logger, err := newLogger(env, *level)
	if err != nil {
		return err
	}
	metrics, stop, err := startTelemetry(ctx, "sandrun-dispatcher", sys.HTTP.Addr != "", sys.Project, nil, logger)
	if err != nil {
		return err
	}
	defer stop()
	sys.HTTP.Metrics = metrics
	inProcess := &rc
	if !*withReaper {
		inProcess = nil
	}
	return system.RunDispatcher(ctx, &sys, dc, inProcess, logger)
}

// defineReaper registers the reaper's flags, which the dispatcher takes too
// when it runs the reaper's loop.
func defineReaper(fs *config.FlagSet, rc *reaper.Config) {
	fs.DurationVar(&rc.Interval, "reaper-interval", reaper.DefaultInterval, "time between reaper passes")
	fs.Env("reaper-interval", "SANDRUN_REAPER_INTERVAL")
	fs.DurationVar(&rc.PublishAfter, "publish-after", reaper.DefaultPublishAfter, "age after which an unpublished completion is re-published")
	fs.Env("publish-after", "SANDRUN_PUBLISH_AFTER")
	fs.IntVar(&rc.MaxLaunchAttempts, "max-launch-attempts", reaper.DefaultMaxLaunchAttempts, "hosts a session gets that die before serving it, before its requests are answered LAUNCH_FAILED (launches Cloud Run refuses do not count)")
	fs.Env("max-launch-attempts", "SANDRUN_MAX_LAUNCH_ATTEMPTS")
	fs.DurationVar(&rc.OrphanAfter, "orphan-after", reaper.DefaultOrphanAfter, "age after which an execution hosting no session is cancelled")
	fs.Env("orphan-after", "SANDRUN_ORPHAN_AFTER")
	fs.IntVar(&rc.Concurrency, "reaper-concurrency", reaper.DefaultConcurrency, "sessions a reaper pass works on at once")
	fs.Env("reaper-concurrency", "SANDRUN_REAPER_CONCURRENCY")
}

func runReaper(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "reaper", `reaper [--once] [flags]

Recovers from dead hosts (HOST_LOST), relaunches hosts for sessions with
queued work, re-publishes lost completions, destroys sessions idle past their
TTL, and cancels orphaned executions: in a loop, or one pass with --once.
The dispatcher runs the same loop in its own process by default; run this
program only for a dispatcher started with --reaper=false. With --http-addr
it serves /live, /health, /ready (its dependencies: Firestore, Pub/Sub, the
Cloud Run job) and /metrics.`+telemetryHelp)
	var sys system.Config
	sys.Define(fs)
	sys.DefinePool(fs)
	sys.DefineLaunch(fs)
	var rc reaper.Config
	once := fs.Bool("once", false, "make one pass and exit (for a scheduler)")
	defineReaper(fs, &rc)
	sys.DefineHTTP(fs)
	level := defineLogLevel(fs)
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	logger, err := newLogger(env, *level)
	if err != nil {
		return err
	}
	metrics, stop, err := startTelemetry(ctx, "sandrun-reaper", sys.HTTP.Addr != "", sys.Project, nil, logger)
	if err != nil {
		return err
	}
	defer stop()
	sys.HTTP.Metrics = metrics
	return system.RunReaper(ctx, &sys, rc, *once, logger)
}

func runExecutor(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "executor", `executor [flags]

The session host: the entrypoint of the Cloud Run job. One execution hosts
the session named by SANDRUN_SESSION_ID until it is idle. With a launch's
host token, its traces and metrics go out under that identity.`+telemetryHelp)
	var sys system.Config
	sys.Define(fs)
	var hc system.HostConfig
	hc.DefineHost(fs)
	level := defineLogLevel(fs)
	if err := fs.Parse(env.Getenv, args); err != nil {
		return err
	}
	logger, err := newLogger(env, *level)
	if err != nil {
		return err
	}
	// The launch's token leaves the environment at once, so that nothing
	// the host starts could inherit it.
	tok, _, err := hostcred.FromEnv(env.Getenv)
	if err != nil {
		return err
	}
	os.Unsetenv(hostcred.EnvToken)
	os.Unsetenv(hostcred.EnvExpires)
	// With a launch's token, the host's traces and metrics go out under
	// the host identity too, never the job's own (sandbox) account; the
	// host renews the one source both use.
	var google []option.ClientOption
	if tok.Value != "" {
		hc.Tokens = hostcred.NewSource(tok, sys.Host.RenewBefore)
		google = append(google, option.WithTokenSource(hc.Tokens))
	}
	_, stop, err := startTelemetry(ctx, "sandrun-executor", false, sys.Project, google, logger)
	if err != nil {
		return err
	}
	defer stop()
	return system.RunHost(ctx, &sys, hc, logger)
}
