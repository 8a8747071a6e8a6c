package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// poolCollection holds the warm pool: pool/{member_id}, one document per
// pre-started host, and one per pool miss (a launch that found no idle
// member), which the refill policy counts as demand.
const poolCollection = "pool"

// Pool member statuses: launching → idle → assigned, each step a
// transaction. A member that leaves idle is deleted; an assigned member
// serves its one session and exits. A miss is born missed.
const (
	MemberLaunching = "launching"
	MemberIdle      = "idle"
	MemberAssigned  = "assigned"
	MemberMissed    = "missed"
)

// ErrMemberGone: the member's document is gone or no longer idle, so it may
// not be claimed (or, for the member itself, it may not leave: it must
// serve what it was handed).
var ErrMemberGone = errors.New("pool member not idle")

// MemberDoc is pool/{member_id}.
type MemberDoc struct {
	Status string `firestore:"status"`
	// Execution is the Cloud Run execution that runs the member.
	Execution  string    `firestore:"execution"`
	LaunchedAt time.Time `firestore:"launched_at"`
	// ReadyAt is when the member registered idle; Expires when an idle
	// member that stopped renewing may no longer be claimed.
	ReadyAt time.Time `firestore:"ready_at"`
	Expires time.Time `firestore:"expires"`
	// The assignment: set when a launch claims the member (or, for a
	// miss, when it missed).
	SessionID   string    `firestore:"session_id"`
	LaunchID    string    `firestore:"launch_id"`
	Traceparent string    `firestore:"traceparent"`
	AssignedAt  time.Time `firestore:"assigned_at"`
	ExpireAt    time.Time `firestore:"expire_at"`
}

// Member is a pool document with its id.
type Member struct {
	ID string
	MemberDoc
}

// poolRecordTTL is how long assigned and missed records stay for the refill
// policy and for `sandrun status` before Firestore's TTL removes them.
const poolRecordTTL = 24 * time.Hour

func (s *Store) memberRef(id string) *firestore.DocumentRef {
	return s.fs.Collection(poolCollection).Doc(id)
}

// AddLaunchingMember records a pool member about to be launched, so that
// a refill counts it before its host is up.
func (s *Store) AddLaunchingMember(ctx context.Context, id string) error {
	now := s.now()
	_, err := s.memberRef(id).Create(ctx, MemberDoc{Status: MemberLaunching, LaunchedAt: now, ExpireAt: now.Add(poolRecordTTL)})
	if err != nil {
		return fmt.Errorf("record pool member %s: %w", id, err)
	}
	return nil
}

// MemberLaunched notes the execution of a launching member, unless its host
// already registered (and said so itself).
func (s *Store) MemberLaunched(ctx context.Context, id, execution string) error {
	ref := s.memberRef(id)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		m, err := txGet[MemberDoc](tx, ref)
		if err != nil || m == nil || m.Status != MemberLaunching {
			return err
		}
		return tx.Update(ref, []firestore.Update{{Path: "execution", Value: execution}})
	})
	if err != nil {
		return fmt.Errorf("record execution %s of pool member %s: %w", execution, id, err)
	}
	return nil
}

// RemoveMember deletes a member that is not assigned: a launch that failed,
// a member that left, or one whose host stopped renewing. An assigned
// member's record stays (ErrMemberGone).
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	ref := s.memberRef(id)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		m, err := txGet[MemberDoc](tx, ref)
		if err != nil || m == nil {
			return err
		}
		if m.Status == MemberAssigned || m.Status == MemberMissed {
			return ErrMemberGone
		}
		return tx.Delete(ref)
	})
	if err != nil {
		return fmt.Errorf("remove pool member %s: %w", id, err)
	}
	return nil
}

// RegisterMember makes a started member idle and claimable until ttl from
// now. A member whose record was removed meanwhile (its launch was taken
// for dead) is recorded afresh.
func (s *Store) RegisterMember(ctx context.Context, id, execution string, ttl time.Duration) error {
	ref := s.memberRef(id)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		m, err := txGet[MemberDoc](tx, ref)
		if err != nil {
			return err
		}
		now := s.now()
		if m == nil {
			m = &MemberDoc{LaunchedAt: now}
		}
		if m.Status != "" && m.Status != MemberLaunching {
			return fmt.Errorf("member is %s: %w", m.Status, ErrMemberGone)
		}
		m.Status, m.Execution, m.ReadyAt, m.Expires, m.ExpireAt = MemberIdle, execution, now, now.Add(ttl), now.Add(poolRecordTTL)
		return tx.Set(ref, *m)
	})
	if err != nil {
		return fmt.Errorf("register pool member %s: %w", id, err)
	}
	return nil
}

// RenewMember keeps an idle member claimable until ttl from now. It fails
// with ErrMemberGone once the member is no longer idle.
func (s *Store) RenewMember(ctx context.Context, id string, ttl time.Duration) error {
	ref := s.memberRef(id)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		m, err := txGet[MemberDoc](tx, ref)
		if err != nil {
			return err
		}
		if m == nil || m.Status != MemberIdle {
			return ErrMemberGone
		}
		return tx.Update(ref, []firestore.Update{{Path: "expires", Value: s.now().Add(ttl)}})
	})
	if err != nil {
		return fmt.Errorf("renew pool member %s: %w", id, err)
	}
	return nil
}

