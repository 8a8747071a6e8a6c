// Package reaper recovers sandrun from what dies or goes missing: hosts
// whose lease lapsed (their running requests are answered HOST_LOST and
// queued ones get a new host), sessions stranded without a host, completions
// recorded but never published, sessions idle past their TTL, destroyed
// sessions whose objects remain, and executions that host no live session.
//
// Each pass is idempotent and safe to run from many places at once: every
// change is a transaction on the session's state. A step of a pass reads
// (Store, Runner), decides with a pure function of what it read and the
// time (decide.go), and acts. A pass works sessions in parallel, a bounded
// number at once, and never waits for a launch: it hands the launches it
// claims to the launcher (package launch, the one way hosts are launched).
// Completions go out through the outbox relay (package outbox). The reaper
// never runs user commands.
package reaper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/telemetry"
)

// Runner lists and cancels host executions.
type Runner interface {
	Running(ctx context.Context) ([]jobrunner.Execution, error)
	Get(ctx context.Context, id string) (jobrunner.Execution, error)
	Cancel(ctx context.Context, name string) error
}

// Launches carries out the launches the reaper claims, in the background
// (package launch). Holds reports a session whose claim it holds: the
// reaper leaves those alone.
type Launches interface {
	Request(sessionID string, claim *session.Launch, traceparent string)
	Holds(sessionID string) bool
}

// Publisher publishes recorded completions.
type Publisher interface {
	PublishCompletion(ctx context.Context, data []byte, traceparent string) error
}

// Store is what the reaper reads and changes of the sessions' state
// (session.Store is it). The store retries what it retries (package
// retry); what still fails, the reaper's next pass does again.
type Store interface {
	// ExpiredHosts lists the sessions whose host's lease lapsed.
	ExpiredHosts(ctx context.Context) ([]session.ExpiredHost, error)
	// RecoverHost takes a session from its lapsed host, answering its
	// running requests HOST_LOST.
	RecoverHost(ctx context.Context, sessionID string) (lost []session.Unpublished, recovered bool, err error)
	// Waiting lists the sessions with queued requests and no host, but
	// those skip names.
	Waiting(ctx context.Context, skip func(sessionID string) bool) ([]session.Waiting, error)
	// LaunchFailed withdraws a launch whose execution ended unserved.
	LaunchFailed(ctx context.Context, sessionID, launchID string) error
	// Relaunch claims a new launch of a stranded session, or, past
	// maxAttempts, answers its queued requests LAUNCH_FAILED.
	Relaunch(ctx context.Context, sessionID string, maxAttempts int) (launch *session.Launch, failed []session.Unpublished, err error)
	// Unpublished lists completions recorded before cutoff and never
	// marked published.
	Unpublished(ctx context.Context, cutoff time.Time, limit int) ([]session.Unpublished, error)
	// MarkPublished marks a recorded completion published.
	MarkPublished(ctx context.Context, sessionID, requestID string) error
	// ClearPublishing drops republished completions from the lease
	// document that tracks their publish (Unpublished's InLease).
	ClearPublishing(ctx context.Context, sessionID string, requestIDs []string) error
	// Stale lists the active sessions last used before cutoff.
	Stale(ctx context.Context, cutoff time.Time) ([]string, error)
	// Destroy destroys a session, answering its unfinished requests.
	Destroy(ctx context.Context, sessionID, reason string) (host string, answered []session.Unpublished, err error)
	// PurgePending lists destroyed sessions whose objects remain.
	PurgePending(ctx context.Context) ([]string, error)
	// Purge deletes a destroyed session's objects.
	Purge(ctx context.Context, sessionID string) error
	// Hosted is the set of executions that sessions' hosts and launches,
	// and the warm pool's members, name.
	Hosted(ctx context.Context) (map[string]bool, error)
	// SettleProcesses marks the processes of hosts that are gone lost.
	SettleProcesses(ctx context.Context) (int, error)
}

// Config tunes the reaper. Zero fields take the defaults below.
type Config struct {
	// Interval between passes of Run.
	Interval time.Duration
	// PublishAfter is how long a recorded completion may stay unpublished
	// before the reaper publishes it (its host normally does at once).
	PublishAfter time.Duration
	// MaxLaunchAttempts is how many launches a stranded session gets before
	// its queued requests are answered LAUNCH_FAILED.
	MaxLaunchAttempts int
	// TTL is how long a session may stay idle before it is destroyed.
	TTL time.Duration
	// OrphanAfter is how old an execution hosting no session must be before
	// it is cancelled (a launch records its execution a moment after
	// starting it).
	OrphanAfter time.Duration
	// Concurrency bounds the sessions a pass works on at once.
	Concurrency int
}

