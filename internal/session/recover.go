package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"

	"github.com/sandrun/sandrun/api"
)

// Unpublished is a recorded completion that must be published.
type Unpublished struct {
	SessionID, RequestID string
	// Completion is the recorded JSON.
	Completion []byte
}

// answerAll records, in tx, the completion that answer gives each item the
// query finds (nil skips the item), and returns them to publish. Every read
// happens before the first write, as Firestore transactions require.
func answerAll(tx *firestore.Transaction, q firestore.Query, now time.Time, answer func(*Item) *api.Completion) ([]Unpublished, error) {
	it := tx.Documents(q)
	defer it.Stop()
	var refs []*firestore.DocumentRef
	var items []Item
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list inbox items: %w", err)
		}
		var item Item
		if err := snap.DataTo(&item); err != nil {
			return nil, fmt.Errorf("decode inbox item %s: %w", snap.Ref.Path, err)
		}
		refs, items = append(refs, snap.Ref), append(items, item)
	}
	var out []Unpublished
	for i := range items {
		c := answer(&items[i])
		if c == nil {
			continue
		}
		c.Timing = api.Timing{AcceptedAt: items[i].AcceptedAt, StartedAt: items[i].StartedAt, FinishedAt: now,
			TotalSeconds: now.Sub(items[i].AcceptedAt).Seconds()}
		if !items[i].StartedAt.IsZero() {
			c.Timing.QueueSeconds = items[i].StartedAt.Sub(items[i].AcceptedAt).Seconds()
			c.Timing.RunSeconds = now.Sub(items[i].StartedAt).Seconds()
		}
		b, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("encode completion of request %s: %w", items[i].RequestID, err)
		}
		items[i].Status, items[i].Completion, items[i].FinishedAt = ItemDone, string(b), now
		if err := tx.Set(refs[i], items[i]); err != nil {
			return nil, err
		}
		out = append(out, Unpublished{SessionID: items[i].SessionID, RequestID: items[i].RequestID, Completion: b})
	}
	return out, nil
}

// failRunning answers HOST_LOST, in tx, every item of the session that is
// running under an epoch older than epoch.
func (s *Store) failRunning(tx *firestore.Transaction, sessionID string, epoch int64, now time.Time) ([]Unpublished, error) {
	q := s.sessionRef(sessionID).Collection(inboxCollection).Where("status", "==", ItemRunning)
	return answerAll(tx, q, now, func(it *Item) *api.Completion {
		if it.Epoch >= epoch {
			return nil
		}
		c := api.ErrorCompletion(it.RequestID, it.SessionID, api.Op(it.Op), api.CodeHostLost,
			fmt.Sprintf("the host running this request (%s) stopped before it finished; the request was not re-run", it.Execution))
		c.ExecutionID = it.Execution
		return c
	})
}

// FailOrphans answers HOST_LOST, under a freshly taken lease, the requests
// that earlier hosts of the session left running.
func (s *Store) FailOrphans(ctx context.Context, lease *Lease) ([]Unpublished, error) {
	var lost []Unpublished
	err := s.fenced(ctx, lease, func(tx *firestore.Transaction, doc *Doc, now time.Time) error {
		var err error
		lost, err = s.failRunning(tx, lease.SessionID, lease.Epoch, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fail orphaned requests of session %s: %w", lease.SessionID, err)
	}
	return lost, nil
}

// Recovery is what RecoverHost did for a session whose host's lease lapsed.
type Recovery struct {
	// Lost are the HOST_LOST completions recorded, to publish.
	Lost []Unpublished
	// Recovered is false when the host turned out to be live.
	Recovered bool
}

// RecoverHost takes the session from a host whose lease lapsed: it raises
// the epoch (so the old host, if it still runs, can write nothing), answers
// its running requests HOST_LOST and leaves the session without a host, so
// that queued requests get a new one (see Relaunch).
func (s *Store) RecoverHost(ctx context.Context, sessionID string) (Recovery, error) {
	ref := s.sessionRef(sessionID)
	var rec Recovery
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		rec = Recovery{}
		doc, err := getSession(tx, ref)
		if err != nil || doc == nil {
			return err
		}
		now := s.now()
		if doc.Host == nil || doc.hostLive(now) {
			return nil
		}
		doc.Epoch++
		lost, err := s.failRunning(tx, sessionID, doc.Epoch, now)
		if err != nil {
			return err
		}
		doc.Host = nil
		rec.Lost, rec.Recovered = lost, true
		return tx.Set(ref, doc)
	})
	if err != nil {
		return Recovery{}, fmt.Errorf("recover session %s from its lost host: %w", sessionID, err)
	}
	return rec, nil
}

