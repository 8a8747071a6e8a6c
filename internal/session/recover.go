package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	// InLease: the lease document tracks its publish (LeaseDoc.Publishing),
	// not the item: once it is published, ClearPublishing.
	InLease bool
}

// answerAll records, in tx, the completion that answer gives each item the
// query finds (nil skips the item), and returns them to publish. Every read
// happens before the first write, as Firestore transactions require.
func answerAll(tx *firestore.Transaction, q firestore.Query, now time.Time, answer func(*Item) *api.Completion) ([]Unpublished, error) {
	items, refs, err := readAll[Item](tx.Documents(q), "inbox items")
	if err != nil {
		return nil, err
	}
	return answerItems(tx, items, refs, now, answer)
}

// answerItems records, in tx, the completion that answer gives each of
// items (at refs; nil skips the item), and returns them to publish.
func answerItems(tx *firestore.Transaction, items []Item, refs []*firestore.DocumentRef, now time.Time, answer func(*Item) *api.Completion) ([]Unpublished, error) {
	var out []Unpublished
	for i := range items {
		c := answer(&items[i])
		if c == nil {
			continue
		}
		u, err := Settle(&items[i], c, now)
		if err != nil {
			return nil, err
		}
		if err := tx.Set(refs[i], items[i]); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// failRunning answers HOST_LOST, in tx, every request of the session that a
// host of an epoch older than epoch left running: those that running marks
// (LeaseDoc.Running, read in tx) and not done, and those whose items say
// running (as hosts before the marks wrote them).
func (s *Store) failRunning(tx *firestore.Transaction, sessionID string, running map[string]RunningItem, epoch int64, now time.Time) ([]Unpublished, error) {
	q := s.sessionRef(sessionID).Collection(inboxCollection).Where("status", "==", ItemRunning)
	items, refs, err := readAll[Item](tx.Documents(q), "running requests")
	if err != nil {
		return nil, err
	}
	var marked []*firestore.DocumentRef
	for _, id := range slices.Sorted(maps.Keys(running)) {
		marked = append(marked, s.itemRef(sessionID, id))
	}
	if len(marked) > 0 {
		snaps, err := tx.GetAll(marked)
		if err != nil {
			return nil, fmt.Errorf("read requests marked running: %w", err)
		}
		for _, snap := range snaps {
			it, err := decodeSnap[Item](snap)
			if err != nil {
				return nil, err
			}
			if it != nil && ApplyMark(it, running) {
				items, refs = append(items, *it), append(refs, snap.Ref)
			}
		}
	}
	return answerItems(tx, items, refs, now, func(it *Item) *api.Completion { return HostLost(it, epoch) })
}

// FailOrphans answers HOST_LOST, under a freshly taken lease, the requests
// that earlier hosts of the session left running: those their marks in
// the lease document name (as Acquire read it), and those whose items say
// running (hosts before the marks).
//
// It looks for the latter with a plain query (one RunQuery, no
// transaction): only a host of an earlier epoch can have left one, and
// none can start one after this lease was taken (Start is fenced), so
// finding none, with no marks, is final. With marks, or when the query
// finds one (or fails), the fenced transaction runs, and queries again. The answered
// marks are dropped from the lease document by its next Start or Finish.
func (s *Store) FailOrphans(ctx context.Context, lease *Lease) ([]Unpublished, error) {
	if len(lease.orphans) == 0 {
		it := s.sessionRef(lease.SessionID).Collection(inboxCollection).Where("status", "==", ItemRunning).Limit(1).Documents(ctx)
		_, err := it.Next()
		it.Stop()
		if errors.Is(err, iterator.Done) {
			return nil, nil
		}
	}
	var lost []Unpublished
	err := s.fenced(ctx, lease, func(tx *firestore.Transaction, now time.Time) error {
		var err error
		lost, err = s.failRunning(tx, lease.SessionID, lease.orphans, lease.Epoch, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fail orphaned requests of session %s: %w", lease.SessionID, err)
	}
	if err := lease.lock(ctx); err != nil {
		return nil, fmt.Errorf("fail orphaned requests of session %s: %w", lease.SessionID, err)
	}
	defer lease.unlock()
	running := maps.Clone(lease.running)
	for id := range lease.orphans {
		delete(running, id)
	}
	lease.running, lease.orphans = running, nil
	return lost, nil
}

// RecoverHost takes the session from a host whose lease lapsed: it raises
// the epoch (so the old host, if it still runs, can write nothing), answers
// its running requests HOST_LOST and leaves the session without a host, so
// that queued requests get a new one (see Relaunch). It writes the session
// document too (hostGone), as Release does. It returns the completions to
// publish, and recovered=false when the host turned out to be live or gone
// already.
func (s *Store) RecoverHost(ctx context.Context, sessionID string) (lost []Unpublished, recovered bool, err error) {
	ref := s.leaseRef(sessionID)
	err = s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		lost, recovered = nil, false
		ld, err := txGet[LeaseDoc](tx, ref)
		if err != nil || ld == nil {
			return err
		}
		now := s.now()
		next, fence, ok := s.rules.Recover(ld, now)
		if !ok {
			return nil
		}
		doc, err := txGet[Doc](tx, s.sessionRef(sessionID))
		if err != nil {
			return err
		}
		// The new lease document has no marks: their requests are answered.
		if lost, err = s.failRunning(tx, sessionID, ld.Running, next.Epoch, now); err != nil {
			return err
		}
		recovered = true
		if err := tx.Set(s.fenceRef(sessionID), fence); err != nil {
			return err
		}
		if err := s.hostGone(tx, sessionID, doc, now); err != nil {
			return err
		}
		return tx.Set(ref, next)
	})
	if err != nil {
		return nil, false, fmt.Errorf("recover session %s from its lost host: %w", sessionID, err)
	}
	return lost, recovered, nil
}

// sessionOf returns the session id of a document below sessions/{id}/C/.
func sessionOf(ref *firestore.DocumentRef) string { return ref.Parent.Parent.ID }

// ExpiredHost is a session whose host's lease lapsed, and that host.
type ExpiredHost struct {
	SessionID string
	Execution string
}

// ExpiredHosts lists sessions whose host's lease lapsed before now.
func (s *Store) ExpiredHosts(ctx context.Context) ([]ExpiredHost, error) {
	q := s.fs.CollectionGroup(runtimeCollection).Where("lease_expires", ">", time.Unix(1, 0)).Where("lease_expires", "<", s.now())
	docs, refs, err := readAll[LeaseDoc](q.Select("execution").Documents(ctx), "sessions with expired hosts")
	var out []ExpiredHost
	for i, ref := range refs {
		out = append(out, ExpiredHost{SessionID: sessionOf(ref), Execution: docs[i].Execution})
	}
	return out, err
}

// Waiting is a session with queued requests and no host.
type Waiting struct {
	SessionID string
	// Launch is the launch in flight, or nil when none is.
	Launch *Launch
}

// Waiting lists active sessions with queued requests and no live host,
// leaving out those skip names (nil: none). It reads the sessions'
// documents in batches, not one by one, and not those skipped: with many
// sessions waiting (launches refused at a quota), a reaper pass must stay
// short.
func (s *Store) Waiting(ctx context.Context, skip func(sessionID string) bool) ([]Waiting, error) {
	_, refs, err := readAll[struct{}](s.fs.CollectionGroup(inboxCollection).Where("status", "==", ItemQueued).Select().Documents(ctx), "queued requests")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var ids []string
	for _, ref := range refs {
		if id := sessionOf(ref); !seen[id] {
			seen[id] = true
			if skip == nil || !skip(id) {
				ids = append(ids, id)
			}
		}
	}
	var out []Waiting
	for len(ids) > 0 {
		batch := ids[:min(len(ids), waitingBatch)]
		ids = ids[len(batch):]
		docRefs := make([]*firestore.DocumentRef, 0, 2*len(batch))
		for _, id := range batch {
			docRefs = append(docRefs, s.sessionRef(id), s.leaseRef(id))
		}
		snaps, err := s.fs.GetAll(ctx, docRefs)
		if err != nil {
			return nil, fmt.Errorf("read sessions with queued requests: %w", err)
		}
		now := s.now()
		for i, id := range batch {
			doc, ld := new(Doc), new(LeaseDoc)
			if !snaps[2*i].Exists() {
				continue
			}
			if err := snaps[2*i].DataTo(doc); err != nil {
				return nil, fmt.Errorf("decode %s: %w", snaps[2*i].Ref.Path, err)
			}
			if !snaps[2*i+1].Exists() {
				ld = nil
			} else if err := snaps[2*i+1].DataTo(ld); err != nil {
				return nil, fmt.Errorf("decode %s: %w", snaps[2*i+1].Ref.Path, err)
			}
			if doc.Status != StatusActive || ld.Live(now) {
				continue
			}
			w := Waiting{SessionID: id}
			if s.rules.LaunchInFlight(doc, ld, now) {
				w.Launch = doc.Launch
			}
			out = append(out, w)
		}
	}
	return out, nil
}

// waitingBatch is how many sessions Waiting reads at once (two documents
// each, in one BatchGetDocuments).
const waitingBatch = 100

// Relaunch claims a launch for a session with queued requests, no host and
// no launch in flight; it returns nil when there is nothing to do. After
// maxAttempts launches with no request finished since, it instead answers
// every queued request LAUNCH_FAILED and returns them in failed.
func (s *Store) Relaunch(ctx context.Context, sessionID string, maxAttempts int) (launch *Launch, failed []Unpublished, err error) {
	ref := s.sessionRef(sessionID)
	err = s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		launch, failed = nil, nil
		doc, err := txGet[Doc](tx, ref)
		if err != nil || doc == nil {
			return err
		}
		ld, err := txGet[LeaseDoc](tx, s.leaseRef(sessionID))
		if err != nil {
			return err
		}
		now := s.now()
		if !s.rules.MayRelaunch(doc, ld, now) {
			return nil
		}
		queued, err := s.hasQueued(tx, sessionID)
		if err != nil || !queued {
			return err
		}
		progressed, err := s.finishedSince(tx, sessionID, doc.AttemptsSince)
		if err != nil {
			return err
		}
		var attempts int
		if launch, attempts = Relaunch(doc, progressed, maxAttempts, now); launch == nil {
			// Give up: every queued request gets its one outcome.
			failed, err = answerAll(tx, s.queuedQuery(sessionID), now, func(it *Item) *api.Completion {
				if ld != nil && ApplyMark(it, ld.Running) {
					// Its host left it running (a forced release).
					return HostLost(it, ld.Epoch+1)
				}
				return GaveUp(it, sessionID, attempts)
			})
			if err != nil {
				return err
			}
		}
		return tx.Set(ref, doc)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("relaunch session %s: %w", sessionID, err)
	}
	return launch, failed, nil
}

// finishedSince reports, in tx, whether a request of the session finished
// after t.
func (s *Store) finishedSince(tx *firestore.Transaction, sessionID string, t time.Time) (bool, error) {
	q := s.sessionRef(sessionID).Collection(inboxCollection).Where("finished_at", ">", t).Limit(1)
	it := tx.Documents(q)
	defer it.Stop()
	_, err := it.Next()
	if errors.Is(err, iterator.Done) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for finished requests of session %s: %w", sessionID, err)
	}
	return true, nil
}

