// Package launch starts session hosts. It owns the one way a host is
// launched, for the dispatcher, the reaper and the warm pool alike: an idle
// pool host when there is one, else a new Cloud Run execution.
//
// Launching is apart from handling requests. The dispatcher records a
// request and its claimed launch in Firestore, hands the claim to a
// Launcher and acknowledges the message; the Launcher's workers, a bounded
// number, carry the claims out. While Cloud Run refuses launches each
// session backs off on its own, keeping its claim and its requests queued,
// and is launched when launches succeed again. The deployment's most
// running hosts (MaxHosts) are never exceeded by a launch: sessions beyond
// wait in line, first come first served, and their place is recorded in
// Firestore for `sandrun status`.
//
// The package never decides that a session needs a host (the session
// store's Enqueue and Relaunch claim launches) and never runs user
// commands.
package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/retry"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/telemetry"
)

// EnvTraceparent carries the trace context of the request that launched a
// host into the host's environment.
const EnvTraceparent = "SANDRUN_TRACEPARENT"

// Runner starts, lists and cancels executions of the host job.
type Runner interface {
	Launch(ctx context.Context, sessionID, launchID string, env map[string]string) (string, error)
	LaunchPoolMember(ctx context.Context, memberID string, env map[string]string) (string, error)
	Cancel(ctx context.Context, execution string) error
	Running(ctx context.Context) ([]jobrunner.Execution, error)
}

// Pool hands a session's launch to an idle pool host. Claim returns the
// execution that took it, or "" when none was idle.
type Pool interface {
	Claim(ctx context.Context, sessionID, launchID, traceparent string) (string, error)
}

// ErrMaxHosts: the deployment runs its most hosts, or sessions wait for
// one; a pool host is not launched then.
var ErrMaxHosts = errors.New("the most running hosts are running")

// Config tunes a Launcher. Zero fields take the defaults below.
type Config struct {
	// Concurrency bounds the launches (and claim records) under way at once.
	Concurrency int
	// MaxHosts bounds the running executions of the host job, pool hosts
	// included; 0 means no bound. It should stay within the Cloud Run job
	// instance quota of the region (docs/cost.md).
	MaxHosts int
	// Backoff is how a session's launches are spaced while Cloud Run
	// refuses them (its MaxElapsed is ignored: a session waits as long as
	// it takes).
	Backoff retry.Policy
	// CountInterval is how old the count of running hosts may be when a
	// launch is decided under MaxHosts; sessions in line are looked at
	// again that often.
	CountInterval time.Duration
	// AttemptTimeout bounds one launch attempt.
	AttemptTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultConcurrency    = 8
	DefaultCountInterval  = 2 * time.Second
	DefaultAttemptTimeout = 30 * time.Second
)

// DefaultBackoff spaces a session's refused launches: 1 s, doubling, at
// most 30 s apart, so that a session is launched within about 30 s of
// Cloud Run accepting launches again.
var DefaultBackoff = retry.Policy{Initial: time.Second, Max: 30 * time.Second}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxHosts < 0 {
		c.MaxHosts = 0
	}
	if c.Backoff.Initial <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.CountInterval <= 0 {
		c.CountInterval = DefaultCountInterval
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	return c
}

// Store records the launches the Launcher carries out in their sessions'
// documents (package session provides it, over Firestore).
type Store interface {
	LaunchTimeout() time.Duration
	RecordLaunch(ctx context.Context, sessionID, launchID, execution string) error
	WithdrawLaunch(ctx context.Context, sessionID, launchID string, counted bool) error
	KeepClaim(ctx context.Context, sessionID, launchID string, since time.Time, why string) (*session.Launch, error)
}

