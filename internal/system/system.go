// Package system wires sandrun's programs from their configuration. The
// same code starts each program in its own process (cmd/dispatcher,
// cmd/reaper, cmd/executor) and all of them in one process (`sandrun dev`),
// so tests and the local cloud wire exactly as production does. It also
// declares every setting of the programs, once (Table), and reads the
// environment only through the getenv it is given.
package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"

	"github.com/sandrun/sandrun/internal/dispatcher"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/host"
	"github.com/sandrun/sandrun/internal/hostcred"
	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/launch"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/procs"
	"github.com/sandrun/sandrun/internal/reaper"
	"github.com/sandrun/sandrun/internal/session"
)

// Config is what every program of a deployment agrees on.
type Config struct {
	Project string
	Region  string
	// Job is the Cloud Run job whose executions host sessions.
	Job string
	// Bucket holds the sessions' objects.
	Bucket string
	Names  outbox.Names
	// TTL is how long an idle session lives.
	TTL time.Duration
	// Pool is the warm pool's policy (off unless its Min or Target is set).
	Pool pool.Policy
	// Launch is how hosts are launched: how many launches at once, and the
	// most running hosts.
	Launch launch.Config
	// Host is how the dispatcher and the reaper mint and renew the hosts'
	// access tokens, and how hosts renew theirs (off unless its Account
	// is set).
	Host hostcred.Config
	// HTTP is the program's own health and metrics server (a dispatcher's
	// or a reaper's; off unless its Addr is set). Unlike the rest, it is
	// not shared by the deployment's programs.
	HTTP HTTP
}

// Defaults of Config.
const (
	DefaultProject = "sandrun-local"
	DefaultRegion  = "us-central1"
	DefaultJob     = "sandrun-executor"
	DefaultBucket  = "sandrun-local"
)

// JobName is the full name of the host job.
func (c *Config) JobName() string { return jobrunner.JobName(c.Project, c.Region, c.Job) }

// services are the connections a program of the system holds.
type services struct {
	clients *gcp.Clients
	store   *session.Store
	tokens  *hostcred.FirestoreStore
	queue   *outbox.Publisher
}

// connect opens the program's clients, authenticated with ts when it is
// not nil (see gcp.Connect).
func connect(ctx context.Context, c *Config, ts oauth2.TokenSource, logger *slog.Logger) (*services, error) {
	clients, err := gcp.Connect(ctx, c.Project, ts)
	if err != nil {
		return nil, err
	}
	return &services{
		clients: clients,
		store:   session.NewStore(clients.Firestore, clients.Storage, session.Config{Bucket: c.Bucket, TTL: c.TTL}),
		tokens:  hostcred.NewFirestoreStore(clients.Firestore),
		queue:   outbox.NewPublisher(clients.PubSub, c.Names, logger),
	}, nil
}

func (s *services) close() {
	s.queue.Stop()
	s.clients.Close()
}

// keepHostTokens, when the deployment mints host tokens, makes every launch
// of runner carry one and, unless once, keeps the stored token renewed
// until the returned stop is called. With once it renews the stored token
// now, if it needs to be, for the hosts that are running.
func keepHostTokens(ctx context.Context, c *Config, s *services, runner *jobrunner.Runner, once bool, logger *slog.Logger) (stop func(), err error) {
	if c.Host.Account == "" {
		return func() {}, nil
	}
	if err := c.Host.Validate(); err != nil {
		return nil, err
	}
	minter, err := hostcred.NewIAMMinter(ctx, c.Host.Account, c.Host.Lifetime)
	if err != nil {
		return nil, err
	}
	keeper := hostcred.NewKeeper(s.tokens, minter, c.Host.RenewBefore)
	runner.AddLaunchEnv(keeper)
	if once {
		if _, err := keeper.Token(ctx); err != nil {
			minter.Close()
			return nil, err
		}
		return func() { minter.Close() }, nil
	}
	stopKeeper := background(ctx, func(ctx context.Context) { keeper.Run(ctx, c.Host.CheckInterval, logger) })
	return func() { stopKeeper(); minter.Close() }, nil
}

// background runs f in a goroutine until the returned stop is called,
// which cancels f's context and waits for f to return.
func background(ctx context.Context, f func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	return func() { cancel(); <-done }
}

// launching is a program's way of launching hosts: the launcher, and the
// warm pool that launches its hosts through it.
func launching(c *Config, s *services, runner *jobrunner.Runner, logger *slog.Logger) (*launch.Launcher, *pool.Pool) {
	l := launch.New(c.Launch, s.store, runner, logger)
	p := pool.New(c.Pool, s.store, l, nil, logger)
	if p.Enabled() {
		l.UsePool(p)
	}
	return l, p
}

// runLauncher runs l until the returned stop is called. Its context does
// not end with ctx: launches handed over while the program drains are
// carried out (or handed back) at stop, not dropped.
func runLauncher(ctx context.Context, l *launch.Launcher) (stop func()) {
	return background(context.WithoutCancel(ctx), l.Run)
}

