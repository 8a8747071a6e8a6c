package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/procs"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/shell"
	"github.com/sandrun/sandrun/internal/telemetry"
	"github.com/sandrun/sandrun/internal/workspace"
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
	// LeaseTTL is how long the lease of a busy host lasts without renewal:
	// a host that dies while it runs a request is found lost this long
	// after its last renewal. See the lease timing below.
	LeaseTTL time.Duration
	// IdleLeaseTTL is the lease of a host that has served nothing for
	// LeaseTTL: renewed once a minute by default, it makes an idle host
	// cost one Firestore write a minute, and a host that dies idle is
	// found lost this long after its last renewal. It is never shorter
	// than LeaseTTL.
	IdleLeaseTTL time.Duration
	// MaintenanceLease is the lease a host takes when Cloud Run warns it
	// (Maintenance) that its task is about to be paused and moved to
	// another machine: the pause must end within it, counted from the
	// warning, or the host fences itself off when it runs again. A host
	// that dies during it is found lost this long after the warning.
	MaintenanceLease time.Duration
	// Maintenance brings Cloud Run's maintenance signals
	// (MaintenanceSignals); nil when none can come.
	Maintenance <-chan Maintenance
	// CheckpointInterval is how often a busy host checkpoints between
	// requests, so that a crash loses at most that much work.
	CheckpointInterval time.Duration
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

	// beforeOp, when set (by tests alone), is called before each request's
	// handler runs, on the handler's goroutine: a test panics in it to
	// show that a handler's panic answers its request and no more.
	beforeOp func(*api.Request)
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
	DefaultIdleLeaseTTL       = 75 * time.Second
	DefaultMaintenanceLease   = 2 * time.Minute
	DefaultCheckpointInterval = time.Minute
	DefaultMaxLifetime        = time.Hour
)

// Publisher publishes recorded completions.
type Publisher interface {
	PublishCompletion(ctx context.Context, data []byte, traceparent string) error
}

// Store is what a host keeps of its session: the lease, the inbox, the
// process registry and the session's objects (package session provides it,
// over Firestore and Cloud Storage; package memstore in memory).
type Store interface {
	Acquire(ctx context.Context, sessionID, execution string, ttl time.Duration) (*session.Lease, error)
	Renew(ctx context.Context, lease *session.Lease, ttl time.Duration) error
	Release(ctx context.Context, lease *session.Lease, force bool) error
	FailOrphans(ctx context.Context, lease *session.Lease) ([]session.Unpublished, error)
	WatchQueued(ctx context.Context, sessionID string) <-chan session.Queue
	Queued(ctx context.Context, sessionID string, limit int) ([]session.Item, error)
	Start(ctx context.Context, lease *session.Lease, seen session.Item) (item *session.Item, ok bool, err error)
	Finish(ctx context.Context, lease *session.Lease, version time.Time, c *api.Completion, shell *session.Shell, cp *session.Checkpoint) ([]byte, error)
	Published(ctx context.Context, lease *session.Lease, requestID string) error
	Destroy(ctx context.Context, sessionID, reason string) (host string, answered []session.Unpublished, err error)
	Purge(ctx context.Context, sessionID string) error

	RecordProcess(ctx context.Context, lease *session.Lease, p session.ProcessDoc) error
	Processes(ctx context.Context, sessionID string) ([]session.ProcessDoc, error)

	CommitCheckpoint(ctx context.Context, lease *session.Lease, cp session.Checkpoint) error
	ReadCheckpoint(ctx context.Context, cp *session.Checkpoint) ([]byte, error)
	OpenCheckpoint(ctx context.Context, cp *session.Checkpoint) (io.ReadCloser, error)
	Blobs(sessionID string) session.Blobs
	DeleteBlobs(ctx context.Context, sessionID string, names []string) error
	SweepBlobs(ctx context.Context, sessionID string, live map[string]bool, before time.Time) (int, error)

	Bucket() string
	ObjectURI(name string) string
	OpenObject(ctx context.Context, name string) (*session.Object, error)
	PutNewObject(ctx context.Context, name, contentType string, data []byte) (generation int64, err error)
	WriteNewObject(ctx context.Context, name, contentType string, r io.Reader) (int64, error)
	ReplaceObject(ctx context.Context, name, contentType string, r io.Reader) error
	DeleteObject(ctx context.Context, name string) error
}

