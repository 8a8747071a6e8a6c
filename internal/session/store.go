package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"
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
	fs  *firestore.Client
	gcs *storage.Client
	cfg Config
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
	return &Store{fs: fs, gcs: gcs, cfg: cfg}
}

// Bucket is the bucket that holds the sessions' objects.
func (s *Store) Bucket() string { return s.cfg.Bucket }

func (s *Store) now() time.Time { return s.cfg.Now().UTC() }

func (s *Store) sessionRef(id string) *firestore.DocumentRef {
	return s.fs.Collection(sessionsCollection).Doc(id)
}

func (s *Store) itemRef(sessionID, requestID string) *firestore.DocumentRef {
	return s.sessionRef(sessionID).Collection(inboxCollection).Doc(requestID)
}

// getSession reads a session document in a transaction; a missing one is
// (nil, nil).
func getSession(tx *firestore.Transaction, ref *firestore.DocumentRef) (*Doc, error) {
	snap, err := tx.Get(ref)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read session %s: %w", ref.ID, err)
	}
	var d Doc
	if err := snap.DataTo(&d); err != nil {
		return nil, fmt.Errorf("decode session %s: %w", ref.ID, err)
	}
	return &d, nil
}

// getItem reads an inbox item in a transaction; a missing one is (nil, nil).
func getItem(tx *firestore.Transaction, ref *firestore.DocumentRef) (*Item, error) {
	snap, err := tx.Get(ref)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read inbox item %s: %w", ref.Path, err)
	}
	var it Item
	if err := snap.DataTo(&it); err != nil {
		return nil, fmt.Errorf("decode inbox item %s: %w", ref.Path, err)
	}
	return &it, nil
}

// Session returns the session document.
func (s *Store) Session(ctx context.Context, id string) (*Doc, error) {
	snap, err := s.sessionRef(id).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("session %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read session %s: %w", id, err)
	}
	var d Doc
	if err := snap.DataTo(&d); err != nil {
		return nil, fmt.Errorf("decode session %s: %w", id, err)
	}
	return &d, nil
}

// Item returns an inbox item.
func (s *Store) Item(ctx context.Context, sessionID, requestID string) (*Item, error) {
	snap, err := s.itemRef(sessionID, requestID).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("request %s of session %s: %w", requestID, sessionID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read request %s of session %s: %w", requestID, sessionID, err)
	}
	var it Item
	if err := snap.DataTo(&it); err != nil {
		return nil, fmt.Errorf("decode request %s of session %s: %w", requestID, sessionID, err)
	}
	return &it, nil
}

// hostLive reports whether d has a host whose lease has not expired.
func (d *Doc) hostLive(now time.Time) bool {
	return d.Host != nil && d.Host.LeaseExpires.After(now)
}

// launchInFlight reports whether d has a launch claimed recently enough
// that its host may still come.
func (s *Store) launchInFlight(d *Doc, now time.Time) bool {
	return d.Launch != nil && now.Sub(d.Launch.RequestedAt) < s.cfg.LaunchTimeout
}

// runTx runs f in a Firestore transaction, retrying it when it aborts on a
// conflicting write. The retries are sandrun's own, quick and capped by
// retry.Firestore and ctx, rather than the client's, which wait up to
// seconds between attempts: a host's lease renewal cannot wait that long.
func (s *Store) runTx(ctx context.Context, f func(context.Context, *firestore.Transaction) error) error {
	return retry.Do(ctx, retry.Firestore, nil, "transaction", func(ctx context.Context) error {
		return s.fs.RunTransaction(ctx, f, firestore.MaxAttempts(1))
	})
}
