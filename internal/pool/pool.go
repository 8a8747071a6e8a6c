// Package pool keeps a warm pool of session hosts: Cloud Run executions of
// the host job started before any session needs them, each registered in
// Firestore as idle, so that a new session waits for a handover and its own
// checkpoint restore instead of a cold start.
//
// It owns three things: claiming an idle member for a session's launch (the
// launcher, package launch, calls Claim before falling back to RunJob), the
// refill policy (how many members to keep, launching the shortfall and
// removing members that died or stopped renewing), and the member's side
// (Await: register, stay claimable, wait for a session or leave when unused).
//
// Each member is one execution with one task: an execution is what Cloud Run
// cancels, so one per host keeps a session's host cancellable on its own,
// and the reaper's orphan rule (an execution that hosts nothing is
// cancelled) holds per host. The pool never runs user commands and never
// hands a member more than one session.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sandrun/sandrun/internal/retry"
	"github.com/sandrun/sandrun/internal/session"
)

// Environment a pool member's execution receives.
const (
	EnvMember      = "SANDRUN_POOL_MEMBER"
	EnvIdleTimeout = "SANDRUN_POOL_IDLE_TIMEOUT"
	EnvMemberTTL   = "SANDRUN_POOL_MEMBER_TTL"
)

// Policy says how large the pool is. The pool is off unless Min or Target
// is above zero.
type Policy struct {
	// Min idle members are kept at all times, used or not.
	Min int
	// Target idle members are kept while sessions arrive (within
	// IdleTimeout); more when the arrival rate asks for it.
	Target int
	// Max bounds the members, idle and launching.
	Max int
	// IdleTimeout is how long a member waits unclaimed before it leaves,
	// and how long after the last arrival the pool shrinks back to Min.
	IdleTimeout time.Duration
	// MemberTTL is how long an idle member stays claimable unrenewed; it
	// renews every MemberTTL/3.
	MemberTTL time.Duration
	// LaunchTimeout is how long a launched member may take to register
	// before it is taken for dead.
	LaunchTimeout time.Duration
	// Peak is the burst the pool absorbs from idle members while new
	// sessions arrive: idle members for arrivals at Peak times the recent
	// rate during one member's start, on top of the members starting to
	// replace those claimed (default DefaultPeak). A burst of new sessions
	// at up to (1 + Peak) times the recent rate, lasting about one member
	// start, is then served from the pool; each unit of Peak costs
	// rate × ready idle members.
	Peak float64
}

// Defaults of Policy.
const (
	DefaultMax           = 10
	DefaultIdleTimeout   = 10 * time.Minute
	DefaultMemberTTL     = 15 * time.Second
	DefaultLaunchTimeout = 5 * time.Minute
	// defaultReady is the time a member takes to register, assumed until
	// one was measured.
	defaultReady = 10 * time.Second
	// rateWindow is the longest span over which the arrival rate is
	// measured, minRateSpan the shortest.
	rateWindow  = time.Minute
	minRateSpan = 10 * time.Second
	// DefaultPeak keeps half a member start's arrivals idle beyond the
	// members starting.
	DefaultPeak = 0.5
	// DefaultRefillInterval is how often a dispatcher refills the pool
	// when nothing asks it to sooner.
	DefaultRefillInterval = 10 * time.Second
)

// Enabled reports whether the policy keeps a pool at all.
func (p Policy) Enabled() bool { return p.Min > 0 || p.Target > 0 }

func (p Policy) withDefaults() Policy {
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	p.Min = min(p.Min, p.Max)
	p.Target = min(max(p.Target, p.Min), p.Max)
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = DefaultIdleTimeout
	}
	if p.MemberTTL <= 0 {
		p.MemberTTL = DefaultMemberTTL
	}
	if p.LaunchTimeout <= 0 {
		p.LaunchTimeout = DefaultLaunchTimeout
	}
	if p.Peak <= 0 {
		p.Peak = DefaultPeak
	}
	return p
}

// Desired is the number of members (idle and launching) the policy asks
// for, given the arrivals (claims and misses) it saw and how long members
// take to register.
func (p Policy) Desired(now time.Time, arrivals []time.Time, ready time.Duration) int {
	p = p.withDefaults()
	if !p.Enabled() {
		return 0
	}
	var last, first time.Time
	recent := 0
	for _, t := range arrivals {
		if t.After(last) {
			last = t
		}
		if now.Sub(t) <= rateWindow {
			recent++
			if first.IsZero() || t.Before(first) {
				first = t
			}
		}
	}
	if last.IsZero() || now.Sub(last) > p.IdleTimeout {
		return p.Min
	}
	// The rate over the span the arrivals cover, so that a pool that just
	// began to be used grows at once; a floor on the span keeps a single
	// arrival from reading as a flood.
	span := min(max(now.Sub(first), minRateSpan), rateWindow)
	rate := float64(recent) / span.Seconds()
	// Little's law: rate × ready arrive during one member's start, which
	// the members starting replace; Peak times as many more wait idle for
	// a burst.
	grown := int(math.Ceil(rate * ready.Seconds() * (1 + p.Peak)))
	return min(max(p.Target, grown), p.Max)
}

