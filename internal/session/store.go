package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/internal/retry"
)

// Errors callers branch on.
var (
	// ErrLeaseLost: the session's epoch moved past the caller's lease; the
	// caller must stop at once and write nothing more.
	ErrLeaseLost = errors.New("session lease lost")
	// ErrLeaseHeld: another live host holds the session's lease.
	ErrLeaseHeld = errors.New("session lease held by another host")
	// ErrWorkPending: a host may not leave while requests are queued.
	ErrWorkPending = errors.New("session has queued requests")
	// ErrNotFound: no such session or inbox item.
	ErrNotFound = errors.New("not found")
	// ErrDestroyed: the session was destroyed.
	ErrDestroyed = errors.New("session destroyed")
)

// Config tunes the store. Zero fields take the defaults below.
type Config struct {
	// Bucket holds the sessions' objects.
	Bucket string
	// TTL is how long a session lives without activity (default 7 days).
	TTL time.Duration
	// LaunchTimeout is how long a claimed launch may take to produce a
	// host before another launch may be claimed (default 5 minutes).
	LaunchTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultTTL           = 7 * 24 * time.Hour
	DefaultLaunchTimeout = 5 * time.Minute
)

// Store reads and writes sessions.
type Store struct {
	fs    *firestore.Client
	gcs   *storage.Client
	cfg   Config
	rules Rules
	// seen is what Enqueue last saw of the sessions it served (appendItem).
	seen *seenSessions
}

// NewStore returns a store over the given clients.
func NewStore(fs *firestore.Client, gcs *storage.Client, cfg Config) *Store {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.LaunchTimeout <= 0 {
		cfg.LaunchTimeout = DefaultLaunchTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{fs: fs, gcs: gcs, cfg: cfg, rules: cfg.Rules(), seen: newSeenSessions(maxSeenSessions)}
}

// Bucket is the bucket that holds the sessions' objects.
func (s *Store) Bucket() string { return s.cfg.Bucket }

func (s *Store) now() time.Time { return s.cfg.Now().UTC() }

func (s *Store) sessionRef(id string) *firestore.DocumentRef {
	return s.fs.Collection(sessionsCollection).Doc(id)
}

func (s *Store) leaseRef(id string) *firestore.DocumentRef {
	return s.sessionRef(id).Collection(runtimeCollection).Doc(leaseDoc)
}

func (s *Store) fenceRef(id string) *firestore.DocumentRef {
	return s.sessionRef(id).Collection(runtimeCollection).Doc(fenceDoc)
}

// setFence records, in tx, the epoch and host that the session's writes
// are fenced by from now on ("" when no host may write).
func (s *Store) setFence(tx *firestore.Transaction, id string, epoch int64, host string, now time.Time) error {
	return tx.Set(s.fenceRef(id), s.rules.fence(epoch, host, now))
}

func (s *Store) stateRef(id string) *firestore.DocumentRef {
	return s.sessionRef(id).Collection(runtimeCollection).Doc(stateDoc)
}

func (s *Store) itemRef(sessionID, requestID string) *firestore.DocumentRef {
	return s.sessionRef(sessionID).Collection(inboxCollection).Doc(requestID)
}

// queuedQuery lists a session's queued items in sequence order.
func (s *Store) queuedQuery(sessionID string) firestore.Query {
	return s.sessionRef(sessionID).Collection(inboxCollection).
		Where("status", "==", ItemQueued).OrderBy("seq", firestore.Asc)
}

// txGet reads a document in a transaction into a new T; a missing document
// is (nil, nil).
func txGet[T any](tx *firestore.Transaction, ref *firestore.DocumentRef) (*T, error) {
	snap, err := tx.Get(ref)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref.Path, err)
	}
	v := new(T)
	if err := snap.DataTo(v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", ref.Path, err)
	}
	return v, nil
}

// readAll decodes every document it yields into a T, in order, with its
// reference, and stops it. what names the documents in errors.
func readAll[T any](it *firestore.DocumentIterator, what string) ([]T, []*firestore.DocumentRef, error) {
	defer it.Stop()
	var out []T
	var refs []*firestore.DocumentRef
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, refs, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", what, err)
		}
		var v T
		if err := snap.DataTo(&v); err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", snap.Ref.Path, err)
		}
		out, refs = append(out, v), append(refs, snap.Ref)
	}
}

// get reads a document outside a transaction, retrying transient failures
// (unless called from a transaction's function: see runTx); a missing one
// is ErrNotFound.
func get[T any](ctx context.Context, ref *firestore.DocumentRef) (*T, error) {
	var snap *firestore.DocumentSnapshot
	read := func(ctx context.Context) error {
		var err error
		snap, err = ref.Get(ctx)
		return err
	}
	var err error
	if inTx(ctx) {
		// The transaction's retry covers it (runTx).
		err = read(ctx)
	} else {
		err = retry.Do(ctx, retry.Firestore, nil, "read "+ref.Path, read)
	}
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("%s: %w", ref.Path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref.Path, err)
	}
	v := new(T)
	if err := snap.DataTo(v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", ref.Path, err)
	}
	return v, nil
}

// hasQueued reports, in tx, whether the session has a queued item. Being a
// query of the transaction, a queued item added before the commit aborts
// it, so a decision made on "nothing queued" holds.
func (s *Store) hasQueued(tx *firestore.Transaction, sessionID string) (bool, error) {
	it := tx.Documents(s.queuedQuery(sessionID).Limit(1))
	defer it.Stop()
	_, err := it.Next()
	if errors.Is(err, iterator.Done) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for queued requests of session %s: %w", sessionID, err)
	}
	return true, nil
}

// find reads a document outside any transaction, so that it locks
// nothing; a missing one is (nil, nil).
func find[T any](ctx context.Context, ref *firestore.DocumentRef) (*T, error) {
	v, err := get[T](ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// Session returns the session document.
func (s *Store) Session(ctx context.Context, id string) (*Doc, error) {
	return get[Doc](ctx, s.sessionRef(id))
}

// Item returns an inbox item.
func (s *Store) Item(ctx context.Context, sessionID, requestID string) (*Item, error) {
	return get[Item](ctx, s.itemRef(sessionID, requestID))
}

// runTx runs f in a Firestore transaction, retrying it when it aborts on a
// conflicting write. The retries are sandrun's own, quick and capped by
// retry.Firestore and ctx, rather than the client's, which wait up to
// seconds between attempts: a host's lease renewal cannot wait that long.
//
// The store is the one layer that retries Firestore calls (package retry):
// a transaction here, a plain read in get. A plain read made inside a
// transaction's function is not retried on its own: its failure fails the
// attempt, which runTx retries whole.
func (s *Store) runTx(ctx context.Context, f func(context.Context, *firestore.Transaction) error) error {
	ctx = context.WithValue(ctx, inTxKey{}, true)
	return retry.Do(ctx, retry.FirestoreTransaction, nil, "transaction", func(ctx context.Context) error {
		return s.fs.RunTransaction(ctx, f, firestore.MaxAttempts(1))
	})
}

// inTxKey marks the context of a transaction's function (runTx).
type inTxKey struct{}

func inTx(ctx context.Context) bool { return ctx.Value(inTxKey{}) != nil }
