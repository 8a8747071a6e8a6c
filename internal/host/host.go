package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandrun/sandrun/internal/procs"
	"github.com/sandrun/sandrun/internal/retry"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/shell"
	"github.com/sandrun/sandrun/internal/telemetry"
)

// Config says which session to host and how.
type Config struct {
	// SessionID is the session to host.
	SessionID string
	// Execution names this host (the Cloud Run execution and task).
	Execution string
	// Workspace is the session's working tree: what a checkpoint keeps.
	Workspace string
	// BaseEnv is the environment a new session's commands start with.
	BaseEnv map[string]string
	// IdleTimeout is how long the host waits for a request before it
	// checkpoints and leaves.
	IdleTimeout time.Duration
	// LeaseTTL is how long the lease lasts without renewal; the host
	// renews it every LeaseTTL/3.
	LeaseTTL time.Duration
	// CheckpointInterval is how often a busy host checkpoints between
	// requests, so that a crash loses at most that much work.
	CheckpointInterval time.Duration
	// PollInterval bounds how long a new request can wait unnoticed if the
	// inbox listener misses it.
	PollInterval time.Duration
	// MaxLifetime bounds how long a host stays up for its session's
	// background processes alone; past it, an otherwise idle host ends them
	// and leaves.
	MaxLifetime time.Duration
	// Pooled is true when the host was started ahead of need and handed
	// the session from the warm pool: the requests that waited for it
	// waited for a handover, not a cold start.
	Pooled bool
	// Traceparent is the trace context of the launch that started the
	// host (or handed it the session); the host's start and its
	// checkpoints are spans of that trace.
	Traceparent string
	// OwnsOrphans says that the host's process is a child subreaper that
	// hosts this session alone (the executor): every orphan that comes to
	// it is the session's, tracked and ended with the host (see
	// procs.Config.OwnsOrphans).
	OwnsOrphans bool
}

// maxStateBytes bounds a session's shell state (cwd and exported
// environment), which lives in the session's Firestore document.
const maxStateBytes = 256 << 10

func stateSize(st *shell.State) int {
	n := len(st.Cwd)
	for k, v := range st.Env {
		n += len(k) + len(v) + 2
	}
	return n
}

// recordTimeout bounds recording and publishing one completion.
const recordTimeout = 30 * time.Second

// Defaults of Config.
const (
	DefaultIdleTimeout        = 2 * time.Minute
	DefaultLeaseTTL           = 15 * time.Second
	DefaultCheckpointInterval = time.Minute
	DefaultPollInterval       = 2 * time.Second
	DefaultMaxLifetime        = time.Hour
)

// Publisher publishes recorded completions.
type Publisher interface {
	PublishCompletion(ctx context.Context, data []byte, traceparent string) error
}

// Host serves one session.
type Host struct {
	cfg    Config
	store  *session.Store
	pub    Publisher
	logger *slog.Logger

	lease *session.Lease
	state shell.State
	// spool holds command output files and the shell's state files.
	spool string
	// restoreSeconds is reported on the first request the host serves.
	restoreSeconds float64
	// The serve loop alone touches these.
	served         int
	dirty          bool
	lastCheckpoint time.Time
	checkpoints    int

	// leaseLost is closed when the host learns it lost its lease.
	leaseLost chan struct{}
	lostOnce  sync.Once
	// procs runs the session's background processes and tracks the
	// foreground command.
	procs *procs.Manager
	// launchTrace is the context of the host's start span, the parent of
	// its checkpoints' spans.
	launchTrace trace.SpanContext
	metrics     *metrics
}

// ErrLeaseLost is returned by Run when the host stopped because another
// took its session.
var ErrLeaseLost = session.ErrLeaseLost

// Run hosts the session until it is idle, destroyed, or ctx ends (the
// execution was cancelled). It returns nil when the host left cleanly or had
// nothing to do.
func Run(ctx context.Context, cfg Config, store *session.Store, pub Publisher, logger *slog.Logger) error {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	logger = logger.With("session_id", cfg.SessionID, "execution_id", cfg.Execution)
	h := &Host{cfg: cfg, store: store, pub: pub, logger: logger, leaseLost: make(chan struct{}), metrics: newMetrics()}
	return h.run(ctx)
}

