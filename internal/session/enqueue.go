package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/retry"
)

// Accepted is what Enqueue did with a request.
type Accepted struct {
	// Item is the request's inbox item as stored now.
	Item Item
	// Duplicate is true when the request id was seen before; Item is the
	// earlier one and nothing changed.
	Duplicate bool
	// Launch is set when the caller must launch a host for the session
	// (the claim is recorded; see RecordLaunch and LaunchFailed).
	Launch *Launch
	// Answer is set when the request was answered without a host (it is
	// recorded in Item as done and unpublished): the caller publishes it and
	// calls MarkPublished.
	Answer *api.Completion
	// Purge is set when the request destroyed the session: the caller
	// deletes its objects with Purge.
	Purge bool
	// Aborted are the session's earlier requests that the destroy answered
	// ABORTED (it had no host to run them): the caller publishes them.
	Aborted []Unpublished
}

// Enqueue accepts a valid request: de-duplicates it by request id, and
// either appends it to the session's inbox with the next sequence number or,
// for what needs no host, answers it. raw is the request's JSON as received.
func (s *Store) Enqueue(ctx context.Context, req *api.Request, raw []byte, traceparent string) (Accepted, error) {
	for {
		acc, err := s.enqueue(ctx, req, raw, traceparent)
		if errors.Is(err, errPurgeFirst) {
			// A destroyed session is revived only once its old objects are
			// gone, so a purge can never delete the new session's.
			if err := s.Purge(ctx, req.SessionID); err != nil {
				return Accepted{}, err
			}
			continue
		}
		return acc, err
	}
}

var errPurgeFirst = errors.New("purge the destroyed session first")

func (s *Store) enqueue(ctx context.Context, req *api.Request, raw []byte, traceparent string) (Accepted, error) {
	var (
		acc Accepted
		err error
	)
	if req.Op == api.OpSessionDestroy {
		acc, err = s.enqueueDestroy(ctx, req, raw, traceparent)
	} else {
		acc, err = s.appendItem(ctx, req, raw, traceparent)
	}
	if err != nil {
		if errors.Is(err, errPurgeFirst) {
			return Accepted{}, err
		}
		return Accepted{}, fmt.Errorf("enqueue request %s of session %s: %w", req.RequestID, req.SessionID, err)
	}
	return acc, nil
}

// enqueueDestroy enqueues a session.destroy in a transaction: when no host
// runs the session, the destroy ends its life at once and must fence off a
// host that might come (Destroyed), which needs the lease read and locked.
// Destroys are rare, so the locks a dispatcher killed inside one leaves
// (60 s) are too.
func (s *Store) enqueueDestroy(ctx context.Context, req *api.Request, raw []byte, traceparent string) (Accepted, error) {
	var acc Accepted
	sref, iref := s.sessionRef(req.SessionID), s.itemRef(req.SessionID, req.RequestID)
	// The session changes here without appendItem's memory of it.
	s.seen.forget(req.SessionID)
	// A redelivered request is found without a transaction: one would lock
	// its item, which its host writes when it finishes it, for as long as
	// the dispatcher lives (60 s more if it dies inside the transaction).
	if prev, err := find[Item](ctx, iref); err != nil || prev != nil {
		return s.duplicate(ctx, prev, err)
	}
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		acc = Accepted{}
		prev, err := txGet[Item](tx, iref)
		if err != nil {
			return err
		}
		if prev != nil {
			acc.Item, acc.Duplicate = *prev, true
			return nil
		}
		in := EnqueueInput{Req: req, Raw: raw, Traceparent: traceparent}
		if in.Doc, err = txGet[Doc](tx, sref); err != nil {
			return err
		}
		if in.Lease, err = txGet[LeaseDoc](tx, s.leaseRef(req.SessionID)); err != nil {
			return err
		}
		if in.Doc != nil {
			if in.Shown, err = s.shown(ctx, req.SessionID, in.Lease); err != nil {
				return err
			}
		}
		in.Now = s.now()
		dec, err := s.rules.Enqueue(in)
		if err != nil {
			return err
		}
		if dec.PurgeFirst {
			return errPurgeFirst
		}
		if dec.Destroy {
			unfinished := s.sessionRef(req.SessionID).Collection(inboxCollection).Where("status", "in", []string{ItemQueued, ItemRunning})
			acc.Aborted, err = answerAll(tx, unfinished, in.Now, func(it *Item) *api.Completion {
				return Aborted(it, req.SessionID, DestroyedBy(req.RequestID))
			})
			if err != nil {
				return err
			}
			if err := s.destroy(tx, req.SessionID, in.Doc, in.Lease, in.Now); err != nil {
				return err
			}
			acc.Purge = true
		}
		if dec.Doc != nil {
			if err := tx.Set(sref, dec.Doc); err != nil {
				return err
			}
		}
		acc.Item, acc.Answer, acc.Launch = dec.Item, dec.Answer, dec.Launch
		return tx.Create(iref, dec.Item)
	})
	return acc, err
}