// Host serves one session.
type Host struct {
	cfg   Config
	store Store
	// relay publishes recorded completions and marks them published.
	relay  *outbox.Relay
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
	// shellSaved is when a Finish last recorded the shell state; only the
	// foreground request's goroutine touches it, one request at a time.
	shellSaved  time.Time
	checkpoints int
	// manifest is the session's checkpoint as this host last committed or
	// restored it (nil before the first incremental one); uncommitted is
	// true once a snapshot stored blobs that no checkpoint took up.
	manifest    *workspace.Manifest
	uncommitted bool
	// spareOutput are the last foreground command's output files, kept
	// for the next one (see outputFiles); foreground requests, which run
	// one after another, alone touch it.
	spareOutput *outputFiles
	// destroyed is set when the host destroyed its session: the destroy
	// fenced it off, so the loss of its lease that follows is no failure.
	destroyed bool

	// leaseLost is closed when the host learns it lost its lease, or
	// fences itself off because it could not renew it in time.
	leaseLost chan struct{}
	lostOnce  sync.Once
	// leaseSent is when the request that took the lease was sent: the
	// local clock's start of the lease (see fenceAt).
	leaseSent time.Time
	// working is true while the serve loop has requests running or
	// queued, lastWork (Unix ns) when it last had; kick asks the heartbeat
	// to shorten a long idle lease at once, which longLease says it holds.
	working   atomic.Bool
	lastWork  atomic.Int64
	kick      chan struct{}
	longLease atomic.Bool
	// procs runs the session's background processes and tracks the
	// foreground command. procsMu guards replacing it against the fence,
	// which runs on the heartbeat's goroutine.
	procs   *procs.Manager
	procsMu sync.Mutex
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
func Run(ctx context.Context, cfg Config, store Store, pub Publisher, logger *slog.Logger) error {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.IdleLeaseTTL <= 0 {
		cfg.IdleLeaseTTL = DefaultIdleLeaseTTL
	}
	cfg.IdleLeaseTTL = max(cfg.IdleLeaseTTL, cfg.LeaseTTL)
	if cfg.MaintenanceLease <= 0 {
		cfg.MaintenanceLease = DefaultMaintenanceLease
	}
	cfg.MaintenanceLease = max(cfg.MaintenanceLease, cfg.IdleLeaseTTL)
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	relayLogger := logger.With("execution_id", cfg.Execution) // the relay names the session and the request itself
	logger = logger.With("session_id", cfg.SessionID, "execution_id", cfg.Execution)
	h := &Host{cfg: cfg, store: store, logger: logger, leaseLost: make(chan struct{}), kick: make(chan struct{}, 1), metrics: newMetrics()}
	h.relay = outbox.NewRelay(pub, h, relayLogger)
	// A new host is busy: it was started for a request, or handed one.
	h.lastWork.Store(time.Now().UnixNano())
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
	// The lease counts, on the local clock, from before the store's first
	// try (it retries transient failures itself): early, never late.
	h.leaseSent = time.Now()
	lease, err := h.store.Acquire(sctx, h.cfg.SessionID, h.cfg.Execution, h.cfg.LeaseTTL)
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
	if h.destroyed {
		return nil
	}
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

// Lease timing, from the busy lease (LeaseTTL, 15 s by default): the host
// renews its lease when renewSlack of it is left (every 4.5 s for the 15 s
// lease of a busy host, every 64.5 s for the 75 s lease of an idle one),
// retrying each failed renewal at once with a short backoff: under load, a
// renewal (one Firestore write) has 10 s to get through (as long as a
// renewal had before the fence), not one try. If it has not renewed when
// only fenceMargin of the lease is left (0.5 s),
// counted on the local monotonic clock from when it sent the renewal (so
// before Firestore's expiry, which counts from when the write landed), the
// host fences itself off: it SIGKILLs every command and process of the
// session and stops serving. Once the lease has lapsed, the old host has
// done its last, and the reaper only recovers the session after Cloud Run
// reports the old execution ended, which also covers a host that cannot
// act at all (stopped, frozen).
func renewSlack(busyTTL time.Duration) time.Duration  { return busyTTL * 7 / 10 }
func fenceMargin(busyTTL time.Duration) time.Duration { return busyTTL / 30 }

// heartbeat renews the lease until ctx ends, on a goroutine of its own
// that nothing else the host does waits on. It fences the host off when
// the lease is lost, or cannot be renewed before the fence.
//
// A Start or Finish renews the lease too (for at least the busy lease,
// never shortening it: session.Lease.WorkExpiry): the heartbeat counts the
// last renewal, whoever made it (session.Lease.Renewed), so that it need
// not renew again soon after one. The timing above is kept, counted from
// that renewal.
//
// Cloud Run's warning of a maintenance pause (Config.Maintenance) has it
// renew at once for the maintenance lease, which it keeps until the host
// runs again (or for that long at most); it then renews at once with the
// usual lease.
func (h *Host) heartbeat(ctx context.Context) {
	short := h.cfg.LeaseTTL
	margin := fenceMargin(short)
	fenceAt := h.leaseSent.Add(short - margin)
	// The first turn of the loop times the next renewal from the one that
	// Acquire's write counts as (session.Lease.Renewed), or renews at once
	// when the store counted none.
	renewAt := time.Now()
	// seen is when the last renewal the heartbeat counted was sent.
	var seen time.Time
	// count takes the last renewal as the one that times the next.
	count := func() {
		sent, left := h.lease.Renewed()
		seen = sent
		fenceAt, renewAt = sent.Add(left-margin), sent.Add(left-renewSlack(short))
		h.longLease.Store(left > short)
	}
	// noticed is when Cloud Run last warned of a pause (maintenance),
	// zero when none is coming or the task runs again since. Until the
	// host runs again, or for MaintenanceLease at most, it keeps the
	// maintenance lease, busy or not.
	var noticed time.Time
	pausing := func() bool {
		if !noticed.IsZero() && time.Since(noticed) >= h.cfg.MaintenanceLease {
			noticed = time.Time{}
		}
		return !noticed.IsZero()
	}
	for {
		// now: a maintenance event wants the lease renewed at once,
		// lengthened for a pause or given its usual length after one.
		now := false
		t := time.NewTimer(time.Until(renewAt))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-h.kick:
			t.Stop()
			if !h.longLease.Load() || pausing() {
				continue
			}
		case m := <-h.cfg.Maintenance:
			t.Stop()
			if now = h.maintenance(m, &noticed); !now {
				continue
			}
		}
		if sent, _ := h.lease.Renewed(); sent.After(seen) {
			// A Start or Finish renewed the lease since: it is this
			// renewal, unless work came to a long idle lease (kick), which
			// must be shortened now.
			count()
			if !now && time.Now().Before(renewAt) && (pausing() || !(h.busy() && h.longLease.Load())) {
				continue
			}
		}
		ttl := h.cfg.IdleLeaseTTL
		if h.busy() {
			ttl = short
		}
		if pausing() {
			ttl = h.cfg.MaintenanceLease
		}
		sent := time.Now()
		// A shorter lease than the one held makes the fence earlier before
		// the write is sent: it may land unseen.
		if f := sent.Add(ttl - margin); f.Before(fenceAt) {
			fenceAt = f
		}
		if !h.renew(ctx, ttl, fenceAt, seen) {
			return
		}
		// This renewal, or a Start's or Finish's that came after it and
		// only lengthened the lease.
		count()
	}
}

// maintenance notes Cloud Run's maintenance signal m in noticed (see
// heartbeat) and reports whether the lease must be renewed at once for
// it: lengthened before a pause, or given its usual length after one. A
// SIGCONT with no pause announced (someone else's SIGSTOP) changes
// nothing, and neither does a warning older than the maintenance lease.
func (h *Host) maintenance(m Maintenance, noticed *time.Time) bool {
	switch {
	case !m.Resumed && time.Since(m.At) < h.cfg.MaintenanceLease:
		*noticed = m.At
		h.logger.Info("Cloud Run will pause this host to move it to another machine: its lease lasts through the pause",
			"event", "host.maintenance_notice", "lease_seconds", h.cfg.MaintenanceLease.Seconds())
		return true
	case m.Resumed && !noticed.IsZero():
		h.logger.Info("host runs again after a maintenance pause", "event", "host.maintenance_resumed",
			"seconds_since_notice", m.At.Sub(*noticed).Seconds())
		*noticed = time.Time{}
		return true
	}
	return false
}

// renew renews the lease for ttl, retrying until it succeeds or fenceAt
// passes. It reports whether the host still holds its lease; when not, it
// has fenced the host off. seen is when the last renewal the heartbeat
// counted was sent: a Start or Finish that renewed the lease since, while
// this renewal failed or waited, moves the fence with the lease, and is
// this renewal when it gave a lease no longer than ttl.
func (h *Host) renew(ctx context.Context, ttl time.Duration, fenceAt, seen time.Time) bool {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithDeadline(ctx, fenceAt)
		err := h.store.Renew(actx, h.lease, ttl)
		cancel()
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case errors.Is(err, session.ErrLeaseLost):
			h.fence("the session's lease was taken from this host")
			return false
		}
		if sent, left := h.lease.Renewed(); sent.After(seen) {
			if left <= ttl {
				return true
			}
			if f := sent.Add(left - fenceMargin(h.cfg.LeaseTTL)); f.After(fenceAt) {
				fenceAt = f
			}
		}
		switch {
		case !time.Now().Before(fenceAt):
			h.logger.Error("lease not renewed in time", "event", "host.lease_lapsed", "attempts", attempt, "error", err.Error())
			h.fence("the lease could not be renewed before it lapsed")
			return false
		case session.LeaseMoved(err):
			continue // the next attempt reads the document
		}
		h.logger.Warn("lease renewal failed; retrying", "event", "host.renew_failed", "attempt", attempt, "error", err.Error())
		t := time.NewTimer(min(wait, time.Until(fenceAt)))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// fence stops the host for good: the lease is gone or about to lapse, and
// another host may soon run the session's requests. Every process of the
// session is SIGKILLed at once, and the process manager closed so that
// nothing more starts; the serve loop stops with the lease marked lost.
func (h *Host) fence(reason string) {
	h.logger.Warn("fencing off: every command of the session ends now", "event", "host.fenced", "reason", reason)
	h.markLost()
	h.procsMu.Lock()
	m := h.procs
	h.procsMu.Unlock()
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), fenceMargin(h.cfg.LeaseTTL))
	defer cancel()
	if _, err := m.KillAll(ctx, "the host lost its lease"); err != nil {
		h.logger.Warn("fence: killing the session's processes", "event", "host.fence_kill_failed", "error", err.Error())
	}
	done, stop := context.WithCancel(ctx)
	stop()
	m.Close(done) // intake stops; a process started since dies at once
}

