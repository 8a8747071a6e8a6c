package session

import (
	"context"
	"fmt"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"

	"github.com/sandrun/sandrun/api"
)

// Limits of ListOptions.Limit.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ListOptions chooses the sessions List describes. Zero fields take the
// defaults.
type ListOptions struct {
	// All lists destroyed sessions too (those Firestore's TTL has not
	// removed yet); by default only active sessions are listed.
	All bool
	// Limit is the most sessions listed: DefaultListLimit when 0, at most
	// MaxListLimit.
	Limit int
}

// SessionSummary describes a session as List sees it: the fields of
// session.get's answer but the working directory (Host only while the
// host's lease is live), and whether a host launch is under way.
type SessionSummary struct {
	api.SessionInfo
	// Launching is true while a host launch is claimed and no host has
	// answered it yet.
	Launching bool `json:"launching,omitempty"`
}

// List describes sessions, the most recently active first. It reads
// Firestore only: it neither creates, wakes nor changes a session. Its
// reads are not one snapshot: a session may change while it is listed.
//
// In production the active-only query (status == "active", ordered by
// updated_at descending) needs the composite index (status ascending,
// updated_at descending); with All, the automatic single-field index
// serves.
func (s *Store) List(ctx context.Context, opts ListOptions) ([]SessionSummary, error) {
	limit := opts.Limit
	switch {
	case limit <= 0:
		limit = DefaultListLimit
	case limit > MaxListLimit:
		limit = MaxListLimit
	}
	q := s.fs.Collection(sessionsCollection).Query
	if !opts.All {
		q = q.Where("status", "==", StatusActive)
	}
	q = q.OrderBy("updated_at", firestore.Desc).Limit(limit)

	docs, sessionRefs, err := readAll[Doc](q.Documents(ctx), "sessions")
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(sessionRefs))
	for i, ref := range sessionRefs {
		ids[i] = ref.ID
	}
	if len(docs) == 0 {
		return nil, nil
	}

	// Every session's lease in one round trip.
	refs := make([]*firestore.DocumentRef, len(ids))
	for i, id := range ids {
		refs[i] = s.leaseRef(id)
	}
	snaps, err := s.fs.GetAll(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("list sessions: read their leases: %w", err)
	}
	now := s.now()
	out := make([]SessionSummary, len(docs))
	for i := range docs {
		d := &docs[i]
		var ld *LeaseDoc
		if snaps[i].Exists() {
			ld = new(LeaseDoc)
			if err := snaps[i].DataTo(ld); err != nil {
				return nil, fmt.Errorf("decode %s: %w", refs[i].Path, err)
			}
		}
		sum := SessionSummary{SessionInfo: api.SessionInfo{SessionID: ids[i], Status: d.Status,
			CreatedAt: d.CreatedAt, LastActiveAt: d.UpdatedAt}}
		if d.Status == StatusActive {
			if ld.Live(now) {
				sum.Host = ld.Execution
			}
			sum.Launching = s.rules.LaunchInFlight(d, ld, now)
			if sum.Queued, err = s.countQueued(ctx, ids[i]); err != nil {
				return nil, err
			}
			if ld != nil {
				// A request that runs is still queued in its item. (A mark
				// of an answered orphan, until the next Start or Finish
				// drops it, is counted off too: hence the floor.)
				sum.Queued = max(0, sum.Queued-len(ld.Running))
			}
		}
		out[i] = sum
	}
	return out, nil
}

// countQueued counts the session's queued requests.
func (s *Store) countQueued(ctx context.Context, sessionID string) (int, error) {
	return count(ctx, s.queuedQuery(sessionID), "queued requests of session "+sessionID)
}

// count runs q as a COUNT aggregation: one index entry read per thousand
// documents, whatever their size.
func count(ctx context.Context, q firestore.Query, what string) (int, error) {
	res, err := q.NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", what, err)
	}
	v, ok := res["n"].(*firestorepb.Value)
	if !ok {
		return 0, fmt.Errorf("count %s: the count came back as %T", what, res["n"])
	}
	return int(v.GetIntegerValue()), nil
}