// shown reads what an answer shows of the session besides its documents,
// outside the transaction: a description needs no lock, and locks on the
// state document and the queued items would hold up the session's host
// (Finish, Start) while the dispatcher lives.
func (s *Store) shown(ctx context.Context, id string, lease *LeaseDoc) (Shown, error) {
	st, err := find[StateDoc](ctx, s.stateRef(id))
	if err != nil {
		return Shown{}, err
	}
	var sh Shown
	if st != nil {
		sh.Cwd, _ = st.Shell.Values()
	}
	it := s.queuedQuery(id).Select().Documents(ctx)
	defer it.Stop()
	snaps, err := it.GetAll()
	if err != nil {
		return Shown{}, fmt.Errorf("count queued requests of session %s: %w", id, err)
	}
	for _, snap := range snaps {
		// A request that runs is still queued in its item.
		if lease == nil || !hasMark(lease.Running, snap.Ref.ID) {
			sh.Queued++
		}
	}
	return sh, nil
}

// Reject records the error completion of a request that is invalid but
// names a valid session and request id, so that a redelivery of it is
// answered the same way. It returns the completion to publish, or, when the
// request id was seen before, the earlier item and duplicate=true. Of a
// request over api.MaxRequestBytes it records only the ids and the size.
func (s *Store) Reject(ctx context.Context, c *api.Completion, raw []byte) (item Item, duplicate bool, err error) {
	ref := s.itemRef(c.SessionID, c.RequestID)
	if item, err = s.rules.Reject(c, raw, s.now()); err != nil {
		return Item{}, false, fmt.Errorf("record rejection of request %s of session %s: %w", c.RequestID, c.SessionID, err)
	}
	// One write, no transaction: the create's precondition (the item does
	// not exist) de-duplicates, and nothing is locked. The attempt is
	// retried whole (see runTx).
	ctx = context.WithValue(ctx, inTxKey{}, true)
	err = retry.Do(ctx, retry.Firestore, nil, "record rejection of request "+c.RequestID, func(ctx context.Context) error {
		_, err := ref.Create(ctx, item)
		if status.Code(err) != codes.AlreadyExists {
			return err
		}
		// A redelivery, or our own earlier attempt whose outcome was lost.
		prev, err := find[Item](ctx, ref)
		if err == nil && prev == nil {
			err = fmt.Errorf("%s: %w", ref.Path, ErrNotFound)
		}
		if err == nil {
			item, duplicate = *prev, true
		}
		return err
	})
	if err != nil {
		return Item{}, false, fmt.Errorf("record rejection of request %s of session %s: %w", c.RequestID, c.SessionID, err)
	}
	return item, duplicate, nil
}

// destroy ends the session's life in tx (Rules.Destroyed). The caller
// purges the objects.
func (s *Store) destroy(tx *firestore.Transaction, id string, d *Doc, lease *LeaseDoc, now time.Time) error {
	doc, ld, fd := s.rules.Destroyed(*d, lease, now)
	if err := tx.Set(s.sessionRef(id), doc); err != nil {
		return err
	}
	if err := tx.Set(s.leaseRef(id), ld); err != nil {
		return err
	}
	if err := tx.Set(s.fenceRef(id), fd); err != nil {
		return err
	}
	return tx.Delete(s.stateRef(id))
}

