package session

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
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
}

// Enqueue accepts a valid request: de-duplicates it by request id, and
// either appends it to the session's inbox with the next sequence number or,
// for what needs no host, answers it. raw is the request's JSON as received.
func (s *Store) Enqueue(ctx context.Context, req *api.Request, raw []byte, traceparent string) (Accepted, error) {
	for {
		acc, err := s.enqueue(ctx, req, raw, traceparent)
		if err == errPurgeFirst {
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

var errPurgeFirst = fmt.Errorf("purge the destroyed session first")

func (s *Store) enqueue(ctx context.Context, req *api.Request, raw []byte, traceparent string) (Accepted, error) {
	var acc Accepted
	sref := s.sessionRef(req.SessionID)
	iref := s.itemRef(req.SessionID, req.RequestID)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		acc = Accepted{}
		prev, err := getItem(tx, iref)
		if err != nil {
			return err
		}
		doc, err := getSession(tx, sref)
		if err != nil {
			return err
		}
		if prev != nil {
			acc.Item, acc.Duplicate = *prev, true
			return nil
		}
		now := s.now()
		item := Item{
			RequestID: req.RequestID, SessionID: req.SessionID, Op: string(req.Op),
			Request: raw, Traceparent: traceparent, AcceptedAt: now,
			ExpireAt: now.Add(s.cfg.TTL),
		}

		if req.Op == api.OpSessionGet {
			// Reading a session neither creates nor wakes it.
			c := &api.Completion{RequestID: req.RequestID, SessionID: req.SessionID, Op: req.Op, Status: api.StatusOK, ExitCode: 0}
			if doc == nil || doc.Status == StatusDestroyed {
				c.ExitCode = -1
				c.Fail(api.CodeNotFound, fmt.Sprintf("session %s does not exist", req.SessionID))
			} else {
				c.Session = doc.info(req.SessionID)
			}
			return s.answer(tx, iref, &item, c, &acc)
		}

		if doc != nil && doc.Status == StatusDestroyed && doc.PurgePending {
			return errPurgeFirst
		}
		live := doc != nil && doc.Status == StatusActive && (doc.hostLive(now) || s.launchInFlight(doc, now) || doc.Queued > 0)

		if req.Op == api.OpSessionDestroy && !live {
			// Nothing runs and nothing waits: destroy it here, no host needed.
			c := &api.Completion{RequestID: req.RequestID, SessionID: req.SessionID, Op: req.Op, Status: api.StatusOK, ExitCode: 0}
			if doc == nil || doc.Status == StatusDestroyed {
				c.ExitCode = -1
				c.Fail(api.CodeNotFound, fmt.Sprintf("session %s does not exist", req.SessionID))
				return s.answer(tx, iref, &item, c, &acc)
			}
			doc.destroy(now)
			c.Session = doc.info(req.SessionID)
			if err := tx.Set(sref, doc); err != nil {
				return err
			}
			acc.Purge = true
			return s.answer(tx, iref, &item, c, &acc)
		}

		if doc == nil || doc.Status == StatusDestroyed {
			doc = s.revive(doc, now)
		}
		doc.UpdatedAt, doc.ExpireAt = now, now.Add(s.cfg.TTL)

		if req.Op == api.OpSessionCreate {
			// Creating a session warms it: a host is launched now so that the
			// first command does not wait for one.
			c := &api.Completion{RequestID: req.RequestID, SessionID: req.SessionID, Op: req.Op, Status: api.StatusOK, ExitCode: 0}
			if !doc.hostLive(now) && !s.launchInFlight(doc, now) {
				acc.Launch = doc.claimLaunch(now)
			}
			c.Session = doc.info(req.SessionID)
			if err := tx.Set(sref, doc); err != nil {
				return err
			}
			return s.answer(tx, iref, &item, c, &acc)
		}

		item.Seq, item.Status = doc.NextSeq, ItemQueued
		doc.NextSeq++
		doc.Queued++
		if !doc.hostLive(now) && !s.launchInFlight(doc, now) {
			acc.Launch = doc.claimLaunch(now)
		}
		if err := tx.Set(sref, doc); err != nil {
			return err
		}
		acc.Item = item
		return tx.Create(iref, item)
	})
	if err != nil {
		if err == errPurgeFirst {
			return Accepted{}, err
		}
		return Accepted{}, fmt.Errorf("enqueue request %s of session %s: %w", req.RequestID, req.SessionID, err)
	}
	return acc, nil
}

// answer records item as done with completion c, unpublished.
func (s *Store) answer(tx *firestore.Transaction, ref *firestore.DocumentRef, item *Item, c *api.Completion, acc *Accepted) error {
	c.Timing.AcceptedAt, c.Timing.StartedAt, c.Timing.FinishedAt = item.AcceptedAt, item.AcceptedAt, item.AcceptedAt
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode completion: %w", err)
	}
	item.Status, item.Completion, item.FinishedAt = ItemDone, string(b), item.AcceptedAt
	acc.Item, acc.Answer = *item, c
	return tx.Create(ref, *item)
}

