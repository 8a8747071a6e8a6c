package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
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
	// Expires is when the lease lapses unless renewed.
	Expires time.Time
	// Acquired is when the host took the lease.
	Acquired time.Time
	// LaunchRequestedAt is when the launch this host answers was claimed
	// (zero when the host was not launched for a claim).
	LaunchRequestedAt time.Time
	// Checkpoint and Shell are the session's state when the lease was taken.
	Checkpoint *Checkpoint
	Shell      Shell
	// version is the lease document's update time after this lease's last
	// renewal; zero until the first renewal, or when its outcome is unknown.
	version time.Time
	// Unreleased is true when the previous host never gave the lease up
	// (it died or was taken away): it may have left uploads behind.
	Unreleased bool
}

// Acquire takes the session's lease for execution for ttl. It fails with
// ErrLeaseHeld while another host holds the lease, even one whose lease
// lapsed: such a host may still be running commands until the reaper has
// made sure its execution ended (RecoverHost). It fails with ErrDestroyed
// or ErrNotFound when there is no session to host.
func (s *Store) Acquire(ctx context.Context, sessionID, execution string, ttl time.Duration) (*Lease, error) {
	var lease *Lease
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		doc, err := txGet[Doc](tx, s.sessionRef(sessionID))
		if err != nil {
			return err
		}
		ld, err := txGet[LeaseDoc](tx, s.leaseRef(sessionID))
		if err != nil {
			return err
		}
		st, err := txGet[StateDoc](tx, s.stateRef(sessionID))
		if err != nil {
			return err
		}
		next, fence, l, err := s.rules.Acquire(sessionID, execution, ttl, doc, ld, st, s.now())
		if err != nil {
			return err
		}
		lease = l
		if err := tx.Set(s.fenceRef(sessionID), fence); err != nil {
			return err
		}
		return tx.Set(s.leaseRef(sessionID), next)
	})
	if err != nil {
		return nil, fmt.Errorf("acquire lease of session %s for %s: %w", sessionID, execution, err)
	}
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

// Renew extends the lease to ttl from now, and returns the new expiry.
//
// It is one write with no read: the update is conditioned on the lease
// document's update time as this lease last wrote it, so it fails if
// anyone else wrote the document since (only a host taking over or the
// session's destroy do, and both raise the epoch). Only the first renewal
// of a lease, and one after a write whose outcome is unknown (a timeout),
// read the document first to learn its update time, and check the epoch
// there. Renew must not be called concurrently for the same lease.
func (s *Store) Renew(ctx context.Context, lease *Lease, ttl time.Duration) error {
	ref := s.leaseRef(lease.SessionID)
	if lease.version.IsZero() {
		snap, err := ref.Get(ctx)
		if status.Code(err) == codes.NotFound {
			return fmt.Errorf("renew lease of session %s: %w", lease.SessionID, ErrLeaseLost)
		}
		if err != nil {
			return fmt.Errorf("renew lease of session %s: read it: %w", lease.SessionID, err)
		}
		var ld LeaseDoc
		if err := snap.DataTo(&ld); err != nil {
			return fmt.Errorf("renew lease of session %s: decode it: %w", lease.SessionID, err)
		}
		if ld.Epoch != lease.Epoch || ld.Execution != lease.Execution {
			return fmt.Errorf("renew lease of session %s: %w", lease.SessionID, ErrLeaseLost)
		}
		lease.version = snap.UpdateTime
	}
	now := s.now()
	expires := now.Add(ttl)
	wr, err := ref.Update(ctx, []firestore.Update{{Path: "lease_expires", Value: expires}, {Path: "expire_at", Value: now.Add(s.cfg.TTL)}},
		firestore.LastUpdateTime(lease.version))
	switch status.Code(err) {
	case codes.OK:
		lease.version, lease.Expires = wr.UpdateTime, expires
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

// errLeaseMoved says that a renewal found the lease document changed; a
// renewal that reads it (the next one) says whether the lease is lost.
var errLeaseMoved = errors.New("lease document changed since this host last renewed it")

// LeaseMoved reports whether a renewal failed only because the lease
// document changed: worth one more renewal at once, which reads it.
func LeaseMoved(err error) bool { return errors.Is(err, errLeaseMoved) }

// Release gives the lease up, unless requests are queued (ErrWorkPending):
// a host leaves only when no request would be stranded. With force it
// leaves anyway (the execution is ending), and queued requests get a new
// host from the reaper.
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
		if err := s.setFence(tx, lease.SessionID, lease.Epoch, "", now); err != nil {
			return err
		}
		return tx.Update(s.leaseRef(lease.SessionID), []firestore.Update{{Path: "execution", Value: ""}, {Path: "lease_expires", Value: time.Time{}}})
	})
	if err != nil {
		return fmt.Errorf("release lease of session %s: %w", lease.SessionID, err)
	}
	return nil
}

