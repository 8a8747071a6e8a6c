package session

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/retry"
)

// appendItem enqueues every request but a destroy without a transaction, so
// that it holds no lock at any time and a dispatcher killed in the middle
// of it leaves nothing behind: one read of the session document and the
// lease (one BatchGetDocuments), Rules.Enqueue's decision, and one Commit
// of plain writes, each conditioned so that the commit lands only on what
// was read:
//
//   - the inbox item is created (precondition: it does not exist), which
//     de-duplicates by request id: ALREADY_EXISTS is a redelivery;
//   - the session document, which holds the next sequence number and the
//     launch claim, is written only if its update time is still the one
//     read (or created only if it still does not exist).
//
// The commit is atomic: when either condition fails nothing is written.
// A session document changed in between means another enqueue (or a
// launch record, the reaper, a destroy) wrote it: read and decide again.
// So two racing enqueues of a session get consecutive sequence numbers,
// and a launch is claimed once, as in a transaction; every enqueue that
// queues a request writes the session document, so none can slip in
// unseen. The lease is read without a lock, and not again after the
// commit: the session document's condition covers it too, since every way
// a session loses its host writes that document besides the lease (a
// host's Release and the reaper's RecoverHost write HostGoneAt, a destroy
// the status). So a host that left after the read fails the commit, and
// the enqueue reads again and claims a launch; one that leaves after the
// commit finds the request queued and stays (Release, unless forced: a
// forced one leaves queued requests to the reaper). A host that dies
// without leaving keeps its lease until the reaper recovers the session
// (RecoverHost) and relaunches it (Relaunch), as with a fresh read.
//
// A hosted session's enqueue skips the read when the store remembers the
// session (seenFor): it is then the commit alone.
//
// Conflicts are retried with the store's transaction policy: a plain
// write also waits for, and may time out on, locks that a transaction of
// the session's other writers holds (a destroy, the reaper's).
func (s *Store) appendItem(ctx context.Context, req *api.Request, raw []byte, traceparent string) (Accepted, error) {
	var acc Accepted
	// The whole attempt is retried, not its reads one by one (see runTx).
	ctx = context.WithValue(ctx, inTxKey{}, true)
	err := retry.Do(ctx, retry.FirestoreTransaction, nil, "append request "+req.RequestID, func(ctx context.Context) error {
		var err error
		if seen, ok := s.seenFor(req); ok {
			acc, err = s.appendOnce(ctx, req, raw, traceparent, &seen)
			if !errors.Is(err, errSessionChanged) {
				return err
			}
			// What the store remembered is stale: read at once.
		}
		acc, err = s.appendOnce(ctx, req, raw, traceparent, nil)
		return err
	})
	return acc, err
}

// seenFor returns what the store remembers of the request's session when
// its enqueue may be decided on that instead of a read.
//
// Why a stale memory does no harm. The commit is conditioned on the
// session document's update time as remembered, so the document, which
// holds the sequence and every launch claim, is exactly as remembered or
// the commit fails and the enqueue reads. Only the lease may be stale:
// hosts renew it, start and finish requests without touching the session
// document. So the memory is used only when it names a host holding the
// lease (Held) and an active session, and the decision then never claims
// a launch, whatever the lease's expiry says:
//   - no wrong claim: with the remembered host, no launch is claimed; a
//     fresh read would claim one only if the host had gone since (and no
//     launch were in flight), and every way of going wrote the session
//     document (appendItem), so the commit fails and the enqueue reads. A
//     host launched since implies a claim since, which wrote it too.
//   - no stranded request: with the session document as remembered, the
//     remembered host still holds the lease, live or lapsed; a live one
//     finds the request queued (it leaves only with none queued), and a
//     lapsed one is the reaper's, as after a fresh read.
//
// So the memory costs no guarantee, only, when stale, a failed commit and
// a read. What it remembers of the lease is as old as the last read of it;
// only whether it names a host counts, and that changes only with a write
// of the session document.
func (s *Store) seenFor(req *api.Request) (seenSession, bool) {
	if ShowsSession(req.Op) {
		// Its answer describes the session: read it.
		return seenSession{}, false
	}
	seen, ok := s.seen.get(req.SessionID)
	if !ok || seen.doc.Status != StatusActive || !seen.lease.Held() {
		return seenSession{}, false
	}
	return seen, true
}

// errSessionChanged: the session document changed between an append's read
// and its commit. An ABORTED status, as a transaction's conflict is, so
// that retry.Transient retries the append.
var errSessionChanged = status.Error(codes.Aborted, "the session changed since it was read")