// ExpiredHosts lists sessions whose host's lease lapsed before now.
func (s *Store) ExpiredHosts(ctx context.Context) ([]string, error) {
	q := s.fs.Collection(sessionsCollection).Where("host.lease_expires", "<", s.now())
	return s.sessionIDs(ctx, q, "sessions with expired hosts")
}

// Waiting is a session with queued requests and no host.
type Waiting struct {
	SessionID string
	// Launch is the launch in flight, or nil when none is.
	Launch *Launch
}

// Waiting lists active sessions with queued requests and no live host.
func (s *Store) Waiting(ctx context.Context) ([]Waiting, error) {
	it := s.fs.Collection(sessionsCollection).Where("queued", ">", 0).Documents(ctx)
	defer it.Stop()
	var out []Waiting
	now := s.now()
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list sessions with queued requests: %w", err)
		}
		var d Doc
		if err := snap.DataTo(&d); err != nil {
			return nil, fmt.Errorf("decode session %s: %w", snap.Ref.ID, err)
		}
		if d.Status != StatusActive || d.Host != nil {
			continue
		}
		w := Waiting{SessionID: snap.Ref.ID}
		if s.launchInFlight(&d, now) {
			w.Launch = d.Launch
		}
		out = append(out, w)
	}
}

// Relaunch claims a launch for a session with queued requests, no host and
// no launch in flight; it returns nil when there is nothing to do. After
// maxAttempts launches without a finished request, it instead answers every
// queued request LAUNCH_FAILED and returns them in failed.
func (s *Store) Relaunch(ctx context.Context, sessionID string, maxAttempts int) (launch *Launch, failed []Unpublished, err error) {
	ref := s.sessionRef(sessionID)
	err = s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		launch, failed = nil, nil
		doc, err := getSession(tx, ref)
		if err != nil || doc == nil {
			return err
		}
		now := s.now()
		if doc.Status != StatusActive || doc.Queued == 0 || doc.hostLive(now) || s.launchInFlight(doc, now) {
			return nil
		}
		if doc.LaunchAttempts < maxAttempts {
			launch = doc.claimLaunch(now)
			return tx.Set(ref, doc)
		}
		// Give up: every queued request gets its one outcome.
		attempts := doc.LaunchAttempts
		failed, err = answerAll(tx, s.queuedQuery(sessionID), now, func(it *Item) *api.Completion {
			return api.ErrorCompletion(it.RequestID, sessionID, api.Op(it.Op), api.CodeLaunchFailed,
				fmt.Sprintf("no host could be started for session %s after %d attempts", sessionID, attempts))
		})
		if err != nil {
			return err
		}
		doc.Queued, doc.Launch, doc.LaunchAttempts = 0, nil, 0
		return tx.Set(ref, doc)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("relaunch session %s: %w", sessionID, err)
	}
	return launch, failed, nil
}

// Unpublished lists completions recorded before cutoff and not yet marked
// published, across all sessions.
func (s *Store) Unpublished(ctx context.Context, cutoff time.Time, limit int) ([]Unpublished, error) {
	q := s.fs.CollectionGroup(inboxCollection).Where("status", "==", ItemDone).Where("published", "==", false).
		Where("finished_at", "<", cutoff).Limit(limit)
	it := q.Documents(ctx)
	defer it.Stop()
	var out []Unpublished
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list unpublished completions: %w", err)
		}
		var item Item
		if err := snap.DataTo(&item); err != nil {
			return nil, fmt.Errorf("decode inbox item %s: %w", snap.Ref.Path, err)
		}
		out = append(out, Unpublished{SessionID: item.SessionID, RequestID: item.RequestID, Completion: []byte(item.Completion)})
	}
}

