package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
)

// Overview is the whole system at a glance, as Firestore has it.
type Overview struct {
	// Sessions counts the active sessions, Hosts the live host leases and
	// Queued the requests waiting across every session.
	Sessions int
	Hosts    int
	Queued   int
	// Recent are the requests finished since the overview's window began,
	// newest first, up to its limit.
	Recent []Item
}

// Overview counts sessions, hosts and queued requests, and reads the
// requests finished since t (at most limit of them). Its reads are not one
// snapshot. In production the recent requests need the collection group
// index of inbox finished_at.
func (s *Store) Overview(ctx context.Context, since time.Time, limit int) (*Overview, error) {
	var o Overview
	var err error
	if o.Sessions, err = count(ctx, s.fs.Collection(sessionsCollection).Where("status", "==", StatusActive), "active sessions"); err != nil {
		return nil, err
	}
	if o.Hosts, err = count(ctx, s.fs.CollectionGroup(runtimeCollection).Where("lease_expires", ">", s.now()), "live hosts"); err != nil {
		return nil, err
	}
	if o.Queued, err = count(ctx, s.fs.CollectionGroup(inboxCollection).Where("status", "==", ItemQueued), "queued requests"); err != nil {
		return nil, err
	}
	q := s.fs.CollectionGroup(inboxCollection).Where("finished_at", ">", since).OrderBy("finished_at", firestore.Desc).Limit(limit)
	it := q.Documents(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return &o, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list recent requests: %w", err)
		}
		var item Item
		if err := snap.DataTo(&item); err != nil {
			return nil, fmt.Errorf("decode inbox item %s: %w", snap.Ref.Path, err)
		}
		o.Recent = append(o.Recent, item)
	}
}