// Launcher starts and cancels member executions.
type Launcher interface {
	LaunchPoolMember(ctx context.Context, memberID string, env map[string]string) (string, error)
	Cancel(ctx context.Context, execution string) error
}

// Store keeps the warm pool's member records (package session provides
// it, over Firestore).
type Store interface {
	AddLaunchingMember(ctx context.Context, id string) error
	MemberLaunched(ctx context.Context, id, execution string) error
	RemoveMember(ctx context.Context, id string) error
	ClaimMember(ctx context.Context, sessionID, launchID, traceparent string) (*session.Member, error)
	RecordMiss(ctx context.Context, sessionID, launchID string) error
	PoolMembers(ctx context.Context) ([]session.Member, error)
	PoolAssignments(ctx context.Context, since time.Time) ([]session.Member, error)
}

// Pool claims and refills the warm pool.
type Pool struct {
	policy   Policy
	store    Store
	launcher Launcher
	logger   *slog.Logger
	now      func() time.Time

	claims    metric.Int64Counter
	launches  metric.Int64Counter
	removed   metric.Int64Counter
	idleGauge metric.Int64Gauge

	// refill coalesces refill requests into one running refill.
	refill chan struct{}
	mu     sync.Mutex
	last   Status
}

// New returns the pool that policy describes; meters may be nil (the global
// meter provider is used).
func New(policy Policy, store Store, launcher Launcher, meters metric.MeterProvider, logger *slog.Logger) *Pool {
	if meters == nil {
		meters = otel.GetMeterProvider()
	}
	m := meters.Meter("github.com/sandrun/sandrun/internal/pool")
	p := &Pool{policy: policy.withDefaults(), store: store, launcher: launcher, logger: logger, now: time.Now, refill: make(chan struct{}, 1)}
	// The instruments of a working provider never fail; a failing one
	// leaves no-op instruments behind, which is what metrics off means.
	p.claims, _ = m.Int64Counter("sandrun.pool.claims", metric.WithDescription("new-session launches by outcome: hit (an idle pool host took the session) or miss (fell back to RunJob)"))
	p.launches, _ = m.Int64Counter("sandrun.pool.launches", metric.WithDescription("pool hosts launched"))
	p.removed, _ = m.Int64Counter("sandrun.pool.removed", metric.WithDescription("pool hosts taken out because they died, stopped renewing or never registered"))
	p.idleGauge, _ = m.Int64Gauge("sandrun.pool.idle", metric.WithDescription("idle pool hosts at the last refill"))
	return p
}

// Enabled reports whether the pool is on.
func (p *Pool) Enabled() bool { return p != nil && p.policy.Enabled() }

// Claim hands a session's launch to an idle member and returns the
// member's execution, or "" when no member is idle (a miss: the caller
// launches the host itself). Either way a refill is requested.
func (p *Pool) Claim(ctx context.Context, sessionID, launchID, traceparent string) (string, error) {
	if !p.Enabled() {
		return "", nil
	}
	defer p.RequestRefill()
	m, err := p.store.ClaimMember(ctx, sessionID, launchID, traceparent)
	if err != nil {
		return "", err
	}
	if m == nil {
		p.claims.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "miss")))
		p.logger.Info("pool empty: cold start", "event", "pool.miss", "session_id", sessionID)
		if err := p.store.RecordMiss(ctx, sessionID, launchID); err != nil {
			p.logger.Warn("recording a pool miss failed", "event", "pool.miss_record_failed", "session_id", sessionID, "error", err.Error())
		}
		return "", nil
	}
	p.claims.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "hit")))
	p.logger.Info("pool host handed a session", "event", "pool.hit", "session_id", sessionID, "execution_id", m.Execution, "member", m.ID)
	return m.Execution, nil
}

// RequestRefill asks Run for a refill soon; requests made while one runs
// are folded into the next.
func (p *Pool) RequestRefill() {
	select {
	case p.refill <- struct{}{}:
	default:
	}
}

