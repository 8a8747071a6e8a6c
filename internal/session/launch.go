package session

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
)

// LaunchTimeout is how long a claimed launch stays in flight unless its
// claim is kept (KeepClaim).
func (s *Store) LaunchTimeout() time.Duration { return s.cfg.LaunchTimeout }

// KeepClaim keeps a launch claim that has not started an execution yet in
// flight for another LaunchTimeout, and records that it waits (why: WaitMaxHosts or WaitRefused; since:
// its place in line), so that no one else claims the session's launch
// meanwhile and `sandrun status` shows it waiting. It returns the claim as
// stored, or nil when it is no longer the session's (the session was
// destroyed, or another launch superseded it): the caller then drops it.
// It reads only the session document, so it locks no host's lease.
func (s *Store) KeepClaim(ctx context.Context, sessionID, launchID string, since time.Time, why string) (*Launch, error) {
	ref := s.sessionRef(sessionID)
	var kept *Launch
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		kept = nil
		doc, err := txGet[Doc](tx, ref)
		if err != nil || doc == nil || doc.Status != StatusActive || doc.Launch == nil || doc.Launch.ID != launchID || doc.Launch.Execution != "" {
			return err
		}
		l := *doc.Launch
		l.RequestedAt, l.WaitingSince, l.WaitingFor = s.now(), since.UTC(), why
		kept = &l
		return tx.Update(ref, []firestore.Update{{Path: "launch.requested_at", Value: l.RequestedAt},
			{Path: "launch.waiting_since", Value: l.WaitingSince}, {Path: "launch.waiting_for", Value: why}})
	})
	if err != nil {
		return nil, fmt.Errorf("keep launch claim of session %s: %w", sessionID, err)
	}
	return kept, nil
}

// HostWait is a session waiting for a host, in line.
type HostWait struct {
	SessionID string    `json:"session_id"`
	Since     time.Time `json:"since"`
	// For is why it waits: WaitMaxHosts or WaitRefused.
	For string `json:"waiting_for"`
	// Place is its place in line, from 1.
	Place int `json:"place"`
}

// WaitingForHost lists the active sessions whose launch waits for a host,
// first come first.
func (s *Store) WaitingForHost(ctx context.Context) ([]HostWait, error) {
	q := s.fs.Collection(sessionsCollection).Where("launch.waiting_since", ">", time.Unix(1, 0)).OrderBy("launch.waiting_since", firestore.Asc)
	docs, refs, err := readAll[Doc](q.Documents(ctx), "sessions waiting for a host")
	if err != nil {
		return nil, err
	}
	out := []HostWait{}
	for i, d := range docs {
		if d.Status != StatusActive || d.Launch == nil || d.Launch.Execution != "" {
			continue
		}
		out = append(out, HostWait{SessionID: refs[i].ID, Since: d.Launch.WaitingSince, For: d.Launch.WaitingFor, Place: len(out) + 1})
	}
	return out, nil
}
