package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/api/googleapi"

	"github.com/sandrun/sandrun/internal/dispatcher"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/health"
	"github.com/sandrun/sandrun/internal/hostcred"
	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/reaper"
	"github.com/sandrun/sandrun/internal/retry"
)

// ExecutorImage is the image name of the host job on the local cloud.
const ExecutorImage = "sandrun-executor"

// LocalConfig says how to run the system on a local cloud.
type LocalConfig struct {
	// Executor is the program the host job runs, with ExecutorArgs.
	Executor     string
	ExecutorArgs []string
	// StateDir holds the sessions' workspaces, unless Workspace is set.
	StateDir string
	// Workspace, if set, is where every host keeps its session's
	// workspace, as in production (/workspace): the local cloud must then
	// give each execution a directory of its own there
	// (cloudrun.Config.Workspace), and a new host finds the workspace by
	// restoring the session's checkpoint. Empty: each session's workspace
	// is StateDir/workspaces/SESSION_ID, shared by its hosts.
	Workspace string
	// Host settings passed to every host through the job's environment.
	IdleTimeout  time.Duration
	LeaseTTL     time.Duration
	IdleLeaseTTL time.Duration
	// ReaperInterval is the time between reaper passes.
	ReaperInterval time.Duration
	// Reaper and Dispatcher tune those programs.
	Reaper     reaper.Config
	Dispatcher dispatcher.Config
	// NoDispatcher and NoReaper leave those programs out, for tests that
	// run, stop and restart their own.
	NoDispatcher, NoReaper bool
	// StartDelay models a cold start on every execution.
	StartDelay time.Duration
	// LogLevel of the hosts.
	LogLevel string
	Logger   *slog.Logger
}

// Local is the system running on a local cloud.
type Local struct {
	Config Config
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
	// http serves the health and metrics of both programs, or is nil;
	// stopHTTP stops it and closes its connections.
	http     *health.Server
	stopHTTP func()
}

// StartLocal runs the dispatcher and the reaper against a running local
// cloud whose environment is already set in this process: it creates the
// topics, subscriptions, bucket and host job, whose command is
// cfg.Executor. When sys.HTTP.Addr is set, one health and metrics server
// serves for both programs (HTTPAddr says where). Close stops them.
func StartLocal(ctx context.Context, sys Config, cfg LocalConfig) (*Local, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	// Hosts work with minted tokens, as in a deployment: the local cloud
	// mints them (and checks none).
	sys.Host = localHostTokens(sys.Project, sys.Host)
	clients, err := gcp.Connect(ctx, sys.Project, nil)
	if err != nil {
		return nil, err
	}
	defer clients.Close()
	err = clients.Storage.Bucket(sys.Bucket).Create(ctx, sys.Project, nil)
	if e := (*googleapi.Error)(nil); err != nil && !(errors.As(err, &e) && e.Code == http.StatusConflict) {
		return nil, fmt.Errorf("create bucket %s: %w", sys.Bucket, err)
	}
	if err := outbox.Provision(ctx, clients.PubSub, sys.Names); err != nil {
		return nil, err
	}
	runner, err := jobrunner.New(ctx, sys.JobName())
	if err != nil {
		return nil, err
	}
	defer runner.Close()
	spec := localJob(sys, cfg)
	if err := runner.EnsureJob(ctx, spec); err != nil {
		return nil, err
	}

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Local{Config: sys, cancel: cancel, stopHTTP: func() {}}
	// The programs share one server, started here, not one each.
	l.Config.HTTP = HTTP{}
	if sys.HTTP.Addr != "" {
		if err := l.serveHTTP(rctx, sys, cfg.Logger); err != nil {
			cancel()
			return nil, err
		}
	}
	rc := cfg.Reaper
	if cfg.ReaperInterval > 0 {
		rc.Interval = cfg.ReaperInterval
	}
	// As deployed, the reaper's loop runs in the dispatcher's process.
	switch {
	case !cfg.NoDispatcher:
		inProcess := &rc
		if cfg.NoReaper {
			inProcess = nil
		}
		l.run(rctx, "dispatcher", cfg.Logger, func(ctx context.Context) error {
			return RunDispatcher(ctx, &l.Config, cfg.Dispatcher, inProcess, cfg.Logger)
		})
	case !cfg.NoReaper:
		l.run(rctx, "reaper", cfg.Logger, func(ctx context.Context) error { return RunReaper(ctx, &l.Config, rc, false, cfg.Logger) })
	}
	return l, nil
}