// Run refills the pool when asked and every interval, until ctx ends.
func (p *Pool) Run(ctx context.Context, interval time.Duration) {
	if !p.Enabled() {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := p.Refill(ctx); err != nil && ctx.Err() == nil {
			p.logger.Warn("pool refill failed", "event", "pool.refill_failed", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-p.refill:
		case <-t.C:
		}
	}
}

// Status is the pool as a refill saw it.
type Status struct {
	Enabled   bool `json:"enabled"`
	Idle      int  `json:"idle"`
	Launching int  `json:"launching"`
	// Desired is what the policy asked for (idle and launching).
	Desired int `json:"desired"`
	// Hits and Misses count the launches since the window began that an
	// idle host took and that fell back to RunJob.
	Hits    int     `json:"hits"`
	Misses  int     `json:"misses"`
	HitRate float64 `json:"hit_rate"`
	Window  string  `json:"window"`
	// ReadySeconds is the median time a member took to register.
	ReadySeconds float64 `json:"ready_seconds"`
}

// Refill removes dead members and launches the shortfall of the policy,
// and returns the pool as it found it.
func (p *Pool) Refill(ctx context.Context) (Status, error) {
	if !p.Enabled() {
		return Status{}, nil
	}
	st, members, arrivals, ready, err := p.look(ctx)
	if err != nil {
		return st, err
	}
	states := make([]MemberState, len(members))
	for i, m := range members {
		states[i] = MemberState{ID: m.ID, Execution: m.Execution, Launching: m.Status == session.MemberLaunching,
			LaunchedAt: m.LaunchedAt, Expires: m.Expires}
	}
	d := Decide(p.policy, p.now(), states, arrivals, ready)
	var errs []error
	for _, m := range d.Remove {
		// It died, hangs, or never came up: out of the pool, and its
		// execution, if any, ends.
		if err := p.store.RemoveMember(ctx, m.ID); err != nil {
			if !errors.Is(err, session.ErrMemberGone) {
				errs = append(errs, err)
			}
			continue
		}
		p.removed.Add(ctx, 1)
		p.logger.Warn("pool host removed", "event", "pool.member_removed", "member", m.ID, "execution_id", m.Execution, "launching", m.Launching)
		if m.Execution != "" {
			if err := p.launcher.Cancel(ctx, m.Execution); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for range d.Launch {
		if err := p.launch(ctx); err != nil {
			errs = append(errs, err)
			break
		}
	}
	p.idleGauge.Record(ctx, int64(st.Idle))
	return st, errors.Join(errs...)
}

// launch starts one member.
func (p *Pool) launch(ctx context.Context) error {
	id := "m-" + uuid.NewString()
	if err := p.store.AddLaunchingMember(ctx, id); err != nil {
		return err
	}
	env := map[string]string{
		EnvMember:      id,
		EnvIdleTimeout: p.policy.IdleTimeout.String(),
		EnvMemberTTL:   p.policy.MemberTTL.String(),
	}
	var execution string
	err := retry.Do(ctx, retry.CloudRun, p.logger, "launch pool host", func(ctx context.Context) error {
		var err error
		execution, err = p.launcher.LaunchPoolMember(ctx, id, env)
		return err
	})
	if err != nil {
		if rerr := p.store.RemoveMember(context.WithoutCancel(ctx), id); rerr != nil {
			p.logger.Warn("withdrawing a failed pool launch failed", "event", "pool.withdraw_failed", "member", id, "error", rerr.Error())
		}
		return fmt.Errorf("launch pool host %s: %w", id, err)
	}
	p.launches.Add(ctx, 1)
	p.logger.Info("pool host launched", "event", "pool.launched", "member", id, "execution_id", execution)
	return p.store.MemberLaunched(ctx, id, execution)
}

// Status reports the pool from Firestore.
func (p *Pool) Status(ctx context.Context) (Status, error) {
	st, _, _, _, err := p.look(ctx)
	return st, err
}

// look reads the members and the recent demand: the arrivals of new
// sessions and the median time a member took to register.
func (p *Pool) look(ctx context.Context) (Status, []session.Member, []time.Time, time.Duration, error) {
	st := Status{Enabled: p.Enabled(), Window: p.policy.IdleTimeout.String()}
	now := p.now()
	members, err := p.store.PoolMembers(ctx)
	if err != nil {
		return st, nil, nil, 0, err
	}
	assigned, err := p.store.PoolAssignments(ctx, now.Add(-p.policy.IdleTimeout))
	if err != nil {
		return st, nil, nil, 0, err
	}
	var arrivals []time.Time
	var ready []time.Duration
	for _, m := range slices.Concat(members, assigned) {
		if !m.ReadyAt.IsZero() && !m.LaunchedAt.IsZero() {
			ready = append(ready, m.ReadyAt.Sub(m.LaunchedAt))
		}
		switch m.Status {
		case session.MemberIdle:
			if m.Expires.After(now) {
				st.Idle++
			}
		case session.MemberLaunching:
			st.Launching++
		case session.MemberAssigned:
			st.Hits++
			arrivals = append(arrivals, m.AssignedAt)
		case session.MemberMissed:
			st.Misses++
			arrivals = append(arrivals, m.AssignedAt)
		}
	}
	readyTime := defaultReady
	if len(ready) > 0 {
		slices.Sort(ready)
		readyTime = ready[len(ready)/2]
	}
	st.ReadySeconds = readyTime.Seconds()
	if n := st.Hits + st.Misses; n > 0 {
		st.HitRate = float64(st.Hits) / float64(n)
	}
	st.Desired = p.policy.Desired(now, arrivals, readyTime)
	return st, members, arrivals, readyTime, nil
}
