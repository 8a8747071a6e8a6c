package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/retry"
)

// Lease is a host's right to act for a session. Every write made under it
// checks that the session's epoch is still Epoch.
type Lease struct {
	SessionID string
	Execution string
	Epoch     int64
	// TTL is the lease of a busy host (what Acquire was given): a Start or
	// Finish renews the lease for at least this long.
	TTL time.Duration
	// Acquired is when the host took the lease.
	Acquired time.Time
	// LaunchRequestedAt is when the launch this host answers was claimed
	// (zero when the host was not launched for a claim).
	LaunchRequestedAt time.Time
	// Checkpoint and Shell are the session's state when the lease was taken.
	Checkpoint *Checkpoint
	Shell      Shell
	// Unreleased is true when the previous host never gave the lease up
	// (it died or was taken away): it may have left uploads behind.
	Unreleased bool
	// orphans are the marks of requests that earlier hosts started and did
	// not finish, as the lease document held them when the lease was
	// taken (FailOrphans answers them).
	orphans map[string]RunningItem

	// turn is held by whoever writes the lease document under this lease
	// (a renewal, a Start, a Finish): each write is conditioned on the
	// version the previous one left, so two at once would fail each
	// other. It is a channel so that waiting for it ends with the
	// caller's context (a renewal must give up at its fence).
	turnOnce sync.Once
	turn     chan struct{}
	// version is the lease document's update time after this lease's last
	// write; zero until the first, or when its outcome is unknown. Only
	// the holder of turn touches it, and the two below.
	version time.Time
	// running is the lease document's Running as of version: a Start or a
	// Finish writes it whole, with its mark added or dropped.
	running map[string]RunningItem
	// finished holds the ids of the requests this lease finished last
	// (at most maxFinished, oldest first in finishedOrder): a Start given
	// a view of the inbox from before one's Finish landed refuses it.
	finished      map[string]bool
	finishedOrder []string
	// pubMu guards the three below: a request's goroutine notes its
	// publish, and Release reads them, without waiting for the turn.
	pubMu sync.Mutex
	// publishing is the lease document's Publishing as of version (set by
	// the holder of the turn).
	publishing map[string]time.Time
	// tracked holds the completions whose publish the lease document
	// tracks (publishing, or added since by this lease's Finish);
	// published those of them published since the last write of the
	// lease, which its next write drops from Publishing.
	tracked, published map[string]bool
	// mu guards what the last renewal left, below, which the heartbeat
	// reads without the turn.
	mu sync.Mutex
	// expires is the lease_expires last written; sent is when that write
	// was sent, on the local clock, and left how long the lease it wrote
	// ran from then (see Renewed).
	expires time.Time
	sent    time.Time
	left    time.Duration
}

// maxFinished bounds Lease.finished: far more requests than a host's
// views of its inbox can be behind by (they come in order, one listener at
// a time, and a Finish's own change of the inbox follows it).
const maxFinished = 4096

// noteFinished records, holding the turn, that the lease finished the
// request.
func (l *Lease) noteFinished(requestID string) {
	if l.finished == nil {
		l.finished = map[string]bool{}
	}
	if l.finished[requestID] {
		return
	}
	l.finished[requestID] = true
	l.finishedOrder = append(l.finishedOrder, requestID)
	if len(l.finishedOrder) > maxFinished {
		delete(l.finished, l.finishedOrder[0])
		l.finishedOrder = l.finishedOrder[1:]
	}
}

// notePublished records that the completion of requestID was published,
// and reports whether the lease document tracks its publish (then the
// next write of the lease drops it from Publishing).
func (l *Lease) notePublished(requestID string) bool {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	if !l.tracked[requestID] {
		return false
	}
	if l.published == nil {
		l.published = map[string]bool{}
	}
	l.published[requestID] = true
	return true
}