// localJob is the host job of the local system: its command is the
// executor program itself (on the local cloud a container's command runs as
// a local program), and its environment gives every host the settings of
// sys and cfg, as Terraform's job does in a deployment (see JobEnv).
func localJob(sys Config, cfg LocalConfig) jobrunner.JobSpec {
	s := DefaultSettings(Table(), Executor)
	s.Config = sys
	h := &s.Executor
	if cfg.Workspace != "" {
		h.Workspace = cfg.Workspace
	} else {
		h.WorkspacesDir = filepath.Join(cfg.StateDir, "workspaces")
	}
	for _, d := range []struct {
		to   *time.Duration
		from time.Duration
	}{
		{&h.IdleTimeout, cfg.IdleTimeout}, {&h.LeaseTTL, cfg.LeaseTTL}, {&h.IdleLeaseTTL, cfg.IdleLeaseTTL},
	} {
		if d.from > 0 {
			*d.to = d.from
		}
	}
	s.LogLevel = cfg.LogLevel
	spec := jobrunner.JobSpec{Image: ExecutorImage, Command: []string{cfg.Executor}, Args: cfg.ExecutorArgs, Env: JobEnv(Table(), s), TaskTimeout: 24 * time.Hour}
	if cfg.StartDelay > 0 {
		spec.Annotations = map[string]string{"emulator.sandrun.dev/start-delay": cfg.StartDelay.String()}
	}
	return spec
}

// localHostTokens fills what h leaves unset: the host account of the
// project, as Terraform names it, and the default durations.
func localHostTokens(project string, h hostcred.Config) hostcred.Config {
	if h.Account == "" {
		h.Account = "sandrun-executor@" + project + ".iam.gserviceaccount.com"
	}
	return h.WithDefaults()
}

// run runs a component until the system closes, and restarts it with
// backoff when it stops before then (a stream it could not reopen, a lost
// connection), as Cloud Run restarts a service's instance in production.
func (l *Local) run(ctx context.Context, name string, logger *slog.Logger, f func(context.Context) error) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := retry.Restart(ctx, retry.Stream, logger, name, f); err != nil {
			l.mu.Lock()
			l.errs = append(l.errs, err)
			l.mu.Unlock()
		}
	}()
}

// serveHTTP starts the health and metrics server of sys.HTTP with the
// checks of a dispatcher, on connections of its own.
func (l *Local) serveHTTP(ctx context.Context, sys Config, logger *slog.Logger) error {
	s, err := connect(ctx, &sys, nil, logger)
	if err != nil {
		return err
	}
	runner, err := jobrunner.New(ctx, sys.JobName())
	if err != nil {
		s.close()
		return err
	}
	srv, stop, err := startHTTP(ctx, sys.HTTP, checks(&sys, s, runner, true), logger)
	if err != nil {
		runner.Close()
		s.close()
		return err
	}
	l.http = srv
	l.stopHTTP = func() {
		stop()
		runner.Close()
		s.close()
	}
	return nil
}

// HTTPAddr is the address of the health and metrics server, or "" when
// there is none.
func (l *Local) HTTPAddr() string {
	if l.http == nil {
		return ""
	}
	return l.http.Addr()
}

// Close stops the dispatcher and the reaper and waits for them, then the
// health and metrics server.
func (l *Local) Close() error {
	l.cancel()
	l.wg.Wait()
	l.stopHTTP()
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// Env is the environment that points a client, or another dispatcher or
// reaper, at the local system, on top of the local cloud's own: its
// deployment settings (see DeploymentEnv).
func (l *Local) Env() []string {
	return DeploymentEnv(Table(), &Settings{Config: l.Config})
}