// Reject records the error completion of a request that is invalid but
// names a valid session and request id, so that a redelivery of it is
// answered the same way. It returns the completion to publish, or, when the
// request id was seen before, the earlier item and duplicate=true.
func (s *Store) Reject(ctx context.Context, c *api.Completion, raw []byte) (item Item, duplicate bool, err error) {
	ref := s.itemRef(c.SessionID, c.RequestID)
	err = s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		prev, err := getItem(tx, ref)
		if err != nil {
			return err
		}
		if prev != nil {
			item, duplicate = *prev, true
			return nil
		}
		now := s.now()
		item = Item{RequestID: c.RequestID, SessionID: c.SessionID, Op: string(c.Op), Request: raw, AcceptedAt: now, ExpireAt: now.Add(s.cfg.TTL)}
		var acc Accepted
		if err := s.answer(tx, ref, &item, c, &acc); err != nil {
			return err
		}
		item, duplicate = acc.Item, false
		return nil
	})
	if err != nil {
		return Item{}, false, fmt.Errorf("record rejection of request %s of session %s: %w", c.RequestID, c.SessionID, err)
	}
	return item, duplicate, nil
}

// revive starts a new life for a session that never existed or was
// destroyed. Its epoch and sequence continue, so fencing and ordering hold
// across lives.
func (s *Store) revive(old *Doc, now time.Time) *Doc {
	d := &Doc{Status: StatusActive, CreatedAt: now}
	if old != nil {
		d.Epoch, d.NextSeq = old.Epoch, old.NextSeq
	}
	return d
}

// claimLaunch records that a launch is under way and returns it.
func (d *Doc) claimLaunch(now time.Time) *Launch {
	d.LaunchAttempts++
	d.Launch = &Launch{ID: uuid.NewString(), RequestedAt: now, Attempts: d.LaunchAttempts}
	return d.Launch
}

// destroy ends the session's life; the caller purges its objects.
func (d *Doc) destroy(now time.Time) {
	d.Status, d.UpdatedAt, d.ExpireAt = StatusDestroyed, now, now
	d.Host, d.Launch, d.Checkpoint, d.Shell, d.Queued = nil, nil, nil, Shell{}, 0
	d.PurgePending = true
}

// info describes the session for a completion.
func (d *Doc) info(id string) *api.SessionInfo {
	cwd, _ := d.Shell.Values()
	si := &api.SessionInfo{SessionID: id, Status: d.Status, CreatedAt: d.CreatedAt, LastActiveAt: d.UpdatedAt, Queued: int(d.Queued), Cwd: strings.ToValidUTF8(cwd, "\uFFFD")}
	if d.Host != nil {
		si.Host = d.Host.Execution
	}
	return si
}

// RecordLaunch notes the execution that a claimed launch started, unless
// the claim was superseded.
func (s *Store) RecordLaunch(ctx context.Context, sessionID, launchID, execution string) error {
	ref := s.sessionRef(sessionID)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		doc, err := getSession(tx, ref)
		if err != nil || doc == nil || doc.Launch == nil || doc.Launch.ID != launchID {
			return err
		}
		return tx.Update(ref, []firestore.Update{{Path: "launch.execution", Value: execution}})
	})
	if err != nil {
		return fmt.Errorf("record launch %s of session %s: %w", execution, sessionID, err)
	}
	return nil
}

// LaunchFailed withdraws a launch claim whose execution could not be
// started, so that the reaper may claim another.
func (s *Store) LaunchFailed(ctx context.Context, sessionID, launchID string) error {
	ref := s.sessionRef(sessionID)
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		doc, err := getSession(tx, ref)
		if err != nil || doc == nil || doc.Launch == nil || doc.Launch.ID != launchID {
			return err
		}
		// Keep the attempt count; only the time says no launch is in flight.
		return tx.Update(ref, []firestore.Update{{Path: "launch.requested_at", Value: time.Time{}}})
	})
	if err != nil {
		return fmt.Errorf("withdraw launch of session %s: %w", sessionID, err)
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
