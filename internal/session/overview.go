package session

import (
	"context"
	"time"

	"cloud.google.com/go/firestore"
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
	// A request that runs is still queued in its item: its mark is in its
	// host's lease (one read per live host).
	live := s.fs.CollectionGroup(runtimeCollection).Where("lease_expires", ">", s.now()).Select("running")
	leases, _, err := readAll[LeaseDoc](live.Documents(ctx), "live hosts' running requests")
	if err != nil {
		return nil, err
	}
	for _, ld := range leases {
		o.Queued -= len(ld.Running)
	}
	o.Queued = max(0, o.Queued)
	q := s.fs.CollectionGroup(inboxCollection).Where("finished_at", ">", since).OrderBy("finished_at", firestore.Desc).Limit(limit)
	if o.Recent, _, err = readAll[Item](q.Documents(ctx), "recent requests"); err != nil {
		return nil, err
	}
	return &o, nil
}