// Defaults of Config.
const (
	DefaultInterval          = 10 * time.Second
	DefaultPublishAfter      = 30 * time.Second
	DefaultMaxLaunchAttempts = 3
	DefaultOrphanAfter       = 2 * time.Minute
	DefaultConcurrency       = 8
)

// Reaper runs recovery passes.
type Reaper struct {
	cfg   Config
	store Store
	// relay publishes recorded completions and marks them published.
	relay    *outbox.Relay
	runner   Runner
	launches Launches
	pool     *pool.Pool
	logger   *slog.Logger
	now      func() time.Time

	// The reaper's instruments: requests it answers (HOST_LOST,
	// LAUNCH_FAILED, those of sessions it destroys), completions it
	// re-publishes, hosts it finds lost, passes by outcome.
	answered    metric.Int64Counter
	republished metric.Int64Counter
	hostsLost   metric.Int64Counter
	passes      metric.Int64Counter
}

// New returns a reaper whose launches go to launches. pool may be nil (no
// warm pool).
func New(cfg Config, store Store, pub Publisher, runner Runner, launches Launches, pool *pool.Pool, logger *slog.Logger) *Reaper {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.PublishAfter <= 0 {
		cfg.PublishAfter = DefaultPublishAfter
	}
	if cfg.MaxLaunchAttempts <= 0 {
		cfg.MaxLaunchAttempts = DefaultMaxLaunchAttempts
	}
	if cfg.TTL <= 0 {
		cfg.TTL = session.DefaultTTL
	}
	if cfg.OrphanAfter <= 0 {
		cfg.OrphanAfter = DefaultOrphanAfter
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	r := &Reaper{cfg: cfg, store: store, relay: outbox.NewRelay(pub, store, logger), runner: runner, launches: launches, pool: pool, logger: logger, now: time.Now}
	// From the global meter provider: no-ops unless metrics are on.
	m := otel.GetMeterProvider().Meter("github.com/sandrun/sandrun/internal/reaper")
	r.answered = telemetry.RequestCounter(m)
	r.republished, _ = m.Int64Counter("sandrun.reaper.republished", metric.WithUnit("{completion}"),
		metric.WithDescription("recorded completions whose publish was lost, published by the reaper"))
	r.hostsLost, _ = m.Int64Counter("sandrun.reaper.hosts_lost", metric.WithUnit("{host}"),
		metric.WithDescription("session hosts whose lease lapsed, taken from their session by the reaper"))
	r.passes, _ = m.Int64Counter("sandrun.reaper.passes", metric.WithUnit("{pass}"),
		metric.WithDescription("reaper passes by outcome: ok, or failed when a step failed"))
	return r
}

// republishBatch bounds the completions a pass publishes again.
const republishBatch = 500

// Report counts what one pass did.
type Report struct {
	HostsRecovered  int `json:"hosts_recovered"`
	HostLost        int `json:"host_lost"`
	Launched        int `json:"launched"`
	LaunchFailed    int `json:"launch_failed"`
	Republished     int `json:"republished"`
	Destroyed       int `json:"destroyed"`
	Purged          int `json:"purged"`
	OrphansCanceled int `json:"orphans_cancelled"`
	ProcessesLost   int `json:"processes_lost"`
	// PoolIdle is the idle pool hosts the pass found.
	PoolIdle int `json:"pool_idle"`
}

// Run makes a pass every interval until ctx ends.
func (r *Reaper) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.Once(ctx); err != nil && ctx.Err() == nil {
			r.logger.Error("reaper pass failed", "event", "reaper.failed", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once makes one pass over everything the reaper recovers. It goes on past
// a step that fails and returns the errors joined.
func (r *Reaper) Once(ctx context.Context) (Report, error) {
	start := r.now()
	cut := cutoffsAt(start, r.cfg)
	var t tally
	// Stale sessions go first, so that none is relaunched only to be
	// destroyed.
	errs := []error{
		r.destroyStale(ctx, cut, &t),
		r.recoverHosts(ctx, &t),
		r.relaunchStranded(ctx, &t),
		r.republish(ctx, cut, &t),
		r.purge(ctx, &t),
		r.cancelOrphans(ctx, cut, &t),
		r.settleProcesses(ctx, &t),
		r.refillPool(ctx, &t),
	}
	rep := t.rep
	err := errors.Join(errs...)
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	r.passes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
	// outcome is what the reaper-failures alert counts (terraform/monitoring.tf).
	r.logger.Info("reaper pass", "event", "reaper.pass", "outcome", outcome, "duration_seconds", r.now().Sub(start).Seconds(),
		"hosts_recovered", rep.HostsRecovered, "host_lost", rep.HostLost, "launched", rep.Launched, "launch_failed", rep.LaunchFailed,
		"republished", rep.Republished, "destroyed", rep.Destroyed, "purged", rep.Purged, "orphans_cancelled", rep.OrphansCanceled, "processes_lost", rep.ProcessesLost, "pool_idle", rep.PoolIdle)
	return rep, err
}

// tally is a pass's Report, added to by sessions worked in parallel.
type tally struct {
	mu  sync.Mutex
	rep Report
}

func (t *tally) add(f func(*Report)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.rep)
}

// each calls f for every item (one per session), at most limit at once,
// and returns their errors joined. It starts no more once ctx ends.
func each[T any](ctx context.Context, limit int, items []T, f func(T) error) error {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	errs := make([]error, len(items))
	for i, item := range items {
		if ctx.Err() != nil {
			errs[i] = ctx.Err()
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = f(item)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// countAnswers counts requests the reaper answered, from their recorded
// completions.
func (r *Reaper) countAnswers(ctx context.Context, us []session.Unpublished) {
	for _, u := range us {
		var c api.Completion
		if json.Unmarshal(u.Completion, &c) == nil {
			telemetry.CountAnswer(ctx, r.answered, telemetry.AnsweredByReaper, &c)
		}
	}
}

// publishAll publishes recorded completions and marks them published, and
// returns how many it published; one that fails stays unmarked, and a later
// pass publishes it (the relay logs the failure). One whose publish a
// lease document tracks (InLease) is dropped from it too; the error is
// that of those drops.
func (r *Reaper) publishAll(ctx context.Context, us []session.Unpublished) (int, error) {
	n := 0
	var errs []error
	for _, u := range us {
		if r.relay.Send(ctx, outbox.Recorded{SessionID: u.SessionID, RequestID: u.RequestID, Completion: u.Completion}) != nil {
			continue
		}
		n++
		if u.InLease {
			// One at a time: the lease documents of a few sessions at most.
			errs = append(errs, r.store.ClearPublishing(ctx, u.SessionID, []string{u.RequestID}))
		}
	}
	return n, errors.Join(errs...)
}

// recoverHosts takes sessions from hosts whose lease lapsed; the
// relaunch step that follows gives them new hosts. A lapsed host's
// execution is cancelled first, and the session recovered only once Cloud
// Run reports it ended (lapsedHost).
func (r *Reaper) recoverHosts(ctx context.Context, t *tally) error {
	expired, err := r.store.ExpiredHosts(ctx)
	if err != nil {
		return err
	}
	return each(ctx, r.cfg.Concurrency, expired, func(h session.ExpiredHost) error {
		var e jobrunner.Execution
		var err error
		if h.Execution != "" {
			e, err = r.runner.Get(ctx, h.Execution)
		}
		step, err := lapsedHost(h, e, err)
		switch step {
		case hostWait:
			return err
		case hostCancel:
			// Again each pass: a cancel is idempotent.
			r.logger.Warn("lapsed host still runs: cancelling it before the session moves on", "event", "host.lapsed_cancel", "session_id", h.SessionID, "execution_id", h.Execution)
			if err := r.runner.Cancel(ctx, h.Execution); err != nil {
				return fmt.Errorf("session %s: cancel its lapsed host: %w", h.SessionID, err)
			}
			return nil
		}
		id := h.SessionID
		lost, recovered, err := r.store.RecoverHost(ctx, id)
		if err != nil || !recovered {
			return err
		}
		t.add(func(rep *Report) { rep.HostsRecovered++; rep.HostLost += len(lost) })
		r.hostsLost.Add(ctx, 1)
		r.countAnswers(ctx, lost)
		r.logger.Warn("host lost", "event", "host.lost", "session_id", id, "requests_lost", len(lost))
		r.publishAll(ctx, lost)
		return nil
	})
}

// relaunchStranded gives sessions with queued requests and no host one
// (stranded decides). The launches it claims are handed to the launcher,
// never waited for.
func (r *Reaper) relaunchStranded(ctx context.Context, t *tally) error {
	// The sessions this process's launcher holds are being launched, or
	// wait in line: nothing to read of them.
	waiting, err := r.store.Waiting(ctx, r.launches.Holds)
	if err != nil {
		return err
	}
	return each(ctx, r.cfg.Concurrency, waiting, func(w session.Waiting) error {
		id := w.SessionID
		var e jobrunner.Execution
		var err error
		if needsExecution(w) {
			e, err = r.runner.Get(ctx, w.Launch.Execution)
		}
		switch stranded(w, e, err) {
		case strandedLeave:
			return nil
		case strandedWithdraw:
			r.logger.Warn("host ended before it served its session", "event", "host.launch_died", "session_id", id, "execution_id", w.Launch.Execution)
			if err := r.store.LaunchFailed(ctx, id, w.Launch.ID); err != nil {
				return err
			}
		}
		l, failed, err := r.store.Relaunch(ctx, id, r.cfg.MaxLaunchAttempts)
		if err != nil {
			return err
		}
		if len(failed) > 0 {
			t.add(func(rep *Report) { rep.LaunchFailed += len(failed) })
			r.countAnswers(ctx, failed)
			r.logger.Error("session given up: no host could be launched", "event", "host.launch_given_up", "session_id", id, "requests", len(failed))
			r.publishAll(ctx, failed)
		}
		if l != nil {
			r.launches.Request(id, l, "")
			t.add(func(rep *Report) { rep.Launched++ })
		}
		return nil
	})
}

// republish publishes completions whose publish was lost.
func (r *Reaper) republish(ctx context.Context, cut cutoffs, t *tally) error {
	us, err := r.store.Unpublished(ctx, cut.unpublished, republishBatch)
	if err != nil {
		return err
	}
	n, err := r.publishAll(ctx, us)
	t.add(func(rep *Report) { rep.Republished += n })
	r.republished.Add(ctx, int64(n))
	return err
}

// destroyStale destroys sessions idle past their TTL.
func (r *Reaper) destroyStale(ctx context.Context, cut cutoffs, t *tally) error {
	ids, err := r.store.Stale(ctx, cut.stale)
	if err != nil {
		return err
	}
	return each(ctx, r.cfg.Concurrency, ids, func(id string) error {
		host, answered, err := r.store.Destroy(ctx, id, "idle past its time to live")
		if err != nil {
			return err
		}
		t.add(func(rep *Report) { rep.Destroyed++ })
		r.countAnswers(ctx, answered)
		r.logger.Info("stale session destroyed", "event", "session.expired", "session_id", id)
		r.publishAll(ctx, answered)
		if host != "" {
			return r.runner.Cancel(ctx, host)
		}
		return nil
	})
}

// purge deletes the objects of destroyed sessions.
func (r *Reaper) purge(ctx context.Context, t *tally) error {
	ids, err := r.store.PurgePending(ctx)
	if err != nil {
		return err
	}
	return each(ctx, r.cfg.Concurrency, ids, func(id string) error {
		if err := r.store.Purge(ctx, id); err != nil {
			return err
		}
		t.add(func(rep *Report) { rep.Purged++ })
		return nil
	})
}

// cancelOrphans cancels executions that host no live session, which also
// ends their background processes.
func (r *Reaper) cancelOrphans(ctx context.Context, cut cutoffs, t *tally) error {
	running, err := r.runner.Running(ctx)
	if err != nil {
		return err
	}
	if len(running) == 0 {
		return nil
	}
	hosted, err := r.store.Hosted(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range orphans(running, hosted, cut.orphan) {
		if err := r.runner.Cancel(ctx, e.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		t.add(func(rep *Report) { rep.OrphansCanceled++ })
		r.logger.Warn("orphaned execution cancelled", "event", "execution.orphan_cancelled", "execution_id", e.ID, "session_id", e.SessionID)
	}
	return errors.Join(errs...)
}

// settleProcesses marks the background processes of hosts that are gone as
// lost in the sessions' registries.
func (r *Reaper) settleProcesses(ctx context.Context, t *tally) error {
	n, err := r.store.SettleProcesses(ctx)
	t.add(func(rep *Report) { rep.ProcessesLost += n })
	return err
}

// refillPool removes dead pool hosts and launches what the pool lacks.
func (r *Reaper) refillPool(ctx context.Context, t *tally) error {
	if !r.pool.Enabled() {
		return nil
	}
	st, err := r.pool.Refill(ctx)
	t.add(func(rep *Report) { rep.PoolIdle = st.Idle })
	return err
}