// publishingUpdate returns the lease document's Publishing that this
// lease's next write leaves: what it holds now, less
// what was published since, plus recorded (when not ""), recorded at now;
// and the fields of the update that writes it.
func (l *Lease) publishingUpdate(recorded string, now time.Time) (map[string]time.Time, []firestore.Update) {
	l.pubMu.Lock()
	// next is a copy: the map l.publishing names is never changed.
	next := maps.Clone(l.publishing)
	for id := range l.published {
		delete(next, id)
	}
	l.pubMu.Unlock()
	if recorded != "" {
		if next == nil {
			next = map[string]time.Time{}
		}
		next[recorded] = now
	}
	return next, publishingFields(next)
}

// publishingFields is the update that leaves the lease document's
// Publishing as publishing, with its PublishDue; both go when it is empty.
func publishingFields(publishing map[string]time.Time) []firestore.Update {
	var pub, due any = firestore.Delete, firestore.Delete
	if len(publishing) > 0 {
		pub, due = publishing, PublishDue(publishing)
	}
	return []firestore.Update{{Path: "publishing", Value: pub}, {Path: "publish_due", Value: due}}
}

// setPublishing records, holding the turn, the lease document's Publishing
// as a write of the lease left it (or a read found it).
func (l *Lease) setPublishing(publishing map[string]time.Time) {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	l.publishing = publishing
	for id := range l.published {
		if _, ok := publishing[id]; !ok {
			delete(l.published, id)
			delete(l.tracked, id)
		}
	}
	for id := range publishing {
		if l.tracked == nil {
			l.tracked = map[string]bool{}
		}
		l.tracked[id] = true
	}
}

