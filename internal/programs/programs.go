// Package programs is the command line of sandrun's deployed programs: the
// dispatcher, the reaper and the executor. Each command reads its settings
// (flags and environment, from the table in internal/system), sets up its
// logs and telemetry, and runs the program as internal/system wires it.
// This package holds what the three share and the executor's command;
// package control holds the dispatcher's and the reaper's, which serve
// metrics for Prometheus, so that the executor, which runs in every
// sandbox, links none of it.
//
// cmd/dispatcher, cmd/reaper and cmd/executor call Main with their
// command; the people's command line (internal/cli) offers the same
// commands, so `sandrun executor` is the executor. These packages must
// never link the local cloud (emulator/...) or the bench: a test
// (cmd/deps_test.go) keeps it so.
package programs

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/api/option"

	"github.com/sandrun/sandrun/internal/config"
	"github.com/sandrun/sandrun/internal/host"
	"github.com/sandrun/sandrun/internal/hostcred"
	"github.com/sandrun/sandrun/internal/logging"
	"github.com/sandrun/sandrun/internal/system"
	"github.com/sandrun/sandrun/internal/telemetry/export"
)

// Env is what a command may touch of the outside world.
type Env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	// Getenv reads the environment (os.Getenv in production).
	Getenv func(string) string
}

// OSEnv is the Env of a real process.
func OSEnv() *Env {
	return &Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Getenv: os.Getenv}
}

// Command is one command: it runs with args (without its name).
type Command func(ctx context.Context, env *Env, args []string) error

// Main runs the program name, whose command is run, with args and
// returns the process exit code.
func Main(ctx context.Context, env *Env, name string, run Command, args []string) int {
	return ExitCode(env.Stderr, "sandrun "+name, run(ctx, env, args))
}

// ExitCode is the exit code of a command that returned err: 0 when it
// succeeded or printed its help, 2 for bad arguments (the flag set said
// why), 1 otherwise, after printing err after prefix.
func ExitCode(stderr io.Writer, prefix string, err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, config.ErrUsage):
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
	return 1
}

// FlagSet returns a command's flag set; its usage starts with "sandrun "
// and synopsis.
func FlagSet(env *Env, name, synopsis string) *config.FlagSet {
	return config.New(name, "sandrun "+synopsis, env.Stderr)
}

// NewLogger is a program's logger at level, for project.
func NewLogger(env *Env, level, project string) (*slog.Logger, error) {
	l, err := logging.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return logging.New(env.Stderr, l, project), nil
}

// TelemetryHelp ends the help of the programs that export traces and
// metrics.
const TelemetryHelp = `

Traces and metrics go out over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set,
or to Cloud Trace and Cloud Monitoring (project --project, as the program's
own identity) with OTEL_TRACES_EXPORTER=google_cloud_trace and
OTEL_METRICS_EXPORTER=google_cloud_monitoring; otherwise nowhere.`

// Telemetry says how a program exports its traces and metrics.
type Telemetry struct {
	// Service names the program (service.name).
	Service string
	// Readers read the metrics whatever the environment says (a
	// Prometheus endpoint's: package telemetry/prometheus).
	Readers []sdkmetric.Reader
	// Project is where Google's exporters write, as the program's own
	// identity, or with Google's options.
	Project string
	Google  []option.ClientOption
}

// StartTelemetry sets up the program's traces and metrics (exported where
// the OTEL_* environment says: see package export) and returns what
// flushes them when the program ends.
func StartTelemetry(ctx context.Context, t Telemetry, logger *slog.Logger) (stop func(), err error) {
	tel, err := export.Setup(ctx, export.Options{Service: t.Service, Readers: t.Readers, Project: t.Project, GoogleClientOptions: t.Google})
	if err != nil {
		return nil, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			logger.Warn("telemetry not flushed", "event", "telemetry.shutdown_failed", "error", err.Error())
		}
	}, nil
}

// Parse defines the settings program p takes, parses them from env and
// args, and returns them with the program's logger.
func Parse(fs *config.FlagSet, env *Env, args []string, p system.Program) (*system.Settings, *slog.Logger, error) {
	s := system.DefaultSettings(system.Table(), p)
	s.Define(fs, system.Table(), p)
	if err := fs.Parse(env.Getenv, args); err != nil {
		return nil, nil, err
	}
	logger, err := NewLogger(env, s.LogLevel, s.Project)
	if err != nil {
		return nil, nil, err
	}
	return s, logger, nil
}

// Executor runs the session host.
func Executor(ctx context.Context, env *Env, args []string) error {
	fs := FlagSet(env, "executor", `executor [flags]

The session host: the entrypoint of the Cloud Run job. One execution hosts
the session named by SANDRUN_SESSION_ID until it is idle. With a launch's
host token, its traces and metrics go out under that identity. Its own Go
code runs on one CPU (GOMAXPROCS=1) unless GOMAXPROCS is set.

With `+EnvCPUProfileDir+` set to a directory, the host writes a CPU profile
of itself (not of its commands) there, as executor-<session>-<pid>.pprof,
when it ends or is told to stop: sandrun bench -host-cpuprofile sets it.`+TelemetryHelp)
	s, logger, err := Parse(fs, env, args, system.Executor)
	if err != nil {
		return err
	}
	// The host's own work is waiting: on the inbox, on its commands, on
	// Firestore, Pub/Sub and Cloud Storage. A second P does not make it
	// faster (a checkpoint's walk and hashing neither, measured), but
	// under load it costs CPU in the sandbox the commands share: the
	// scheduler wakes and spins the idle P's thread for every goroutine
	// that becomes runnable. The environment's GOMAXPROCS, when set,
	// stands.
	if env.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if dir := env.Getenv(EnvCPUProfileDir); dir != "" {
		name := s.Executor.SessionID
		if name == "" {
			name = "pool"
		}
		// Stopped when ctx ends too: a host told to stop may be killed
		// before it returns, and what it does then is not what the
		// profile is for.
		stopProfile, err := StartCPUProfile(ctx, filepath.Join(dir, fmt.Sprintf("executor-%s-%d.pprof", name, os.Getpid())))
		if err != nil {
			return err
		}
		defer stopProfile()
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
	hc := s.Executor
	// Cloud Run warns of a maintenance pause with SIGTSTP and resumes
	// with SIGCONT: the host keeps its lease through the pause.
	hc.Maintenance = host.MaintenanceSignals(ctx)
	var google []option.ClientOption
	if tok.Value != "" {
		hc.Tokens = hostcred.NewSource(tok, s.Host.RenewBefore)
		google = append(google, option.WithTokenSource(hc.Tokens))
	}
	stop, err := StartTelemetry(ctx, Telemetry{Service: "sandrun-executor", Project: s.Project, Google: google}, logger)
	if err != nil {
		return err
	}
	defer stop()
	return system.RunHost(ctx, &s.Config, hc, logger)
}

// EnvCPUProfileDir names the variable that makes the executor profile its
// own CPU (a directory to write the profile to). Off by default; the bench
// sets it to see where the hosts' CPU goes, which its own profile misses.
const EnvCPUProfileDir = "SANDRUN_EXECUTOR_CPUPROFILE"

// StartCPUProfile profiles this process's CPU into the file at path until
// the returned stop is called or ctx ends, whichever is first.
func StartCPUProfile(ctx context.Context, path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	var once sync.Once
	write := func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
	unregister := context.AfterFunc(ctx, write)
	return func() { unregister(); write() }, nil
}