// LeaveMember takes an idle member out of the pool. It fails with
// ErrMemberGone when the member was assigned meanwhile: then it must serve.
func (s *Store) LeaveMember(ctx context.Context, id string) error {
	ref := s.memberRef(id)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		m, err := txGet[MemberDoc](tx, ref)
		if err != nil {
			return err
		}
		if m == nil {
			return nil
		}
		if m.Status != MemberIdle {
			return ErrMemberGone
		}
		return tx.Delete(ref)
	})
	if err != nil {
		return fmt.Errorf("leave pool as member %s: %w", id, err)
	}
	return nil
}

// Member reads a member's document.
func (s *Store) Member(ctx context.Context, id string) (*MemberDoc, error) {
	return get[MemberDoc](ctx, s.memberRef(id))
}

// WatchMember sends the member's document each time it changes, until ctx
// ends or the watch fails (then the channel closes). A missing document is
// sent as nil.
func (s *Store) WatchMember(ctx context.Context, id string) <-chan *MemberDoc {
	ch := make(chan *MemberDoc, 1)
	go func() {
		defer close(ch)
		it := s.memberRef(id).Snapshots(ctx)
		defer it.Stop()
		for {
			snap, err := it.Next()
			if err != nil {
				return
			}
			var m *MemberDoc
			if snap.Exists() {
				m = new(MemberDoc)
				if err := snap.DataTo(m); err != nil {
					return
				}
			}
			// Only the latest state matters to the member.
			select {
			case <-ch:
			default:
			}
			ch <- m
		}
	}()
	return ch
}

// ClaimMember hands the session's launch to an idle pool member, or
// returns nil when none is idle. It reads the idle members with one query
// and moves a candidate from idle to assigned with one write conditioned on
// the update time the query saw: the member's renewal, its leaving and
// another launch's claim all write the document, so the write fails if any
// of them came between, and a member is handed one session only. The
// caller stops at the first write that succeeds, so a launch claims one
// member only. (A transaction per candidate did the same in three calls.)
func (s *Store) ClaimMember(ctx context.Context, sessionID, launchID, traceparent string) (*Member, error) {
	// A few candidates, tried in random order, so that dispatchers racing
	// for the pool seldom collide on one document.
	const candidates = 8
	snaps, err := s.fs.Collection(poolCollection).Where("status", "==", MemberIdle).Limit(candidates * 4).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("read idle pool members: %w", err)
	}
	now := s.now()
	var idle []*firestore.DocumentSnapshot
	for _, snap := range snaps {
		m, err := decodeSnap[MemberDoc](snap)
		if err != nil {
			return nil, err
		}
		if m != nil && m.Status == MemberIdle && m.Expires.After(now) {
			idle = append(idle, snap)
		}
	}
	rand.Shuffle(len(idle), func(i, j int) { idle[i], idle[j] = idle[j], idle[i] })
	for _, snap := range idle[:min(len(idle), candidates)] {
		m, _ := decodeSnap[MemberDoc](snap)
		m.Status, m.SessionID, m.LaunchID, m.Traceparent, m.AssignedAt = MemberAssigned, sessionID, launchID, traceparent, now
		m.ExpireAt = now.Add(poolRecordTTL)
		_, err := snap.Ref.Update(ctx, []firestore.Update{{Path: "status", Value: m.Status}, {Path: "session_id", Value: sessionID},
			{Path: "launch_id", Value: launchID}, {Path: "traceparent", Value: traceparent}, {Path: "assigned_at", Value: now},
			{Path: "expire_at", Value: m.ExpireAt}}, firestore.LastUpdateTime(snap.UpdateTime))
		switch status.Code(err) {
		case codes.OK:
			return &Member{ID: snap.Ref.ID, MemberDoc: *m}, nil
		case codes.FailedPrecondition, codes.NotFound:
			// Renewed, left or claimed since the query: the next one.
		default:
			return nil, fmt.Errorf("claim pool member %s for session %s: %w", snap.Ref.ID, sessionID, err)
		}
	}
	return nil, nil
}

// RecordMiss notes a launch that found no idle member: demand the refill
// policy sees.
func (s *Store) RecordMiss(ctx context.Context, sessionID, launchID string) error {
	now := s.now()
	_, err := s.memberRef("miss-"+launchID).Create(ctx, MemberDoc{Status: MemberMissed, SessionID: sessionID, LaunchID: launchID,
		AssignedAt: now, ExpireAt: now.Add(poolRecordTTL)})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("record pool miss of session %s: %w", sessionID, err)
	}
	return nil
}

// PoolMembers lists the members that are launching or idle.
func (s *Store) PoolMembers(ctx context.Context) ([]Member, error) {
	return s.members(ctx, s.fs.Collection(poolCollection).Where("status", "in", []string{MemberLaunching, MemberIdle}), "pool members")
}

// PoolAssignments lists the claims and misses since t, the pool's recent
// demand.
func (s *Store) PoolAssignments(ctx context.Context, since time.Time) ([]Member, error) {
	return s.members(ctx, s.fs.Collection(poolCollection).Where("assigned_at", ">", since), "pool assignments")
}

func (s *Store) members(ctx context.Context, q firestore.Query, what string) ([]Member, error) {
	docs, refs, err := readAll[MemberDoc](q.Documents(ctx), what)
	var out []Member
	for i, d := range docs {
		out = append(out, Member{ID: refs[i].ID, MemberDoc: d})
	}
	return out, err
}
