package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/sandrun/sandrun/api"
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

// CompletionObject is the object that keeps the whole completion of a
// request whose JSON is over api.MaxCompletionBytes.
func CompletionObject(sessionID, requestID string) string {
	return objectPrefix(sessionID) + "results/" + requestID + "/completion.json"
}

// fit returns the JSON of c to record and publish: c's own when it is at
// most api.MaxCompletionBytes, else its Summary, after c was stored whole
// in its CompletionObject. When that store fails, the request is answered
// INTERNAL instead: its answer is lost, but the host keeps serving.
func (s *Store) fit(ctx context.Context, sessionID string, c *api.Completion) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode completion of request %s: %w", c.RequestID, err)
	}
	if len(b) <= api.MaxCompletionBytes {
		return b, nil
	}
	name := CompletionObject(sessionID, c.RequestID)
	sum := c.Summary(s.ObjectURI(name))
	if _, err := s.WriteNewObject(ctx, name, "application/json", bytes.NewReader(b)); err != nil {
		sum = c.Summary("")
		sum.Fail(api.CodeInternal, fmt.Sprintf("the answer was %d bytes of JSON, over the %d a completion carries, and could not be stored in Cloud Storage: %v", len(b), api.MaxCompletionBytes, err))
	}
	if b, err = json.Marshal(sum); err != nil {
		return nil, fmt.Errorf("encode completion of request %s: %w", c.RequestID, err)
	}
	if len(b) > api.MaxCompletionBytes {
		// Only an error message or a path of absurd length gets here.
		b, err = json.Marshal(api.ErrorCompletion(c.RequestID, c.SessionID, c.Op, api.CodeInternal,
			fmt.Sprintf("even the summary of the answer is %d bytes of JSON, over the %d a completion carries", len(b), api.MaxCompletionBytes)))
		if err != nil {
			return nil, fmt.Errorf("encode completion of request %s: %w", c.RequestID, err)
		}
	}
	return b, nil
}

// CreateObject returns a writer of a new object; writing fails if the
// object exists, so two hosts can never clobber each other's objects.
// Closing the writer commits it.
func (s *Store) CreateObject(ctx context.Context, name, contentType string) *storage.Writer {
	w := s.gcs.Bucket(s.cfg.Bucket).Object(name).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ContentType = contentType
	return w
}

// WriteNewObject copies what r holds into a new object (see CreateObject)
// and returns how many bytes it copied.
func (s *Store) WriteNewObject(ctx context.Context, name, contentType string, r io.Reader) (int64, error) {
	return copyToObject(s.CreateObject(ctx, name, contentType), r)
}

// copyToObject copies r into the object w writes and commits it.
func copyToObject(w *storage.Writer, r io.Reader) (int64, error) {
	n, err := io.Copy(w, r)
	if err != nil {
		w.Close()
		return n, fmt.Errorf("write object %s: %w", w.Name, err)
	}
	if err := w.Close(); err != nil {
		return n, fmt.Errorf("write object %s: %w", w.Name, err)
	}
	return n, nil
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