// Launcher carries out claimed launches in the background. Request hands
// it a claim; Run works the claims until its context ends.
type Launcher struct {
	cfg    Config
	store  Store
	runner Runner
	pool   Pool
	logger *slog.Logger
	now    func() time.Time

	launches metric.Int64Counter

	mu sync.Mutex
	// pending are the claims not yet carried out, by session.
	pending map[string]*entry
	// busy counts the attempts under way.
	busy int
	// settled is closed, and replaced, whenever an attempt ends.
	settled chan struct{}
	// wake tells Run to look at the claims again.
	wake chan struct{}
	// counted is the number of running executions Cloud Run listed at
	// countedAt; started counts the executions started since.
	// reserved (below) counts the attempts under way that may start one.
	counted   int
	countedAt time.Time
	started   int
	// reserved counts the attempts under way that may start an execution.
	reserved int
	// countMu serializes counts of the running executions.
	countMu sync.Mutex
	// wg tracks the attempts under way.
	wg sync.WaitGroup
}

// entry is a claimed launch waiting to be carried out.
type entry struct {
	sessionID   string
	claim       *session.Launch
	traceparent string
	// since is the session's place in line.
	since time.Time
	// next is when it may be tried again.
	next    time.Time
	backoff *backoff.ExponentialBackOff
	tries   int
	busy    bool
	// lastTry is when an attempt last began.
	lastTry time.Time
	// waiting is what the stored claim says it waits for ("": nothing).
	waiting string
}

// New returns a Launcher that starts hosts with runner. Call UsePool to
// let it hand launches to a warm pool first.
func New(cfg Config, store Store, runner Runner, logger *slog.Logger) *Launcher {
	l := &Launcher{cfg: cfg.withDefaults(), store: store, runner: runner, logger: logger, now: time.Now,
		pending: map[string]*entry{}, settled: make(chan struct{}), wake: make(chan struct{}, 1)}
	// From the global meter provider: no-ops unless metrics are on.
	l.launches, _ = otel.GetMeterProvider().Meter("github.com/sandrun/sandrun/internal/launch").Int64Counter("sandrun.host.launches", metric.WithUnit("{launch}"),
		metric.WithDescription("host launches by outcome (ok or failed) and pooled (handed to a warm pool host)"))
	return l
}

// UsePool makes launches try pool's idle hosts first. Call it before Run.
func (l *Launcher) UsePool(p Pool) { l.pool = p }

// MaxHosts is the bound on running hosts, 0 for none.
func (l *Launcher) MaxHosts() int { return l.cfg.MaxHosts }

// Request hands the launcher a claimed launch of a session; it returns at
// once. A newer claim of a session replaces the one it holds, keeping the
// session's place in line.
func (l *Launcher) Request(sessionID string, claim *session.Launch, traceparent string) {
	l.mu.Lock()
	e := l.pending[sessionID]
	switch {
	case e == nil:
		since := claim.WaitingSince
		if since.IsZero() {
			since = claim.RequestedAt
		}
		b := backoff.NewExponentialBackOff()
		b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = l.cfg.Backoff.Initial, l.cfg.Backoff.Max, 0
		l.pending[sessionID] = &entry{sessionID: sessionID, claim: claim, traceparent: traceparent, since: since, backoff: b}
	case e.claim.ID != claim.ID:
		e.claim, e.waiting = claim, ""
		if traceparent != "" {
			e.traceparent = traceparent
		}
	}
	l.mu.Unlock()
	l.poke()
}

func (l *Launcher) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Holds reports whether the launcher holds a claim of the session, not yet
// carried out.
func (l *Launcher) Holds(sessionID string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending[sessionID] != nil
}