// RunDispatcher runs a dispatcher until ctx ends, and in the same process,
// unless rc is nil, the reaper's loop.
func RunDispatcher(ctx context.Context, c *Config, dc dispatcher.Config, rc *reaper.Config, logger *slog.Logger) error {
	s, err := connect(ctx, c, nil, logger)
	if err != nil {
		return err
	}
	defer s.close()
	runner, err := jobrunner.New(ctx, c.JobName())
	if err != nil {
		return err
	}
	defer runner.Close()
	stopTokens, err := keepHostTokens(ctx, c, s, runner, false, logger)
	if err != nil {
		return err
	}
	defer stopTokens()
	_, stopHTTP, err := startHTTP(ctx, c.HTTP, checks(c, s, runner, true), logger)
	if err != nil {
		return err
	}
	defer stopHTTP()
	sub := s.clients.PubSub.Subscriber(c.Names.Dispatcher)
	launcher, p := launching(c, s, runner, logger)
	// Stopped last (defers run in reverse): after the dispatcher and the
	// reaper stopped handing it launches.
	defer runLauncher(ctx, launcher)()
	if p.Enabled() {
		// The dispatcher refills the pool as it takes from it, so that
		// the pool keeps up with arrivals between reaper passes.
		defer background(ctx, func(ctx context.Context) { p.Run(ctx, pool.DefaultRefillInterval) })()
	}
	if rc != nil {
		cfg := *rc
		cfg.TTL = c.TTL
		r := reaper.New(cfg, s.store, s.queue, runner, launcher, p, logger)
		defer background(ctx, func(ctx context.Context) { _ = r.Run(ctx) })()
	}
	return dispatcher.New(dc, sub, s.store, s.queue, launcher, logger).Run(ctx)
}

// RunReaper runs the reaper until ctx ends, or makes one pass when once.
func RunReaper(ctx context.Context, c *Config, rc reaper.Config, once bool, logger *slog.Logger) error {
	s, err := connect(ctx, c, nil, logger)
	if err != nil {
		return err
	}
	defer s.close()
	runner, err := jobrunner.New(ctx, c.JobName())
	if err != nil {
		return err
	}
	defer runner.Close()
	stopTokens, err := keepHostTokens(ctx, c, s, runner, once, logger)
	if err != nil {
		return err
	}
	defer stopTokens()
	_, stopHTTP, err := startHTTP(ctx, c.HTTP, checks(c, s, runner, false), logger)
	if err != nil {
		return err
	}
	defer stopHTTP()
	rc.TTL = c.TTL
	launcher, p := launching(c, s, runner, logger)
	defer runLauncher(ctx, launcher)()
	r := reaper.New(rc, s.store, s.queue, runner, launcher, p, logger)
	if once {
		_, err := r.Once(ctx)
		// Each launch the pass claimed is tried once before the program
		// ends; those refused are handed back for the next pass.
		return errors.Join(err, launcher.Drain(ctx))
	}
	return r.Run(ctx)
}

// HostConfig is the executor's own configuration.
type HostConfig struct {
	host.Config
	// WorkspacesDir, when set, holds each session's workspace in a
	// directory named after it; otherwise Workspace is used as is.
	WorkspacesDir string
	// Member, set instead of SessionID, makes the host a warm pool member
	// that waits for a session to be handed to it.
	Member pool.MemberConfig
	// Tokens holds the host token the launch passed (hostcred.FromEnv),
	// if it passed one; the host then works with it instead of its job's
	// own account, and keeps it renewed.
	Tokens *hostcred.Source
}

// RunHost hosts one session until it is idle or ctx ends. A pool member
// first waits, connected and ready, for the session it is handed.
func RunHost(ctx context.Context, c *Config, hc HostConfig, logger *slog.Logger) error {
	if hc.SessionID == "" && hc.Member.ID == "" {
		return errors.New("no session to host: set SANDRUN_SESSION_ID (or SANDRUN_POOL_MEMBER)")
	}
	if hc.Execution == "" {
		hostname, _ := os.Hostname()
		hc.Execution = "local-" + hostname + "-" + fmt.Sprint(os.Getpid())
	}
	// The session's commands run as the host's own uid: being
	// non-dumpable keeps its environment and memory, where its credential
	// is, out of their reach.
	if err := procs.DenyInspection(); err != nil {
		if hc.Tokens != nil {
			return fmt.Errorf("keep the host token from the commands: %w", err)
		}
		logger.Warn("host is dumpable; commands can read its environment and memory", "event", "host.dumpable", "error", err.Error())
	}
	// Orphans of the session's commands come to the host, which tracks
	// them (a process that left its command's group included), learns how
	// they end, reaps them and ends them when it leaves.
	if err := procs.BecomeSubreaper(); err != nil {
		logger.Warn("not a child subreaper; processes that leave their command's group are not tracked", "event", "host.no_subreaper", "error", err.Error())
	} else {
		hc.OwnsOrphans = true
	}
	var ts oauth2.TokenSource // nil: the job's own credentials
	tokens := hc.Tokens
	if tokens != nil {
		ts = tokens
	}
	s, err := connect(ctx, c, ts, logger)
	if err != nil {
		return err
	}
	defer s.close()
	if tokens != nil {
		logger.Info("host works with its launch's token", "event", "host.token", "held", tokens.Current())
		defer background(ctx, func(ctx context.Context) { tokens.Run(ctx, s.tokens, c.Host.CheckInterval, logger) })()
	}
	if hc.SessionID == "" {
		hc.Member.Execution = hc.Execution
		a, err := pool.Await(ctx, s.store, hc.Member, logger)
		if err != nil || a == nil {
			return err
		}
		hc.SessionID, hc.Pooled, hc.Traceparent = a.SessionID, true, a.Traceparent
	}
	if hc.WorkspacesDir != "" {
		hc.Workspace = filepath.Join(hc.WorkspacesDir, hc.SessionID)
	}
	hc.BaseEnv = BaseEnv(hc.SessionID)
	return host.Run(ctx, hc.Config, s.store, s.queue, logger)
}

// BaseEnv is the environment a new session's commands start with. It holds
// nothing of the executor's own environment, which has credentials.
func BaseEnv(sessionID string) map[string]string {
	return map[string]string{
		"PATH":               "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG":               "C.UTF-8",
		"TERM":               "dumb",
		"SANDRUN_SESSION_ID": sessionID,
	}
}