// RecordLaunch notes the execution that a claimed launch started, unless
// the claim was superseded.
func (s *Store) RecordLaunch(ctx context.Context, sessionID, launchID, execution string) error {
	ref := s.sessionRef(sessionID)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		doc, err := txGet[Doc](tx, ref)
		if err != nil || doc == nil || doc.Launch == nil || doc.Launch.ID != launchID {
			return err
		}
		return tx.Update(ref, []firestore.Update{{Path: "launch.execution", Value: execution},
			{Path: "launch.waiting_since", Value: time.Time{}}, {Path: "launch.waiting_for", Value: ""}})
	})
	if err != nil {
		return fmt.Errorf("record launch %s of session %s: %w", execution, sessionID, err)
	}
	return nil
}

// LaunchFailed withdraws a launch claim whose execution could not be
// started or died before taking the lease, so that another may be claimed.
func (s *Store) LaunchFailed(ctx context.Context, sessionID, launchID string) error {
	return s.WithdrawLaunch(ctx, sessionID, launchID, true)
}

// WithdrawLaunch withdraws a launch claim so that another may be claimed.
// counted=false takes it out of the session's launch attempts too: a
// launch that never started an execution (Cloud Run refused it, or its
// launcher stopped first) is no reason to give the session up.
func (s *Store) WithdrawLaunch(ctx context.Context, sessionID, launchID string, counted bool) error {
	ref := s.sessionRef(sessionID)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		doc, err := txGet[Doc](tx, ref)
		if err != nil || doc == nil || doc.Launch == nil || doc.Launch.ID != launchID {
			return err
		}
		// Keep the claim's record; only its time says it is no longer in
		// flight.
		ups := []firestore.Update{{Path: "launch.requested_at", Value: time.Time{}}}
		if !counted && doc.LaunchAttempts > 0 {
			ups = append(ups, firestore.Update{Path: "launch_attempts", Value: doc.LaunchAttempts - 1})
		}
		return tx.Update(ref, ups)
	})
	if err != nil {
		return fmt.Errorf("withdraw launch of session %s: %w", sessionID, err)
	}
	return nil
}

// Published notes that the completion of requestID, which a host holding
// lease recorded or found recorded, reached Pub/Sub. A completion that the
// lease's own Finish recorded is tracked by the lease document
// (LeaseDoc.Publishing): noting it costs nothing now, and the lease's next
// write (a Start, a Finish, a renewal) drops it. Any other (an orphan's
// HOST_LOST, a destroy's answers) is marked in its item (MarkPublished).
func (s *Store) Published(ctx context.Context, lease *Lease, requestID string) error {
	if lease.notePublished(requestID) {
		return nil
	}
	return s.MarkPublished(ctx, lease.SessionID, requestID)
}

// ClearPublishing drops from the session's lease document the completions
// that the reaper republished (Unpublished's InLease), so that they are not
// found again. It writes the lease document only when it holds one of them:
// a live host's next write then reads it first (its version moved), and
// goes on.
func (s *Store) ClearPublishing(ctx context.Context, sessionID string, requestIDs []string) error {
	ref := s.leaseRef(sessionID)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		ld, err := txGet[LeaseDoc](tx, ref)
		if err != nil || ld == nil {
			return err
		}
		next := maps.Clone(ld.Publishing)
		for _, id := range requestIDs {
			delete(next, id)
		}
		if len(next) == len(ld.Publishing) {
			return nil
		}
		return tx.Update(ref, publishingFields(next))
	})
	if err != nil {
		return fmt.Errorf("clear republished completions of session %s: %w", sessionID, err)
	}
	return nil
}

// MarkPublished notes that an item's completion reached Pub/Sub.
func (s *Store) MarkPublished(ctx context.Context, sessionID, requestID string) error {
	_, err := s.itemRef(sessionID, requestID).Update(ctx, []firestore.Update{{Path: "published", Value: true}})
	if err != nil {
		return fmt.Errorf("mark request %s of session %s published: %w", requestID, sessionID, err)
	}
	return nil
}