// Pending is the number of claims not yet carried out.
func (l *Launcher) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// Run carries out the claims until ctx ends. Then it waits for the
// attempts under way and withdraws the claims it still holds, uncounted,
// so that the reaper of another process claims them again at once.
func (l *Launcher) Run(ctx context.Context) {
	for {
		wait := l.dispatch(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			l.stop()
			return
		case <-l.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// idleWait is how long Run sleeps when nothing is due.
const idleWait = time.Minute

// dispatch starts attempts for the claims that are due, first in line
// first, within the concurrency and the most running hosts, and returns how
// long Run may wait before looking again.
func (l *Launcher) dispatch(ctx context.Context) time.Duration {
	room, counted := -1, false // -1: no bound
	if l.cfg.MaxHosts > 0 && l.anyDue() {
		room, counted = l.room(ctx), true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var due []*entry
	wait := idleWait
	for _, e := range l.pending {
		switch {
		case e.busy:
		case e.next.After(now):
			wait = min(wait, e.next.Sub(now))
		default:
			due = append(due, e)
		}
	}
	if l.cfg.MaxHosts > 0 && !counted && len(due) > 0 {
		// An attempt settled after anyDue looked: the room was not
		// counted, and no bound is not the answer. Look again at once.
		return 0
	}
	// First come, first served; but a session whose launch Cloud Run
	// refused retries after those not refused yet, so that no new
	// session's first try waits behind other sessions' retries.
	slices.SortFunc(due, func(a, b *entry) int {
		if ar, br := a.waiting == session.WaitRefused, b.waiting == session.WaitRefused; ar != br {
			if ar {
				return 1
			}
			return -1
		}
		if c := a.since.Compare(b.since); c != 0 {
			return c
		}
		return compareStrings(a.sessionID, b.sessionID)
	})
	for i, e := range due {
		if l.busy >= l.cfg.Concurrency {
			break
		}
		mayRun := room != 0
		if !mayRun {
			// The line moves when hosts leave: look again then.
			wait = min(wait, l.cfg.CountInterval)
			// A session in line has its place recorded once, and again
			// before its claim would time out (else the reaper would claim
			// anew, counting an attempt, and in the end give it up); in
			// between only the first in line tries, now and then, for an
			// idle pool host (which runs already, so takes no room).
			fresh := now.Sub(e.claim.RequestedAt) < l.store.LaunchTimeout()/2
			if e.waiting == session.WaitMaxHosts && fresh && (i > 0 || l.pool == nil || now.Sub(e.lastTry) < l.cfg.CountInterval) {
				continue
			}
		}
		reserved := room > 0
		if reserved {
			// Reserved now, so that no other launch takes its room.
			room--
			l.reserved++
		}
		e.busy, e.lastTry = true, now
		l.busy++
		l.wg.Add(1)
		go l.attempt(ctx, e, mayRun, reserved)
	}
	return wait
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (l *Launcher) anyDue() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, e := range l.pending {
		if !e.busy && !e.next.After(now) {
			return true
		}
	}
	return false
}

// room is how many more hosts may start now under MaxHosts, counting the
// running executions again when the count is older than CountInterval.
// When Cloud Run cannot be asked, it answers from the last count.
func (l *Launcher) room(ctx context.Context) int {
	l.countMu.Lock()
	defer l.countMu.Unlock()
	l.mu.Lock()
	stale := l.now().Sub(l.countedAt) >= l.cfg.CountInterval
	startedBefore := l.started
	l.mu.Unlock()
	if stale {
		running, err := l.runner.Running(ctx)
		if err != nil {
			l.logger.Warn("counting the running hosts failed; using the last count", "event", "launch.count_failed", "error", err.Error())
		} else {
			l.mu.Lock()
			// Executions started before the list are in it; one started
			// while it was taken may be counted twice, never missed.
			l.counted, l.countedAt, l.started = len(running), l.now(), l.started-startedBefore
			l.mu.Unlock()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.cfg.MaxHosts-l.counted-l.started-l.reserved, 0)
}

// attempt tries once to carry out e's claim: with an idle pool host, or,
// when mayRun, a new execution (in the room reserved for it, if reserved).
// It then settles the entry.
func (l *Launcher) attempt(ctx context.Context, e *entry, mayRun, reserved bool) {
	defer l.wg.Done()
	actx, cancel := context.WithTimeout(ctx, l.cfg.AttemptTimeout)
	defer cancel()
	l.mu.Lock()
	sessionID, claim, tp, tries, waiting := e.sessionID, e.claim, e.traceparent, e.tries, e.waiting
	l.mu.Unlock()
	log := l.logger.With("session_id", sessionID)
	execution, pooled, err := l.launchOnce(actx, log, sessionID, claim, tp, mayRun, tries == 0 || !mayRun)

	drop := false
	var next time.Time
	var why string
	switch {
	case ctx.Err() != nil:
		// Stopping: Run's stop withdraws the claim.
	case err == nil && execution != "":
		log.Info("host launched", "event", "host.launched", "execution_id", execution, "attempt", claim.Attempts, "pooled", pooled, "tries", tries+1)
		if err := l.store.RecordLaunch(actx, sessionID, claim.ID, execution); err != nil {
			log.Warn("recording the launch failed", "event", "host.launch_record_failed", "execution_id", execution, "error", err.Error())
		}
		drop = true
	case err == nil:
		// No room: it waits in line, without a backoff.
		why = session.WaitMaxHosts
	case !retry.Transient(err):
		// Refused for good (the job is missing, a permission): the claim
		// is withdrawn and counted, so that the reaper's relaunches give
		// the session up with LAUNCH_FAILED.
		log.Error("host launch failed", "event", "host.launch_failed", "attempt", claim.Attempts, "error", err.Error())
		if err := l.store.WithdrawLaunch(actx, sessionID, claim.ID, true); err != nil {
			log.Error("withdrawing the failed launch failed", "event", "host.launch_withdraw_failed", "error", err.Error())
		}
		drop = true
	default:
		why = session.WaitRefused
		l.mu.Lock()
		next = l.now().Add(e.backoff.NextBackOff())
		l.mu.Unlock()
		log.Warn("host launch refused; the session stays queued and is tried again", "event", "host.launch_refused",
			"tries", tries+1, "retry_at", next.UTC().Format(time.RFC3339Nano), "error", err.Error())
	}
	if why != "" {
		// Record the wait once, and keep the claim in flight before it
		// times out, so that no other launch is claimed meanwhile.
		age := l.now().Sub(claim.RequestedAt)
		if waiting != why || age > l.store.LaunchTimeout()/2 {
			kept, err := l.store.KeepClaim(actx, sessionID, claim.ID, e.since, why)
			switch {
			case err != nil:
				log.Warn("keeping the launch claim failed", "event", "launch.keep_failed", "error", err.Error())
			case kept == nil:
				// Destroyed, or another launch took over.
				drop = true
			default:
				claim, waiting = kept, why
			}
		}
	}
	l.mu.Lock()
	if reserved {
		l.reserved--
		if execution != "" && !pooled {
			l.started++
		}
	}
	e.busy = false
	l.busy--
	e.tries++
	if e.claim.ID == claim.ID {
		e.claim, e.waiting = claim, waiting
		if !next.IsZero() {
			e.next = next
		}
		if drop && l.pending[sessionID] == e {
			delete(l.pending, sessionID)
		}
	}
	close(l.settled)
	l.settled = make(chan struct{})
	l.mu.Unlock()
	l.poke()
}

// launchOnce hands the session to an idle pool host (when usePool) or,
// when mayRun, starts an execution for it. It returns "" and no error when
// it may not run one.
func (l *Launcher) launchOnce(ctx context.Context, log *slog.Logger, sessionID string, claim *session.Launch, traceparent string, mayRun, usePool bool) (execution string, pooled bool, err error) {
	ctx, span := telemetry.Start(telemetry.WithTraceparent(ctx, traceparent), "sandrun.launch", trace.SpanKindClient,
		attribute.String("sandrun.session_id", sessionID), attribute.Int("sandrun.launch_attempt", claim.Attempts))
	defer span.End()
	// The host's spans are children of the launch's.
	traceparent = telemetry.Traceparent(ctx)
	if l.pool != nil && usePool {
		execution, err := l.pool.Claim(ctx, sessionID, claim.ID, traceparent)
		if err != nil {
			log.Warn("claiming a pool host failed; launching one", "event", "pool.claim_failed", "error", err.Error())
		}
		if execution != "" {
			span.SetAttributes(attribute.Bool("sandrun.pool_hit", true), attribute.String("sandrun.execution_id", execution))
			l.count(ctx, "ok", true)
			return execution, true, nil
		}
	}
	if !mayRun {
		return "", false, nil
	}
	env := map[string]string{}
	if traceparent != "" {
		env[EnvTraceparent] = traceparent
	}
	execution, err = l.runner.Launch(ctx, sessionID, claim.ID, env)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		l.count(ctx, "failed", false)
		return "", false, err
	}
	span.SetAttributes(attribute.String("sandrun.execution_id", execution))
	l.count(ctx, "ok", false)
	return execution, false, nil
}

// count counts a host launch by outcome (ok or failed) and whether a pool
// host took it.
func (l *Launcher) count(ctx context.Context, outcome string, pooled bool) {
	l.launches.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome), attribute.Bool("pooled", pooled)))
}

// Drain waits until every claim handed over so far has been tried at least
// once and no attempt is under way, or ctx ends. A reaper making one pass
// (`reaper --once`) drains before it stops.
func (l *Launcher) Drain(ctx context.Context) error {
	for {
		l.mu.Lock()
		done := l.busy == 0
		for _, e := range l.pending {
			done = done && e.tries > 0
		}
		settled := l.settled
		l.mu.Unlock()
		if done {
			return nil
		}
		l.poke()
		select {
		case <-settled:
		case <-ctx.Done():
			return fmt.Errorf("drain launches: %w", ctx.Err())
		}
	}
}

// stopTimeout bounds the withdrawal of the claims held when Run stops.
const stopTimeout = 10 * time.Second

// stop waits for the attempts under way and withdraws the claims still
// held, uncounted: none was started.
func (l *Launcher) stop() {
	l.wg.Wait()
	l.mu.Lock()
	left := make([]*entry, 0, len(l.pending))
	for _, e := range l.pending {
		left = append(left, e)
	}
	l.pending = map[string]*entry{}
	l.mu.Unlock()
	if len(left) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	sem := make(chan struct{}, l.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, e := range left {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := l.store.WithdrawLaunch(ctx, e.sessionID, e.claim.ID, false); err != nil {
				l.logger.Warn("withdrawing a launch claim at stop failed; it times out", "event", "launch.withdraw_failed", "session_id", e.sessionID, "error", err.Error())
			}
		}()
	}
	wg.Wait()
	l.logger.Info("launcher stopped; claims handed back", "event", "launch.stopped", "withdrawn", len(left))
}

// LaunchPoolMember starts a warm pool host, unless the running hosts are
// at MaxHosts or sessions wait for a host (ErrMaxHosts): a pool host never
// takes a waiting session's room.
func (l *Launcher) LaunchPoolMember(ctx context.Context, memberID string, env map[string]string) (string, error) {
	if l.cfg.MaxHosts <= 0 {
		return l.runner.LaunchPoolMember(ctx, memberID, env)
	}
	l.mu.Lock()
	inLine := 0
	for _, e := range l.pending {
		if e.waiting == session.WaitMaxHosts {
			inLine++
		}
	}
	l.mu.Unlock()
	if inLine > 0 || l.room(ctx) <= 0 {
		return "", fmt.Errorf("launch pool host %s: %w", memberID, ErrMaxHosts)
	}
	execution, err := l.runner.LaunchPoolMember(ctx, memberID, env)
	if err == nil {
		l.mu.Lock()
		l.started++
		l.mu.Unlock()
	}
	return execution, err
}

// Cancel stops an execution (a pool host the pool removes).
func (l *Launcher) Cancel(ctx context.Context, execution string) error {
	return l.runner.Cancel(ctx, execution)
}