// Queued returns up to limit of the session's queued items, in sequence
// order.
func (s *Store) Queued(ctx context.Context, sessionID string, limit int) ([]Item, error) {
	items, _, err := readAll[Item](s.queuedQuery(sessionID).Limit(limit).Documents(ctx), "inbox of session "+sessionID)
	return items, err
}

// WatchQueued signals on the returned channel whenever the session's queued
// items change, until ctx ends. A host waits on it instead of polling: a
// listener that ends with an error is opened again (with backoff), and its
// first snapshot signals, so that a change made while it was down is seen.
func (s *Store) WatchQueued(ctx context.Context, sessionID string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go retry.Restart(ctx, retry.Firestore, nil, "inbox listener of session "+sessionID, func(ctx context.Context) error {
		it := s.queuedQuery(sessionID).Snapshots(ctx)
		defer it.Stop()
		for {
			if _, err := it.Next(); err != nil {
				return err
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	})
	return ch
}

// Start marks a queued item running under the lease. It returns the item as
// stored, or ok=false when the item is no longer queued.
func (s *Store) Start(ctx context.Context, lease *Lease, requestID string) (item *Item, ok bool, err error) {
	iref := s.itemRef(lease.SessionID, requestID)
	err = s.fenced(ctx, lease, func(tx *firestore.Transaction, now time.Time) error {
		it, err := txGet[Item](tx, iref)
		if err != nil {
			return err
		}
		item, ok = it, StartItem(it, lease, now)
		if !ok {
			return nil
		}
		return tx.Set(iref, *it)
	})
	if err != nil {
		return nil, false, fmt.Errorf("start request %s of session %s: %w", requestID, lease.SessionID, err)
	}
	return item, ok, nil
}

// Finish records the completion of a running item under the lease, with the
// shell state it left (nil keeps the session's) and the checkpoint of the
// workspace it left (nil keeps the session's), in one transaction: the
// answer is recorded only with the state it reports. It returns the
// completion bytes to publish. A completion is recorded once: finishing an
// item that is already done returns what was recorded.
//
// A completion whose JSON is over api.MaxCompletionBytes is stored whole
// in its result object, and its Summary is recorded and published.
func (s *Store) Finish(ctx context.Context, lease *Lease, c *api.Completion, shell *Shell, cp *Checkpoint) ([]byte, error) {
	b, err := s.fit(ctx, lease.SessionID, c)
	if err != nil {
		return nil, err
	}
	iref := s.itemRef(lease.SessionID, c.RequestID)
	var recorded []byte
	err = s.fenced(ctx, lease, func(tx *firestore.Transaction, now time.Time) error {
		it, err := txGet[Item](tx, iref)
		if err != nil {
			return err
		}
		if it == nil {
			return fmt.Errorf("inbox item %s: %w", c.RequestID, ErrNotFound)
		}
		var first bool
		if recorded, first = FinishItem(it, b, now); !first {
			return nil
		}
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
			if err := tx.Set(s.stateRef(lease.SessionID), state, firestore.Merge(fields...)); err != nil {
				return err
			}
		}
		return tx.Set(iref, *it)
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