// busy reports whether the host served anything within the last busy
// lease: it then keeps its lease short.
func (h *Host) busy() bool {
	return h.working.Load() || time.Since(time.Unix(0, h.lastWork.Load())) < h.cfg.LeaseTTL
}

// noteWork tells the heartbeat whether requests run or wait now. A host
// holding a long idle lease shortens it as soon as work arrives, so that
// its death while busy is found as fast as any busy host's.
func (h *Host) noteWork(working bool) {
	if h.working.Swap(working) || working {
		h.lastWork.Store(time.Now().UnixNano())
	}
	if working && h.longLease.Load() {
		select {
		case h.kick <- struct{}{}:
		default:
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
	// Background processes may have changed files since the last request:
	// a snapshot reads only what changed, and commits nothing when nothing
	// did.
	if err := h.checkpoint(ctx); err != nil {
		return fmt.Errorf("checkpoint before leaving: %w", err)
	}
	if !forced {
		h.sweepBlobs(ctx)
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

// destroy ends the session once its destroy request was recorded: the
// session is destroyed, which answers every request not finished ABORTED
// (the command running too: the destroy overtook it) and fences this host
// off, and then the processes end. Fenced first, the killed command's own
// answer fails at once instead of contending with the destroy's
// transaction for the same documents. The caller then publishes the
// destroy's answer, and calls cleanUp with the aborted requests.
func (h *Host) destroy(ctx context.Context) (aborted []session.Unpublished, err error) {
	_, aborted, err = h.store.Destroy(ctx, h.cfg.SessionID, "session.destroy")
	h.closeProcs(ctx)
	return aborted, err
}

// cleanUp publishes the answers of the requests a destroy aborted and
// deletes the destroyed session's objects.
func (h *Host) cleanUp(ctx context.Context, aborted []session.Unpublished) {
	for _, u := range aborted {
		h.metrics.answered(ctx, u.Completion)
		h.publish(ctx, u.SessionID, u.RequestID, u.Completion, "")
	}
	if err := h.store.Purge(ctx, h.cfg.SessionID); err != nil {
		h.logger.Warn("purge failed; the reaper will finish it", "event", "session.purge_failed", "error", err.Error())
	}
	h.logger.Info("session destroyed", "event", "session.destroyed")
}

// publish sends a recorded completion and marks it published. A failure is
// not the host's to handle (the relay logs it): the completion is recorded,
// and the reaper publishes what stays unmarked.
func (h *Host) publish(ctx context.Context, sessionID, requestID string, data []byte, traceparent string) {
	_ = h.relay.Send(ctx, outbox.Recorded{SessionID: sessionID, RequestID: requestID, Completion: data, Traceparent: traceparent})
}

// MarkPublished notes, for the relay, that a completion the host published
// reached Pub/Sub: through the lease (session.Store.Published), which costs
// no write of its own for the completions the host's Finishes recorded.
func (h *Host) MarkPublished(ctx context.Context, sessionID, requestID string) error {
	return h.store.Published(ctx, h.lease, requestID)
}

// workspaceDir returns the workspace, created if missing.
func (h *Host) workspaceDir() (string, error) {
	dir, err := filepath.Abs(h.cfg.Workspace)
	if err != nil {
		return "", fmt.Errorf("workspace %s: %w", h.cfg.Workspace, err)
	}
	return dir, nil
}