// lock waits for the turn to write the lease document, or for ctx's end.
func (l *Lease) lock(ctx context.Context) error {
	l.turnOnce.Do(func() { l.turn = make(chan struct{}, 1) })
	select {
	case l.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Lease) unlock() { <-l.turn }

// Renewed reports the last renewal of the lease (a heartbeat's, a Start's
// or a Finish's): when it was sent, on the local clock, and how long the
// lease ran from then. Since the write landed after it was sent, the lease
// lasts at least that long. It is zero until the first renewal.
func (l *Lease) Renewed() (sent time.Time, left time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.left
}

// NoteRenewal records a renewal of the lease that a store wrote: sent on
// the local clock, at now on the store's clock, to expires.
func (l *Lease) NoteRenewal(sent, now, expires time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expires, l.sent, l.left = expires, sent, expires.Sub(now)
}

// WorkExpiry is the lease expiry that a Start or Finish at now writes: the
// busy lease (TTL) from now, or the lease held when that runs longer, so
// that such a write never shortens the lease the host's heartbeat counts
// on. A lease already lapsed is not revived: only the heartbeat, which
// fences the host before the lapse, renews.
func (l *Lease) WorkExpiry(now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.expires.After(now) {
		return l.expires
	}
	return maxTime(l.expires, now.Add(l.TTL))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Acquire takes the session's lease for execution for ttl. It fails with
// ErrLeaseHeld while another host holds the lease, even one whose lease
// lapsed: such a host may still be running commands until the reaper has
// made sure its execution ended (RecoverHost). It fails with ErrDestroyed
// or ErrNotFound when there is no session to host.
//
// It is one read and one commit, with no transaction (see acquireOnce); a
// commit whose condition failed reads and decides again.
func (s *Store) Acquire(ctx context.Context, sessionID, execution string, ttl time.Duration) (*Lease, error) {
	var lease *Lease
	err := retry.Do(ctx, retry.FirestoreTransaction, nil, "acquire lease of session "+sessionID, func(ctx context.Context) error {
		return againOnConflict(ctx, func(ctx context.Context) error {
			var err error
			lease, err = s.acquireOnce(ctx, sessionID, execution, ttl)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("acquire lease of session %s for %s: %w", sessionID, execution, err)
	}
	return lease, nil
}

// acquireOnce reads the session document, the lease and the state in one
// BatchGetDocuments, lets Rules.Acquire decide, and commits the new lease
// and fence in one Commit whose only condition is on the lease document:
// its update time as read (or, when it was missing, that it still is).
//
// Why that condition alone keeps the decision true at the commit:
//   - the lease document: every change of holder writes it (Acquire,
//     Release, RecoverHost, a destroy) and so do the holder's renewals,
//     Starts and Finishes (see commitFenced). Any of them since the read
//     fails the commit. So two hosts racing for the session cannot both
//     win: the second commit finds the version the first one left.
//   - the fence document is written only with the lease document, so it
//     too is as read; it is overwritten, with the new epoch.
//   - the state document (checkpoint and shell) is written only by the
//     lease's holder, fenced (a Finish's commit is conditioned on the
//     lease document, a checkpoint's transaction reads the fence), and
//     deleted only by a destroy, which writes the lease document too. When
//     the lease read names another host, the decision is ErrLeaseHeld and
//     nothing is written; when it names none, no earlier holder can write
//     the state any more; when it names this execution (an attempt whose
//     commit landed unseen), that earlier lease was never handed out.
//   - the session document: Rules.Acquire depends on its existence, its
//     status and its launch claim. A destroy writes the lease document
//     too, so it fails the commit. A creation, a revival or a new launch
//     claim by an enqueue (which reads the lease without a lock) could
//     land between the read and the commit without touching the lease;
//     the decision is then the one a transaction ordered before that
//     write would have made: ErrNotFound or ErrDestroyed for a session
//     revived after the read (the host exits and the enqueue's launch
//     brings another); for a new claim, a lease that names the claim read
//     (LaunchID), so the new claim stays in flight and its host, finding
//     the lease held, exits. The transaction this replaces behaved the
//     same: the enqueue's read of the lease was never locked, and its
//     commit only waited for the read lock on the session document.
//     RecordLaunch, KeepClaim and WithdrawLaunch change only the claim's
//     execution, times and attempts, which the lease copies only as the
//     time the launch was requested (a timing shown in answers).
//
// So conditioning the session document as well (an update of it with no
// change, conditioned on its update time) would buy nothing, and would
// cost a write and a failed commit to every enqueue racing the host start.
func (s *Store) acquireOnce(ctx context.Context, sessionID, execution string, ttl time.Duration) (*Lease, error) {
	lref := s.leaseRef(sessionID)
	snaps, err := s.fs.GetAll(ctx, []*firestore.DocumentRef{s.sessionRef(sessionID), lref, s.stateRef(sessionID)})
	if err != nil {
		return nil, fmt.Errorf("read session, lease and state: %w", err)
	}
	doc, err := decodeSnap[Doc](snaps[0])
	if err != nil {
		return nil, err
	}
	ld, err := decodeSnap[LeaseDoc](snaps[1])
	if err != nil {
		return nil, err
	}
	st, err := decodeSnap[StateDoc](snaps[2])
	if err != nil {
		return nil, err
	}
	sent, now := time.Now(), s.now()
	next, fence, lease, err := s.rules.Acquire(sessionID, execution, ttl, doc, ld, st, now)
	if err != nil {
		return nil, err
	}
	b := s.fs.Batch()
	if ld == nil {
		b.Create(lref, next)
	} else {
		b.Update(lref, fieldUpdates(&next), firestore.LastUpdateTime(snaps[1].UpdateTime))
	}
	b.Set(s.fenceRef(sessionID), fence)
	wrs, err := b.Commit(ctx)
	if status.Code(err) == codes.AlreadyExists {
		// The lease document was created since the read.
		return nil, status.Error(codes.FailedPrecondition, "the lease document was created since it was read")
	}
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	// The first renewal is conditioned on this version, with no read.
	lease.version = wrs[0].UpdateTime
	lease.NoteRenewal(sent, now, next.LeaseExpires)
	return lease, nil
}

// fenced runs f in a transaction after checking, in it, that lease is
// current: the fence document, not the lease document that renewals write,
// so that the read lock it takes never holds up a renewal. f may read more
// before it writes.
func (s *Store) fenced(ctx context.Context, lease *Lease, f func(tx *firestore.Transaction, now time.Time) error) error {
	return s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		fd, err := txGet[FenceDoc](tx, s.fenceRef(lease.SessionID))
		if err != nil {
			return err
		}
		if !Fenced(fd, lease) {
			return ErrLeaseLost
		}
		return f(tx, s.now())
	})
}

// Renew extends the lease to ttl from now.
//
// It is one write with no read: the update is conditioned on the lease
// document's update time as this lease last wrote it (see commitFenced),
// so it fails if anyone else wrote the document since (only a change of
// holder does, which raises the epoch or clears the host). Only the first
// write of a lease, and one after a write whose outcome is unknown (a
// timeout), read the document first to learn its update time, and check
// the epoch there. Renewals, Starts and Finishes of one lease take turns.
func (s *Store) Renew(ctx context.Context, lease *Lease, ttl time.Duration) error {
	if err := lease.lock(ctx); err != nil {
		return fmt.Errorf("renew lease of session %s: %w", lease.SessionID, err)
	}
	defer lease.unlock()
	if lease.version.IsZero() {
		if _, err := s.readLease(ctx, lease, nil); err != nil {
			return fmt.Errorf("renew lease of session %s: %w", lease.SessionID, err)
		}
	}
	sent, now := time.Now(), s.now()
	expires := now.Add(ttl)
	// The renewal carries what was published since the last write.
	publishing, pups := lease.publishingUpdate("", now)
	wr, err := s.leaseRef(lease.SessionID).Update(ctx, append(s.renewal(expires, now), pups...), firestore.LastUpdateTime(lease.version))
	switch status.Code(err) {
	case codes.OK:
		lease.version = wr.UpdateTime
		lease.setPublishing(publishing)
		lease.NoteRenewal(sent, now, expires)
		return nil
	case codes.FailedPrecondition, codes.NotFound:
		// Someone else wrote the document, or our own last write landed
		// unseen: the next renewal reads it to tell which.
		lease.version = time.Time{}
		return fmt.Errorf("renew lease of session %s: the lease document changed: %w", lease.SessionID, errLeaseMoved)
	case codes.Aborted:
		// It waited too long for a transaction's lock on the document
		// (Firestore's pessimistic concurrency) and did not land.
		return fmt.Errorf("renew lease of session %s: %w", lease.SessionID, err)
	default:
		// The write may have landed; its update time is unknown.
		lease.version = time.Time{}
		return fmt.Errorf("renew lease of session %s: %w", lease.SessionID, err)
	}
}

// renewal is the update of the lease document that renews it to expires.
func (s *Store) renewal(expires, now time.Time) []firestore.Update {
	return []firestore.Update{{Path: "lease_expires", Value: expires}, {Path: "expire_at", Value: now.Add(s.cfg.TTL)}}
}

// readLease reads the lease document, and the inbox item at iref when iref
// is not nil, in one BatchGetDocuments: it fails with ErrLeaseLost unless
// the lease document still names lease, and learns the document's version.
// It returns the item with its Version, nil when missing. The caller holds
// the lease's turn.
func (s *Store) readLease(ctx context.Context, lease *Lease, iref *firestore.DocumentRef) (*Item, error) {
	refs := []*firestore.DocumentRef{s.leaseRef(lease.SessionID)}
	if iref != nil {
		refs = append(refs, iref)
	}
	snaps, err := s.fs.GetAll(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("read the lease: %w", err)
	}
	ld, err := decodeSnap[LeaseDoc](snaps[0])
	if err != nil {
		return nil, err
	}
	if ld == nil || ld.Epoch != lease.Epoch || ld.Execution != lease.Execution {
		return nil, ErrLeaseLost
	}
	lease.version, lease.running = snaps[0].UpdateTime, ld.Running
	lease.setPublishing(ld.Publishing)
	if iref == nil {
		return nil, nil
	}
	it, err := decodeSnap[Item](snaps[1])
	if it != nil {
		it.Version = snaps[1].UpdateTime
	}
	return it, err
}

// commitFenced commits b with the lease's renewal (Lease.WorkExpiry) as its
// last write, which also writes the lease document's Running marks, whole,
// as running (the lease's own with one added or dropped), and its
// Publishing, less what was published since and with recorded (a request
// whose completion b records; "" for none), and returns the results of b's
// own writes. The renewal is the
// fence: it is conditioned on the lease document's update time as this
// lease last wrote it, so the whole commit fails, writing nothing, once
// anyone else wrote that document since. That is as strong as the fenced
// transaction's read of the fence document, because:
//   - every change of the session's holder writes the lease document in the
//     same transaction as the fence document, with the same epoch and host:
//     Acquire, Release, RecoverHost, and a destroy (Destroy, and Enqueue's
//     destroy of a session with no host, both through Rules.Destroyed).
//     Nothing writes the fence document without the lease document;
//   - nothing else writes the lease document but this lease's own
//     renewals, Starts and Finishes, which take turns (Lease.lock) and each
//     keep the version they left (a write of unknown outcome forgets it, and
//     the next one reads the document and checks its epoch and host);
//   - a lease document deleted (by TTL) fails the condition too.
//
// So a lease document unchanged since this lease wrote it means a fence
// unchanged since, when this lease held the session. The caller holds the
// lease's turn. On a failure the lease's version is kept only when the
// commit surely did not land (ABORTED, a lock waited for too long).
func (s *Store) commitFenced(ctx context.Context, lease *Lease, b *firestore.WriteBatch, running map[string]RunningItem, recorded string, sent, now time.Time) ([]*firestore.WriteResult, error) {
	expires := lease.WorkExpiry(now)
	publishing, pups := lease.publishingUpdate(recorded, now)
	if running == nil {
		running = map[string]RunningItem{}
	}
	ups := append(s.renewal(expires, now), firestore.Update{Path: "running", Value: running})
	ups = append(ups, pups...)
	b.Update(s.leaseRef(lease.SessionID), ups, firestore.LastUpdateTime(lease.version))
	wrs, err := b.Commit(ctx)
	if err != nil {
		if status.Code(err) != codes.Aborted {
			lease.version = time.Time{}
		}
		return nil, err
	}
	lease.version, lease.running = wrs[len(wrs)-1].UpdateTime, running
	lease.setPublishing(publishing)
	lease.NoteRenewal(sent, now, expires)
	return wrs[:len(wrs)-1], nil
}

// maxConflicts is how many commits in a row underLease makes whose
// conditions fail, before it gives up: each one read the documents just
// before, so more means something keeps changing them.
const maxConflicts = 3

// underLease runs attempt, holding the lease's turn to write its document,
// until it succeeds: again at once when its commit's conditions failed
// (FailedPrecondition; the next attempt reads), after a backoff when it
// failed transiently (retry.FirestoreTransaction, as the transactions it
// replaces), and never after a permanent error such as ErrLeaseLost. The
// turn is given up between attempts, so that a renewal is never held up
// by a backoff.
func (s *Store) underLease(ctx context.Context, lease *Lease, what string, attempt func(ctx context.Context) error) error {
	return retry.Do(ctx, retry.FirestoreTransaction, nil, what, func(ctx context.Context) error {
		if err := lease.lock(ctx); err != nil {
			return err
		}
		defer lease.unlock()
		return againOnConflict(ctx, attempt)
	})
}

// againOnConflict runs attempt again at once while its commit's conditions
// fail (FailedPrecondition, or NotFound for a document deleted since it
// was read): each attempt reads first, so it decides on what changed. It
// gives up after maxConflicts in a row.
func againOnConflict(ctx context.Context, attempt func(ctx context.Context) error) error {
	for conflicts := 1; ; conflicts++ {
		err := attempt(ctx)
		if c := status.Code(err); c != codes.FailedPrecondition && c != codes.NotFound {
			return err
		}
		if conflicts == maxConflicts {
			return fmt.Errorf("the documents changed %d times in a row: %w", conflicts, err)
		}
	}
}

// errLeaseMoved says that a renewal found the lease document changed; a
// renewal that reads it (the next one) says whether the lease is lost.
var errLeaseMoved = errors.New("lease document changed since this host last renewed it")

// LeaseMoved reports whether a renewal failed only because the lease
// document changed: worth one more renewal at once, which reads it.
func LeaseMoved(err error) bool { return errors.Is(err, errLeaseMoved) }

// Release gives the lease up, unless requests are queued (ErrWorkPending):
// a host leaves only when no request would be stranded. With force it
// leaves anyway (the execution is ending), and queued requests get a new
// host from the reaper, or from an enqueue that comes first. It writes the
// session document too (hostGone), so that an enqueue that saw this host
// fails its commit and reads again (appendItem).
func (s *Store) Release(ctx context.Context, lease *Lease, force bool) error {
	err := s.fenced(ctx, lease, func(tx *firestore.Transaction, now time.Time) error {
		if !force {
			queued, err := s.hasQueued(tx, lease.SessionID)
			if err != nil {
				return err
			}
			if queued {
				return ErrWorkPending
			}
		}
		doc, err := txGet[Doc](tx, s.sessionRef(lease.SessionID))
		if err != nil {
			return err
		}
		if err := s.setFence(tx, lease.SessionID, lease.Epoch, "", now); err != nil {
			return err
		}
		if err := s.hostGone(tx, lease.SessionID, doc, now); err != nil {
			return err
		}
		// It carries what was published since the lease's last write.
		_, pups := lease.publishingUpdate("", now)
		return tx.Update(s.leaseRef(lease.SessionID), append([]firestore.Update{{Path: "execution", Value: ""}, {Path: "lease_expires", Value: time.Time{}}}, pups...))
	})
	if err != nil {
		return fmt.Errorf("release lease of session %s: %w", lease.SessionID, err)
	}
	return nil
}

// hostGone records, in tx, that the session lost its host at now
// (Doc.HostGoneAt), unless its document doc, as tx read it, is missing.
func (s *Store) hostGone(tx *firestore.Transaction, sessionID string, doc *Doc, now time.Time) error {
	if doc == nil {
		return nil
	}
	return tx.Update(s.sessionRef(sessionID), []firestore.Update{{Path: "host_gone_at", Value: now}})
}

// Queued returns up to limit of the session's queued items, in sequence
// order, each with its Version.
func (s *Store) Queued(ctx context.Context, sessionID string, limit int) ([]Item, error) {
	it := s.queuedQuery(sessionID).Limit(limit).Documents(ctx)
	defer it.Stop()
	return queuedItems(it, sessionID)
}

// queuedItems decodes the inbox items it yields, in order, with their
// versions.
func queuedItems(it *firestore.DocumentIterator, sessionID string) ([]Item, error) {
	var out []Item
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list inbox of session %s: %w", sessionID, err)
		}
		var item Item
		if err := snap.DataTo(&item); err != nil {
			return nil, fmt.Errorf("decode %s: %w", snap.Ref.Path, err)
		}
		item.Version = snap.UpdateTime
		out = append(out, item)
	}
}

// Queue is what the inbox listener last saw (WatchQueued): the session's
// queued items in sequence order, each with its Version; or, in Err, why
// the listener failed, in which case it is being opened again and the
// items last seen may be out of date until its next Queue.
type Queue struct {
	Items []Item
	Err   error
}

// WatchQueued sends on the returned channel the session's queued items
// each time they change, until ctx ends: the listener's own snapshot, so
// that a host starts from it with no query after it. The channel holds
// only the latest: a Queue not yet received is replaced by a newer one. A
// listener that fails is opened again (with backoff), and sends a Queue
// with Err first; its first snapshot is the whole queue, so that a change
// made while it was down is seen.
func (s *Store) WatchQueued(ctx context.Context, sessionID string) <-chan Queue {
	ch := make(chan Queue, 1)
	go retry.Restart(ctx, retry.Firestore, nil, "inbox listener of session "+sessionID, func(ctx context.Context) error {
		it := s.queuedQuery(sessionID).Snapshots(ctx)
		defer it.Stop()
		for {
			snap, err := it.Next()
			var items []Item
			if err == nil {
				items, err = queuedItems(snap.Documents, sessionID)
			}
			if err != nil {
				if ctx.Err() == nil {
					sendLatest(ch, Queue{Err: err})
				}
				return err
			}
			sendLatest(ch, Queue{Items: items})
		}
	})
	return ch
}

// sendLatest puts v on ch (of capacity 1, with one sender), replacing a
// value not yet received.
func sendLatest[T any](ch chan T, v T) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

// Start marks a queued item running under the lease, and returns it as
// running (its Version is the item's, which the Start does not change), or
// ok=false when it is no longer queued: missing, done, marked running in
// the lease document already, or finished by this lease (one a stale view
// of the inbox still lists). seen is the item as the caller saw it queued
// (WatchQueued, Queued); one with only RequestID set is read first.
//
// It is one write with no read: the lease document's update, which adds
// the item's mark to Running (LeaseDoc.Running) and renews the lease,
// conditioned on the version this lease last wrote (commitFenced: the
// fence). The inbox item is not written; it stays queued until its Finish.
// Why the item needs no condition of its own: the lease's holder alone
// starts and finishes items; everything else that answers a queued item
// either writes the lease document in the same transaction (a destroy, the
// reaper's recovery), which fails this commit, or does it while no host
// holds the lease (the reaper's giving up, Relaunch), before any host's
// view of the inbox. Only when the lease's version is unknown (its last
// write's outcome was lost), or its condition fails, is the lease document
// read (with the item when its version is unknown): one no longer naming
// this lease is ErrLeaseLost, and a commit whose outcome was unknown is
// recognised by the mark it wrote.
func (s *Store) Start(ctx context.Context, lease *Lease, seen Item) (item *Item, ok bool, err error) {
	iref := s.itemRef(lease.SessionID, seen.RequestID)
	cur := &seen
	var tried time.Time // the start time of the last commit, which may have landed
	err = s.underLease(ctx, lease, "start request "+seen.RequestID, func(ctx context.Context) error {
		item, ok = nil, false
		var read *firestore.DocumentRef
		if cur.Version.IsZero() {
			read = iref
		}
		if read != nil || lease.version.IsZero() {
			it, err := s.readLease(ctx, lease, read)
			if err != nil {
				return err
			}
			if read != nil {
				if it == nil {
					return nil
				}
				cur = it
			}
		}
		if m, marked := lease.running[cur.RequestID]; marked {
			// Started already: by this Start's own commit whose outcome was
			// unknown when the mark is the one it wrote.
			it := *cur
			ApplyMark(&it, lease.running)
			item, ok = &it, !tried.IsZero() && m.Epoch == lease.Epoch && m.Execution == lease.Execution && m.StartedAt.Equal(tried)
			return nil
		}
		if cur.Status != ItemQueued || lease.finished[cur.RequestID] {
			it := *cur
			item = &it
			return nil
		}
		next := *cur
		// Firestore keeps microseconds: the time read back must match.
		sent, now := time.Now(), s.now().Truncate(time.Microsecond)
		StartItem(&next, lease, now)
		running := maps.Clone(lease.running)
		if running == nil {
			running = map[string]RunningItem{}
		}
		running[next.RequestID] = Mark(&next, lease, now)
		b := s.fs.Batch() // the lease's update alone
		if _, err := s.commitFenced(ctx, lease, b, running, "", sent, now); err != nil {
			if c := status.Code(err); c != codes.Aborted && c != codes.FailedPrecondition && c != codes.NotFound {
				tried = now // it may have landed
			}
			return err
		}
		item, ok = &next, true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("start request %s of session %s: %w", seen.RequestID, lease.SessionID, err)
	}
	return item, ok, nil
}

// Finish records the completion of a running item under the lease, with the
// shell state it left (nil keeps the session's) and the checkpoint of the
// workspace it left (nil keeps the session's), in one commit: the answer is
// recorded only with the state it reports. It returns the completion bytes
// to publish. A completion is recorded once: finishing an item that is
// already done returns what was recorded. version is the item's Version as
// Start returned it (zero: read it first).
//
// It is one Commit: the item's completion conditioned on version (the
// item's as queued: a Start does not write it), the state, and the lease's
// renewal, which drops the item's mark (LeaseDoc.Running), as the fence.
// When a
// condition fails, or a version is unknown, it reads the item with the
// lease document: a lease lost is ErrLeaseLost, an item done already
// returns its completion, and otherwise it commits again.
//
// A completion whose JSON is over api.MaxCompletionBytes is stored whole
// in its result object, and its Summary is recorded and published.
func (s *Store) Finish(ctx context.Context, lease *Lease, version time.Time, c *api.Completion, shell *Shell, cp *Checkpoint) ([]byte, error) {
	b, err := s.fit(ctx, lease.SessionID, c)
	if err != nil {
		return nil, err
	}
	iref := s.itemRef(lease.SessionID, c.RequestID)
	var recorded []byte
	err = s.underLease(ctx, lease, "finish request "+c.RequestID, func(ctx context.Context) error {
		if version.IsZero() || lease.version.IsZero() {
			it, err := s.readLease(ctx, lease, iref)
			switch {
			case err != nil:
				return err
			case it == nil:
				return fmt.Errorf("inbox item %s: %w", c.RequestID, ErrNotFound)
			case it.Status == ItemDone:
				// Recorded before: by an earlier Finish (this one's own
				// commit of unknown outcome too), or a destroy's answer.
				recorded = []byte(it.Completion)
				lease.noteFinished(c.RequestID)
				return nil
			}
			version = it.Version
		}
		sent, now := time.Now(), s.now()
		batch := s.fs.Batch() // one Commit of several writes with no transaction
		// Its publish is tracked by the lease document, not by the item:
		// with no published field, the item is not among those the reaper
		// queries by it.
		ups := []firestore.Update{{Path: "status", Value: ItemDone}, {Path: "completion", Value: string(b)}, {Path: "finished_at", Value: now},
			{Path: "published", Value: firestore.Delete}, {Path: "publish_in_lease", Value: true}}
		running := maps.Clone(lease.running)
		if m, ok := running[c.RequestID]; ok {
			// The item keeps who ran it, which only the mark said.
			ups = append(ups, firestore.Update{Path: "started_at", Value: m.StartedAt}, firestore.Update{Path: "epoch", Value: m.Epoch},
				firestore.Update{Path: "execution", Value: m.Execution})
			delete(running, c.RequestID)
		}
		batch.Update(iref, ups, firestore.LastUpdateTime(version))
		// Merge names whole fields: the shell replaces the old one (an unset
		// variable goes), and so does the checkpoint; what is nil stays.
		state := map[string]any{"expire_at": now.Add(s.cfg.TTL)}
		fields := []firestore.FieldPath{{"expire_at"}}
		if shell != nil {
			state["shell"] = *shell
			fields = append(fields, firestore.FieldPath{"shell"})
		}
		if cp != nil {
			cp.Epoch, cp.CreatedAt = lease.Epoch, now
			state["checkpoint"] = *cp
			fields = append(fields, firestore.FieldPath{"checkpoint"})
		}
		if len(fields) > 1 {
			batch.Set(s.stateRef(lease.SessionID), state, firestore.Merge(fields...))
		}
		if _, err := s.commitFenced(ctx, lease, batch, running, c.RequestID, sent, now); err != nil {
			if status.Code(err) != codes.Aborted {
				version = time.Time{}
			}
			return err
		}
		recorded = b
		lease.noteFinished(c.RequestID)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("finish request %s of session %s: %w", c.RequestID, lease.SessionID, err)
	}
	if cp != nil && string(recorded) == string(b) {
		// Only the host holding the lease writes it, one request at a time.
		lease.Checkpoint = cp
	}
	return recorded, nil
}

// NextQueued returns the session's queued item with the lowest sequence
// number, or nil when none is queued.
func (s *Store) NextQueued(ctx context.Context, sessionID string) (*Item, error) {
	items, err := s.Queued(ctx, sessionID, 1)
	if err != nil || len(items) == 0 {
		return nil, err
	}
	return &items[0], nil
}

// HostOf returns the execution that holds the session's lease now; "" when
// the session has no live host.
func (s *Store) HostOf(ctx context.Context, sessionID string) (string, error) {
	ld, err := find[LeaseDoc](ctx, s.leaseRef(sessionID))
	if err != nil || !ld.Live(s.now()) {
		return "", err
	}
	return ld.Execution, nil
}
