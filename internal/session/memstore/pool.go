package memstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sandrun/sandrun/internal/session"
)

// The warm pool's records (see session's pool.go): one per member and one
// per miss, with the same transitions (launching → idle → assigned; a miss
// is born missed).

// poolRecordTTL is how long assigned and missed records are kept
// (session's, for their expire_at).
const poolRecordTTL = 24 * time.Hour

// setMember stores m as member id, or deletes it (nil), and tells its
// watchers.
func (s *Store) setMember(id string, m *session.MemberDoc) {
	if m == nil {
		delete(s.members, id)
	} else {
		s.members[id] = m
	}
	for ch := range s.memberWatchers[id] {
		// Only the latest state matters to the member.
		select {
		case <-ch:
		default:
		}
		ch <- clone(m)
	}
}

// AddLaunchingMember records a pool member about to be launched.
func (s *Store) AddLaunchingMember(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members[id] != nil {
		return fmt.Errorf("record pool member %s: it exists", id)
	}
	now := s.now()
	s.setMember(id, &session.MemberDoc{Status: session.MemberLaunching, LaunchedAt: now, ExpireAt: now.Add(poolRecordTTL)})
	return nil
}

// MemberLaunched notes the execution of a launching member.
func (s *Store) MemberLaunched(ctx context.Context, id, execution string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.members[id]; m != nil && m.Status == session.MemberLaunching {
		next := *m
		next.Execution = execution
		s.setMember(id, &next)
	}
	return nil
}

// RemoveMember deletes a member that is not assigned (nor a miss).
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.members[id]
	if m == nil {
		return nil
	}
	if m.Status == session.MemberAssigned || m.Status == session.MemberMissed {
		return fmt.Errorf("remove pool member %s: %w", id, session.ErrMemberGone)
	}
	s.setMember(id, nil)
	return nil
}

// RegisterMember makes a started member idle and claimable until ttl from
// now; a member whose record was removed is recorded afresh.
func (s *Store) RegisterMember(ctx context.Context, id, execution string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	m := clone(s.members[id])
	if m == nil {
		m = &session.MemberDoc{LaunchedAt: now}
	}
	if m.Status != "" && m.Status != session.MemberLaunching {
		return fmt.Errorf("register pool member %s: member is %s: %w", id, m.Status, session.ErrMemberGone)
	}
	m.Status, m.Execution, m.ReadyAt, m.Expires, m.ExpireAt = session.MemberIdle, execution, now, now.Add(ttl), now.Add(poolRecordTTL)
	s.setMember(id, m)
	return nil
}

// RenewMember keeps an idle member claimable until ttl from now.
func (s *Store) RenewMember(ctx context.Context, id string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.members[id]
	if m == nil || m.Status != session.MemberIdle {
		return fmt.Errorf("renew pool member %s: %w", id, session.ErrMemberGone)
	}
	next := *m
	next.Expires = s.now().Add(ttl)
	s.setMember(id, &next)
	return nil
}

// LeaveMember takes an idle member out of the pool.
func (s *Store) LeaveMember(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.members[id]
	if m == nil {
		return nil
	}
	if m.Status != session.MemberIdle {
		return fmt.Errorf("leave pool as member %s: %w", id, session.ErrMemberGone)
	}
	s.setMember(id, nil)
	return nil
}

// Member reads a member's record.
func (s *Store) Member(ctx context.Context, id string) (*session.MemberDoc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.members[id]; m != nil {
		return clone(m), nil
	}
	return nil, fmt.Errorf("pool/%s: %w", id, session.ErrNotFound)
}

// WatchMember sends the member's record at once and each time it changes,
// until ctx ends (then the channel closes); a missing record is sent as
// nil.
func (s *Store) WatchMember(ctx context.Context, id string) <-chan *session.MemberDoc {
	ch := make(chan *session.MemberDoc, 1)
	s.mu.Lock()
	ch <- clone(s.members[id])
	if s.memberWatchers[id] == nil {
		s.memberWatchers[id] = map[chan *session.MemberDoc]bool{}
	}
	s.memberWatchers[id][ch] = true
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.memberWatchers[id], ch)
		s.mu.Unlock()
		close(ch)
	}()
	return ch
}

// ClaimMember hands the session's launch to an idle, unexpired member, or
// returns nil when none is.
func (s *Store) ClaimMember(ctx context.Context, sessionID, launchID, traceparent string) (*session.Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, id := range s.memberIDs() {
		m := s.members[id]
		if m.Status != session.MemberIdle || !m.Expires.After(now) {
			continue
		}
		next := *m
		next.Status, next.SessionID, next.LaunchID, next.Traceparent, next.AssignedAt = session.MemberAssigned, sessionID, launchID, traceparent, now
		next.ExpireAt = now.Add(poolRecordTTL)
		s.setMember(id, &next)
		return &session.Member{ID: id, MemberDoc: next}, nil
	}
	return nil, nil
}

// memberIDs lists the members' ids in order.
func (s *Store) memberIDs() []string {
	ids := make([]string, 0, len(s.members))
	for id := range s.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// RecordMiss notes a launch that found no idle member; recording it again
// is no error.
func (s *Store) RecordMiss(ctx context.Context, sessionID, launchID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := "miss-" + launchID
	if s.members[id] == nil {
		now := s.now()
		s.setMember(id, &session.MemberDoc{Status: session.MemberMissed, SessionID: sessionID, LaunchID: launchID, AssignedAt: now, ExpireAt: now.Add(poolRecordTTL)})
	}
	return nil
}

// PoolMembers lists the members that are launching or idle.
func (s *Store) PoolMembers(ctx context.Context) ([]session.Member, error) {
	return s.membersWhere(func(m *session.MemberDoc) bool {
		return m.Status == session.MemberLaunching || m.Status == session.MemberIdle
	}), nil
}

// PoolAssignments lists the claims and misses since t.
func (s *Store) PoolAssignments(ctx context.Context, since time.Time) ([]session.Member, error) {
	return s.membersWhere(func(m *session.MemberDoc) bool { return m.AssignedAt.After(since) }), nil
}

func (s *Store) membersWhere(match func(*session.MemberDoc) bool) []session.Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []session.Member
	for _, id := range s.memberIDs() {
		if m := s.members[id]; match(m) {
			out = append(out, session.Member{ID: id, MemberDoc: *m})
		}
	}
	return out
}