// appendOnce makes one attempt of appendItem, on what seen remembers of
// the session or, when seen is nil, on what it reads.
func (s *Store) appendOnce(ctx context.Context, req *api.Request, raw []byte, traceparent string, seen *seenSession) (Accepted, error) {
	sref, iref := s.sessionRef(req.SessionID), s.itemRef(req.SessionID, req.RequestID)
	in := EnqueueInput{Req: req, Raw: raw, Traceparent: traceparent}
	var version time.Time // the session document's, zero when it is missing
	if seen != nil {
		in.Doc, in.Lease, version = &seen.doc, seen.lease, seen.version
	} else {
		snaps, err := s.fs.GetAll(ctx, []*firestore.DocumentRef{sref, s.leaseRef(req.SessionID)})
		if err != nil {
			return Accepted{}, fmt.Errorf("read session and lease: %w", err)
		}
		if in.Doc, err = decodeSnap[Doc](snaps[0]); err != nil {
			return Accepted{}, err
		}
		if in.Lease, err = decodeSnap[LeaseDoc](snaps[1]); err != nil {
			return Accepted{}, err
		}
		if in.Doc != nil {
			version = snaps[0].UpdateTime
		}
		if ShowsSession(req.Op) && in.Doc != nil {
			if in.Shown, err = s.shown(ctx, req.SessionID, in.Lease); err != nil {
				return Accepted{}, err
			}
		}
	}
	in.Now = s.now()
	dec, err := s.rules.Enqueue(in)
	if err != nil {
		return Accepted{}, err
	}
	if dec.PurgeFirst {
		// A redelivery changes nothing, not even by setting a purge off.
		if prev, err := find[Item](ctx, iref); err != nil || prev != nil {
			return s.duplicate(ctx, prev, err)
		}
		return Accepted{}, errPurgeFirst
	}
	// A WriteBatch is the client's one atomic commit of several writes
	// outside a transaction (deprecated in favour of transactions, which
	// cost a BeginTransaction round trip and take locks, and of the
	// BulkWriter, whose writes are not atomic together).
	b := s.fs.Batch()
	b.Create(iref, dec.Item)
	if dec.Doc != nil {
		if in.Doc != nil {
			b.Update(sref, fieldUpdates(dec.Doc), firestore.LastUpdateTime(version))
		} else {
			b.Create(sref, dec.Doc)
		}
	}
	results, err := b.Commit(ctx)
	if err != nil {
		s.seen.forget(req.SessionID)
	}
	switch status.Code(err) {
	case codes.OK:
		if dec.Doc != nil {
			s.seen.put(seenSession{id: req.SessionID, doc: *dec.Doc, version: results[1].UpdateTime, lease: in.Lease})
		}
		return Accepted{Item: dec.Item, Answer: dec.Answer, Launch: dec.Launch}, nil
	case codes.AlreadyExists:
		// The item exists (a redelivery), or the session document that was
		// missing was created meanwhile.
		prev, err := find[Item](ctx, iref)
		if err != nil || prev != nil {
			return s.duplicate(ctx, prev, err)
		}
		return Accepted{}, errSessionChanged
	case codes.FailedPrecondition, codes.NotFound:
		// Its update time moved, or it was deleted (TTL).
		return Accepted{}, errSessionChanged
	default:
		// Retried when transient. A commit whose outcome is unknown and that
		// landed is found a duplicate by the next attempt, as a transaction's
		// retry found it.
		return Accepted{}, fmt.Errorf("commit: %w", err)
	}
}

// duplicate is Enqueue's answer to a request whose item prev was found (or
// the error of looking for it). A completion whose publish a lease document
// tracks (Item.PublishInLease) is Published unless that document still
// lists it: one read, for a redelivery of a request a host finished.
func (s *Store) duplicate(ctx context.Context, prev *Item, err error) (Accepted, error) {
	if err != nil {
		return Accepted{}, err
	}
	if prev.Status == ItemDone && prev.PublishInLease {
		ld, err := find[LeaseDoc](ctx, s.leaseRef(prev.SessionID))
		if err != nil {
			return Accepted{}, err
		}
		_, listed := ld.publishing()[prev.RequestID]
		prev.Published = !listed
	}
	return Accepted{Item: *prev, Duplicate: true}, nil
}

// decodeSnap decodes a document read into a new T; a missing one is nil.
func decodeSnap[T any](snap *firestore.DocumentSnapshot) (*T, error) {
	if !snap.Exists() {
		return nil, nil
	}
	v := new(T)
	if err := snap.DataTo(v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", snap.Ref.Path, err)
	}
	return v, nil
}

// fieldUpdates is an update of every field of the struct *v, by its
// firestore tags: what a Set of v writes (the document has no other
// fields), as an Update, which, unlike Set, takes an update-time
// precondition. A zero field tagged omitempty is deleted, as Set leaves it
// out.
func fieldUpdates(v any) []firestore.Update {
	rv := reflect.ValueOf(v).Elem()
	rt := rv.Type()
	ups := make([]firestore.Update, 0, rt.NumField())
	for i := 0; i < rt.NumField(); i++ {
		name, opts, _ := strings.Cut(rt.Field(i).Tag.Get("firestore"), ",")
		if name == "-" || !rt.Field(i).IsExported() {
			continue
		}
		if name == "" {
			name = rt.Field(i).Name
		}
		var value any = rv.Field(i).Interface()
		if opts == "omitempty" && rv.Field(i).IsZero() {
			value = firestore.Delete
		}
		ups = append(ups, firestore.Update{FieldPath: firestore.FieldPath{name}, Value: value})
	}
	return ups
}
