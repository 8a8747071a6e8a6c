package session

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/sandrun/sandrun/api"
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
}

// Acquire takes the session's lease for execution for ttl. It fails with
// ErrLeaseHeld while another host's lease is live, ErrDestroyed or
// ErrNotFound when there is no session to host.
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
		switch {
		case doc == nil:
			return ErrNotFound
		case doc.Status == StatusDestroyed:
			return ErrDestroyed
		}
		now := s.now()
		if ld.live(now) && ld.Execution != execution {
			return ErrLeaseHeld
		}
		next := LeaseDoc{Execution: execution, LeaseExpires: now.Add(ttl), StartedAt: now, ExpireAt: now.Add(s.cfg.TTL)}
		if ld != nil {
			next.Epoch = ld.Epoch
		}
		next.Epoch++
		lease = &Lease{SessionID: sessionID, Execution: execution, Epoch: next.Epoch, Expires: next.LeaseExpires, Acquired: now}
		if doc.Launch != nil {
			next.LaunchID = doc.Launch.ID
			lease.LaunchRequestedAt = doc.Launch.RequestedAt
		}
		if st != nil {
			lease.Checkpoint, lease.Shell = st.Checkpoint, st.Shell
		}
		return tx.Set(s.leaseRef(sessionID), next)
	})
	if err != nil {
		return nil, fmt.Errorf("acquire lease of session %s for %s: %w", sessionID, execution, err)
	}
	return lease, nil
}

// fenced runs f in a transaction after checking, in it, that lease is
// current. f may read more before it writes.
func (s *Store) fenced(ctx context.Context, lease *Lease, f func(tx *firestore.Transaction, now time.Time) error) error {
	return s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		ld, err := txGet[LeaseDoc](tx, s.leaseRef(lease.SessionID))
		if err != nil {
			return err
		}
		if ld == nil || ld.Epoch != lease.Epoch || ld.Execution != lease.Execution {
			return ErrLeaseLost
		}
		return f(tx, s.now())
	})
}

// Renew extends the lease by ttl from now.
func (s *Store) Renew(ctx context.Context, lease *Lease, ttl time.Duration) error {
	var expires time.Time
	err := s.fenced(ctx, lease, func(tx *firestore.Transaction, now time.Time) error {
		expires = now.Add(ttl)
		return tx.Update(s.leaseRef(lease.SessionID), []firestore.Update{{Path: "lease_expires", Value: expires}, {Path: "expire_at", Value: now.Add(s.cfg.TTL)}})
	})
	if err != nil {
		return fmt.Errorf("renew lease of session %s: %w", lease.SessionID, err)
	}
	lease.Expires = expires
	return nil
}

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
// items change, until ctx ends. A host waits on it instead of polling.
func (s *Store) WatchQueued(ctx context.Context, sessionID string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		it := s.queuedQuery(sessionID).Snapshots(ctx)
		defer it.Stop()
		for {
			if _, err := it.Next(); err != nil {
				// The iterator ends with ctx; on any other error the host
				// falls back to its own periodic look.
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
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
		if it == nil || it.Status != ItemQueued {
			item, ok = it, false
			return nil
		}
		it.Status, it.StartedAt, it.Epoch, it.Execution = ItemRunning, now, lease.Epoch, lease.Execution
		item, ok = it, true
		return tx.Set(iref, *it)
	})
	if err != nil {
		return nil, false, fmt.Errorf("start request %s of session %s: %w", requestID, lease.SessionID, err)
	}
	return item, ok, nil
}

// Finish records the completion of a running item under the lease, with the
// shell state it left (nil keeps the session's), and returns the completion
// bytes to publish. A completion is recorded once: finishing an item that is
// already done returns what was recorded.
//
// A completion whose JSON is over api.MaxCompletionBytes is stored whole
// in its result object, and its Summary is recorded and published.
func (s *Store) Finish(ctx context.Context, lease *Lease, c *api.Completion, shell *Shell) ([]byte, error) {
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
		if it.Status == ItemDone {
			recorded = []byte(it.Completion)
			return nil
		}
		it.Status, it.Completion, it.FinishedAt = ItemDone, string(b), now
		recorded = b
		if shell != nil {
			// Merge names whole fields: the shell replaces the old one (an
			// unset variable goes), the checkpoint stays.
			state := map[string]any{"shell": *shell, "expire_at": now.Add(s.cfg.TTL)}
			if err := tx.Set(s.stateRef(lease.SessionID), state, firestore.Merge([]string{"shell"}, []string{"expire_at"})); err != nil {
				return err
			}
		}
		return tx.Set(iref, *it)
	})
	if err != nil {
		return nil, fmt.Errorf("finish request %s of session %s: %w", c.RequestID, lease.SessionID, err)
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
	if err != nil || !ld.live(s.now()) {
		return "", err
	}
	return ld.Execution, nil
}
