package pool

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sandrun/sandrun/internal/session"
)

// MemberConfig is a pool member's side of the policy, which reaches it
// through its execution's environment.
type MemberConfig struct {
	// ID is the member's pool document (EnvMember).
	ID string
	// Execution is the Cloud Run execution running the member.
	Execution string
	// IdleTimeout is how long the member waits unclaimed before it leaves.
	IdleTimeout time.Duration
	// TTL is how long the member stays claimable unrenewed.
	TTL time.Duration
}

// MemberStore is what a pool member keeps of its own record (package
// session provides it, over Firestore).
type MemberStore interface {
	RegisterMember(ctx context.Context, id, execution string, ttl time.Duration) error
	RenewMember(ctx context.Context, id string, ttl time.Duration) error
	LeaveMember(ctx context.Context, id string) error
	Member(ctx context.Context, id string) (*session.MemberDoc, error)
	WatchMember(ctx context.Context, id string) <-chan *session.MemberDoc
}

// Assignment is the session a member was handed.
type Assignment struct {
	SessionID   string
	LaunchID    string
	Traceparent string
}

// Await registers the member as idle and waits until a launch claims it,
// its idle time runs out, its record is removed, or ctx ends. It returns the
// session to host, or nil when the member should exit without one. A member
// that was claimed always gets its assignment, even when it was leaving.
func Await(ctx context.Context, store MemberStore, cfg MemberConfig, logger *slog.Logger) (*Assignment, error) {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultMemberTTL
	}
	logger = logger.With("member", cfg.ID, "execution_id", cfg.Execution)
	start := time.Now()
	if err := store.RegisterMember(ctx, cfg.ID, cfg.Execution, cfg.TTL); err != nil {
		return nil, err
	}
	logger.Info("pool host idle", "event", "pool.member_idle", "duration_seconds", time.Since(start).Seconds())

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := store.WatchMember(wctx, cfg.ID)
	renew := time.NewTicker(cfg.TTL / 3)
	defer renew.Stop()
	idle := time.NewTimer(cfg.IdleTimeout)
	defer idle.Stop()

	// assigned reads the member's document after it stopped being idle.
	assigned := func(ctx context.Context) (*Assignment, error) {
		m, err := store.Member(ctx, cfg.ID)
		if errors.Is(err, session.ErrNotFound) {
			logger.Info("pool host removed from the pool: exits", "event", "pool.member_gone")
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return assignment(m, logger), nil
	}
	// leave takes the member out, unless it was claimed meanwhile.
	leave := func(ctx context.Context, why string) (*Assignment, error) {
		err := store.LeaveMember(ctx, cfg.ID)
		if errors.Is(err, session.ErrMemberGone) {
			return assigned(ctx)
		}
		if err != nil {
			return nil, err
		}
		logger.Info("pool host left the pool", "event", "pool.member_left", "reason", why)
		return nil, nil
	}
	for {
		select {
		case m, ok := <-watch:
			if !ok {
				// The watch failed; renewals, which fail once the member
				// is claimed, take its place.
				watch = nil
				continue
			}
			if m == nil {
				logger.Info("pool host removed from the pool: exits", "event", "pool.member_gone")
				return nil, nil
			}
			if m.Status != session.MemberIdle {
				return assignment(m, logger), nil
			}
		case <-renew.C:
			err := store.RenewMember(ctx, cfg.ID, cfg.TTL)
			if errors.Is(err, session.ErrMemberGone) {
				return assigned(ctx)
			}
			if err != nil {
				logger.Warn("pool host renewal failed", "event", "pool.renew_failed", "error", err.Error())
			}
		case <-idle.C:
			return leave(ctx, "idle")
		case <-ctx.Done():
			// The execution is ending: leave, so that no launch claims a
			// host that is gone, unless one just did.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return leave(lctx, "stopped")
		}
	}
}

func assignment(m *session.MemberDoc, logger *slog.Logger) *Assignment {
	if m.Status != session.MemberAssigned || m.SessionID == "" {
		logger.Warn("pool host is neither idle nor assigned: exits", "event", "pool.member_unexpected", "status", m.Status)
		return nil
	}
	logger.Info("pool host assigned", "event", "pool.member_assigned", "session_id", m.SessionID)
	return &Assignment{SessionID: m.SessionID, LaunchID: m.LaunchID, Traceparent: m.Traceparent}
}