func (h *Host) run(ctx context.Context) error {
	start := time.Now()
	sctx, span := telemetry.Start(telemetry.WithTraceparent(ctx, h.cfg.Traceparent), "sandrun.host.start", trace.SpanKindInternal,
		attribute.String("sandrun.session_id", h.cfg.SessionID), attribute.String("sandrun.execution_id", h.cfg.Execution), attribute.Bool("sandrun.pooled", h.cfg.Pooled))
	h.launchTrace = span.SpanContext()
	started := false
	defer func() {
		if !started {
			span.End()
		}
	}()
	var lease *session.Lease
	err := retry.Do(sctx, retry.Firestore, h.logger, "acquire lease", func(ctx context.Context) error {
		var err error
		lease, err = h.store.Acquire(ctx, h.cfg.SessionID, h.cfg.Execution, h.cfg.LeaseTTL)
		return err
	})
	switch {
	case errors.Is(err, session.ErrLeaseHeld), errors.Is(err, session.ErrDestroyed), errors.Is(err, session.ErrNotFound):
		h.logger.Info("nothing to host", "event", "host.not_needed", "reason", err.Error())
		return nil
	case err != nil:
		return err
	}
	h.lease = lease
	h.metrics.live.Add(ctx, 1)
	defer h.metrics.live.Add(context.WithoutCancel(ctx), -1)
	h.logger = h.logger.With("epoch", lease.Epoch)
	h.logger.Info("lease acquired", "event", "host.lease_acquired", "duration_seconds", time.Since(start).Seconds())

	// Everything below stops at once when the lease is lost.
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.leaseLost:
			cancel()
		case <-hctx.Done():
		}
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); h.heartbeat(hctx) }()
	defer wg.Wait()
	defer cancel()

	spool, err := os.MkdirTemp("", "sandrun-spool-")
	if err != nil {
		return fmt.Errorf("create spool directory: %w", err)
	}
	h.spool = spool
	defer os.RemoveAll(spool)
	if err := h.newProcs(); err != nil {
		return h.stop(err)
	}
	// Processes live as long as their host.
	defer h.closeProcs(ctx)

	lost, err := h.store.FailOrphans(hctx, lease)
	if err != nil {
		return h.stop(err)
	}
	for _, u := range lost {
		h.metrics.answered(hctx, u.Completion)
		h.publish(hctx, u.SessionID, u.RequestID, u.Completion, "")
	}
	rctx, rspan := telemetry.Start(trace.ContextWithSpanContext(hctx, h.launchTrace), "sandrun.restore", trace.SpanKindInternal)
	err = h.restore(rctx)
	telemetry.End(rspan, err)
	if err != nil {
		return h.stop(err)
	}
	started = true
	span.End()
	return h.stop(h.serve(hctx, ctx))
}

// stop turns the end of the host into Run's result.
func (h *Host) stop(err error) error {
	if h.isLost() || errors.Is(err, session.ErrLeaseLost) {
		h.logger.Warn("lease lost: stopped", "event", "host.lease_lost")
		return ErrLeaseLost
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		h.logger.Error("host failed", "event", "host.failed", "error", err.Error())
		return err
	}
	return nil
}

// heartbeat renews the lease until ctx ends. If the lease is lost, or
// cannot be renewed before it lapses, the host must stop.
func (h *Host) heartbeat(ctx context.Context) {
	t := time.NewTicker(h.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithDeadline(ctx, h.lease.Expires)
		err := h.store.Renew(rctx, h.lease, h.cfg.LeaseTTL)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, session.ErrLeaseLost):
			h.markLost()
			return
		case time.Now().After(h.lease.Expires):
			h.logger.Error("lease lapsed before it could be renewed", "event", "host.lease_lapsed", "error", err.Error())
			h.markLost()
			return
		default:
			h.logger.Warn("lease renewal failed; retrying", "event", "host.renew_failed", "error", err.Error())
		}
	}
}

func (h *Host) markLost() { h.lostOnce.Do(func() { close(h.leaseLost) }) }

func (h *Host) isLost() bool {
	select {
	case <-h.leaseLost:
		return true
	default:
		return false
	}
}

// leave checkpoints the workspace and gives the lease up. Unless forced (the
// execution is ending), it fails with ErrWorkPending when a request arrived
// meanwhile, and the host serves on.
func (h *Host) leave(ctx context.Context, forced bool) error {
	if forced {
		// The execution is being stopped: Cloud Run allows a few seconds.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 8*time.Second)
		defer cancel()
		// Its processes end first, so that the checkpoint sees the files
		// they leave.
		h.closeProcs(ctx)
	}
	if h.dirty {
		if err := h.checkpoint(ctx); err != nil {
			return fmt.Errorf("checkpoint before leaving: %w", err)
		}
	}
	// Forced, the host leaves even with requests queued: they find no
	// host and the reaper launches one.
	if err := h.store.Release(ctx, h.lease, forced); err != nil {
		if errors.Is(err, session.ErrWorkPending) {
			return session.ErrWorkPending
		}
		return err
	}
	if !forced {
		h.metrics.idleExits.Add(ctx, 1)
	}
	h.logger.Info("host left", "event", "host.left", "forced", forced, "served", h.served)
	return nil
}

// destroy ends the session after its destroy request was answered.
func (h *Host) destroy(ctx context.Context) error {
	h.closeProcs(ctx)
	_, answered, err := h.store.Destroy(ctx, h.cfg.SessionID, "session.destroy")
	if err != nil {
		return err
	}
	for _, u := range answered {
		h.metrics.answered(ctx, u.Completion)
		h.publish(ctx, u.SessionID, u.RequestID, u.Completion, "")
	}
	if err := h.store.Purge(ctx, h.cfg.SessionID); err != nil {
		h.logger.Warn("purge failed; the reaper will finish it", "event", "session.purge_failed", "error", err.Error())
	}
	h.logger.Info("session destroyed", "event", "session.destroyed")
	return nil
}

// publish sends a recorded completion and marks it published. A failure is
// logged, not returned: the completion is recorded, and the reaper publishes
// what stays unmarked.
func (h *Host) publish(ctx context.Context, sessionID, requestID string, data []byte, traceparent string) {
	if err := h.pub.PublishCompletion(ctx, data, traceparent); err != nil {
		h.logger.Warn("publish failed; the reaper will publish it", "event", "completion.publish_failed", "request_id", requestID, "error", err.Error())
		return
	}
	if err := h.store.MarkPublished(ctx, sessionID, requestID); err != nil {
		h.logger.Warn("mark published failed", "event", "completion.mark_failed", "request_id", requestID, "error", err.Error())
	}
}

// workspaceDir returns the workspace, created if missing.
func (h *Host) workspaceDir() (string, error) {
	dir, err := filepath.Abs(h.cfg.Workspace)
	if err != nil {
		return "", fmt.Errorf("workspace %s: %w", h.cfg.Workspace, err)
	}
	return dir, nil
}
