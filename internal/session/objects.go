package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
)

// objectPrefix is where a session's objects live in the bucket.
func objectPrefix(sessionID string) string { return "sessions/" + sessionID + "/" }

// ObjectURI names an object of the sessions' bucket as gs://bucket/name.
func (s *Store) ObjectURI(name string) string { return "gs://" + s.cfg.Bucket + "/" + name }

// OutputObject is the object that keeps the whole of one output stream
// ("stdout" or "stderr") of a request.
func OutputObject(sessionID, requestID, stream string) string {
	return objectPrefix(sessionID) + "results/" + requestID + "/" + stream
}

// CreateObject returns a writer of a new object; writing fails if the
// object exists, so two hosts can never clobber each other's objects.
// Closing the writer commits it.
func (s *Store) CreateObject(ctx context.Context, name, contentType string) *storage.Writer {
	w := s.gcs.Bucket(s.cfg.Bucket).Object(name).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ContentType = contentType
	return w
}

// CheckpointObject names the object of the lease's seq-th checkpoint.
func CheckpointObject(lease *Lease, seq int) string {
	return fmt.Sprintf("%scheckpoints/%010d-%06d.tar.gz", objectPrefix(lease.SessionID), lease.Epoch, seq)
}

// CommitCheckpoint makes cp the session's checkpoint, under the lease, and
// deletes the object of the one it replaces.
func (s *Store) CommitCheckpoint(ctx context.Context, lease *Lease, cp Checkpoint) error {
	var old *Checkpoint
	err := s.fenced(ctx, lease, func(tx *firestore.Transaction, now time.Time) error {
		st, err := txGet[StateDoc](tx, s.stateRef(lease.SessionID))
		if err != nil {
			return err
		}
		if st != nil {
			old = st.Checkpoint
		}
		cp.Epoch, cp.CreatedAt = lease.Epoch, now
		state := map[string]any{"checkpoint": cp, "expire_at": now.Add(s.cfg.TTL)}
		return tx.Set(s.stateRef(lease.SessionID), state, firestore.Merge([]string{"checkpoint"}, []string{"expire_at"}))
	})
	if err != nil {
		return fmt.Errorf("commit checkpoint %s of session %s: %w", cp.Object, lease.SessionID, err)
	}
	lease.Checkpoint = &cp
	if old != nil && old.Object != cp.Object {
		// A leftover object costs storage until the session is purged, not
		// correctness: the pointer moved already.
		if err := s.gcs.Bucket(s.cfg.Bucket).Object(old.Object).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
			return fmt.Errorf("delete replaced checkpoint %s: %w", old.Object, err)
		}
	}
	return nil
}

// OpenCheckpoint reads the checkpoint's object at its recorded generation.
func (s *Store) OpenCheckpoint(ctx context.Context, cp *Checkpoint) (io.ReadCloser, error) {
	r, err := s.gcs.Bucket(s.cfg.Bucket).Object(cp.Object).Generation(cp.Generation).NewReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint %s: %w", cp.Object, err)
	}
	return r, nil
}

// deleteObjects deletes every object whose name starts with prefix.
func (s *Store) deleteObjects(ctx context.Context, prefix string) error {
	b := s.gcs.Bucket(s.cfg.Bucket)
	it := b.Objects(ctx, &storage.Query{Prefix: prefix})
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list objects under %s: %w", prefix, err)
		}
		if err := b.Object(a.Name).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
			return fmt.Errorf("delete object %s: %w", a.Name, err)
		}
	}
}