// Stale lists active sessions without activity since cutoff.
func (s *Store) Stale(ctx context.Context, cutoff time.Time) ([]string, error) {
	q := s.fs.Collection(sessionsCollection).Where("status", "==", StatusActive).Where("updated_at", "<", cutoff)
	return s.sessionIDs(ctx, q, "stale sessions")
}

// PurgePending lists destroyed sessions whose objects may remain.
func (s *Store) PurgePending(ctx context.Context) ([]string, error) {
	q := s.fs.Collection(sessionsCollection).Where("purge_pending", "==", true)
	return s.sessionIDs(ctx, q, "sessions to purge")
}

// Hosted lists the execution ids that sessions' hosts and launches name.
func (s *Store) Hosted(ctx context.Context) (map[string]bool, error) {
	it := s.fs.Collection(sessionsCollection).Where("status", "==", StatusActive).Documents(ctx)
	defer it.Stop()
	out := map[string]bool{}
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list active sessions: %w", err)
		}
		var d Doc
		if err := snap.DataTo(&d); err != nil {
			return nil, fmt.Errorf("decode session %s: %w", snap.Ref.ID, err)
		}
		if d.Host != nil {
			out[d.Host.Execution] = true
		}
		if d.Launch != nil && d.Launch.Execution != "" {
			out[d.Launch.Execution] = true
		}
	}
}

func (s *Store) sessionIDs(ctx context.Context, q firestore.Query, what string) ([]string, error) {
	it := q.Select().Documents(ctx)
	defer it.Stop()
	var ids []string
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		ids = append(ids, snap.Ref.ID)
	}
}

// Destroy ends a session's life whatever runs in it: the host, if any, loses
// its lease, and queued requests are answered ABORTED. The caller cancels
// the session's execution and purges its objects. It returns the recorded
// completions to publish.
func (s *Store) Destroy(ctx context.Context, sessionID, reason string) (host string, answered []Unpublished, err error) {
	ref := s.sessionRef(sessionID)
	err = s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		host, answered = "", nil
		doc, err := getSession(tx, ref)
		if err != nil || doc == nil || doc.Status == StatusDestroyed {
			return err
		}
		now := s.now()
		unfinished := s.sessionRef(sessionID).Collection(inboxCollection).Where("status", "in", []string{ItemQueued, ItemRunning})
		answered, err = answerAll(tx, unfinished, now, func(it *Item) *api.Completion {
			return api.ErrorCompletion(it.RequestID, sessionID, api.Op(it.Op), api.CodeAborted,
				fmt.Sprintf("session %s was destroyed (%s) before this request finished", sessionID, reason))
		})
		if err != nil {
			return err
		}
		if doc.Host != nil {
			host = doc.Host.Execution
		} else if doc.Launch != nil {
			host = doc.Launch.Execution
		}
		doc.Epoch++
		doc.destroy(now)
		return tx.Set(ref, doc)
	})
	if err != nil {
		return "", nil, fmt.Errorf("destroy session %s: %w", sessionID, err)
	}
	return host, answered, nil
}

// Purge deletes the objects of a destroyed session and clears its
// purge_pending mark.
func (s *Store) Purge(ctx context.Context, sessionID string) error {
	if err := s.deleteObjects(ctx, objectPrefix(sessionID)); err != nil {
		return fmt.Errorf("purge session %s: %w", sessionID, err)
	}
	ref := s.sessionRef(sessionID)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		doc, err := getSession(tx, ref)
		if err != nil || doc == nil || doc.Status != StatusDestroyed || !doc.PurgePending {
			return err
		}
		return tx.Update(ref, []firestore.Update{{Path: "purge_pending", Value: false}})
	})
	if err != nil {
		return fmt.Errorf("purge session %s: %w", sessionID, err)
	}
	return nil
}