// Unpublished lists completions recorded before cutoff and not yet found
// published, across all sessions, up to limit of each kind: those whose
// items are not marked published, and those that lease documents track
// (LeaseDoc.Publishing, due before cutoff; InLease).
func (s *Store) Unpublished(ctx context.Context, cutoff time.Time, limit int) ([]Unpublished, error) {
	q := s.fs.CollectionGroup(inboxCollection).Where("status", "==", ItemDone).Where("published", "==", false).
		Where("finished_at", "<", cutoff).Limit(limit)
	items, _, err := readAll[Item](q.Documents(ctx), "unpublished completions")
	if err != nil {
		return nil, err
	}
	var out []Unpublished
	for _, item := range items {
		out = append(out, Unpublished{SessionID: item.SessionID, RequestID: item.RequestID, Completion: []byte(item.Completion)})
	}
	lq := s.fs.CollectionGroup(runtimeCollection).Where("publish_due", "<", cutoff).Limit(limit)
	leases, lrefs, err := readAll[LeaseDoc](lq.Select("publishing").Documents(ctx), "completions whose publish a lease tracks")
	if err != nil {
		return nil, err
	}
	var refs []*firestore.DocumentRef
	for i, ld := range leases {
		for _, id := range slices.Sorted(maps.Keys(ld.Publishing)) {
			if ld.Publishing[id].Before(cutoff) && len(refs) < limit {
				refs = append(refs, s.itemRef(sessionOf(lrefs[i]), id))
			}
		}
	}
	if len(refs) == 0 {
		return out, nil
	}
	snaps, err := s.fs.GetAll(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("read completions whose publish a lease tracks: %w", err)
	}
	for _, snap := range snaps {
		item, err := decodeSnap[Item](snap)
		if err != nil {
			return nil, err
		}
		if item != nil && item.Status == ItemDone {
			out = append(out, Unpublished{SessionID: item.SessionID, RequestID: item.RequestID, Completion: []byte(item.Completion), InLease: true})
		}
	}
	return out, nil
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

// Hosted lists the execution ids that sessions' hosts and launches, and
// the warm pool's members, name.
func (s *Store) Hosted(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	members, err := s.PoolMembers(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		out[m.Execution] = true
	}
	leases, _, err := readAll[LeaseDoc](s.fs.CollectionGroup(runtimeCollection).Where("execution", ">", "").Documents(ctx), "hosts")
	if err != nil {
		return nil, err
	}
	for _, ld := range leases {
		out[ld.Execution] = true
	}
	launched, _, err := readAll[Doc](s.fs.Collection(sessionsCollection).Where("launch.execution", ">", "").Documents(ctx), "launches")
	if err != nil {
		return nil, err
	}
	for _, d := range launched {
		out[d.Launch.Execution] = true
	}
	return out, nil
}

func (s *Store) sessionIDs(ctx context.Context, q firestore.Query, what string) ([]string, error) {
	_, refs, err := readAll[struct{}](q.Select().Documents(ctx), what)
	var ids []string
	for _, ref := range refs {
		ids = append(ids, ref.ID)
	}
	return ids, err
}

// Destroy ends a session's life whatever runs in it: the host, if any, loses
// its lease, and unfinished requests are answered ABORTED. The caller
// cancels the returned execution (the host, or a launch) and purges the
// session's objects. It returns the recorded completions to publish.
func (s *Store) Destroy(ctx context.Context, sessionID, reason string) (host string, answered []Unpublished, err error) {
	err = s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		host, answered = "", nil
		doc, err := txGet[Doc](tx, s.sessionRef(sessionID))
		if err != nil || doc == nil || doc.Status == StatusDestroyed {
			return err
		}
		ld, err := txGet[LeaseDoc](tx, s.leaseRef(sessionID))
		if err != nil {
			return err
		}
		now := s.now()
		unfinished := s.sessionRef(sessionID).Collection(inboxCollection).Where("status", "in", []string{ItemQueued, ItemRunning})
		answered, err = answerAll(tx, unfinished, now, func(it *Item) *api.Completion { return Aborted(it, sessionID, reason) })
		if err != nil {
			return err
		}
		switch {
		case ld != nil && ld.Execution != "":
			host = ld.Execution
		case doc.Launch != nil:
			host = doc.Launch.Execution
		}
		return s.destroy(tx, sessionID, doc, ld, now)
	})
	if err != nil {
		return "", nil, fmt.Errorf("destroy session %s: %w", sessionID, err)
	}
	return host, answered, nil
}

// Purge deletes the objects of a destroyed session and clears its
// purge_pending mark.
func (s *Store) Purge(ctx context.Context, sessionID string) error {
	for _, prefix := range []string{objectPrefix(sessionID), blobPrefix(sessionID)} {
		if err := s.deleteObjects(ctx, prefix); err != nil {
			return fmt.Errorf("purge session %s: %w", sessionID, err)
		}
	}
	ref := s.sessionRef(sessionID)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		doc, err := txGet[Doc](tx, ref)
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
