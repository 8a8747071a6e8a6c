package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
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
	return Fit(ctx, s, sessionID, c)
}

// ObjectWriter writes new objects of the sessions' bucket.
type ObjectWriter interface {
	WriteNewObject(ctx context.Context, name, contentType string, r io.Reader) (int64, error)
	ObjectURI(name string) string
}

// Fit returns the JSON of c to record and publish (see Store.Finish),
// storing c whole with w when it is too large to record.
func Fit(ctx context.Context, w ObjectWriter, sessionID string, c *api.Completion) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode completion of request %s: %w", c.RequestID, err)
	}
	if len(b) <= api.MaxCompletionBytes {
		return b, nil
	}
	name := CompletionObject(sessionID, c.RequestID)
	sum := c.Summary(w.ObjectURI(name))
	if _, err := w.WriteNewObject(ctx, name, "application/json", bytes.NewReader(b)); err != nil {
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

// PutNewObject stores data as a new object (see CreateObject) and returns
// the object's generation.
func (s *Store) PutNewObject(ctx context.Context, name, contentType string, data []byte) (generation int64, err error) {
	w := s.CreateObject(ctx, name, contentType)
	if _, err := copyToObject(w, bytes.NewReader(data)); err != nil {
		return 0, err
	}
	return w.Attrs().Generation, nil
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

// ManifestObject names the object of the lease's seq-th incremental
// checkpoint: its manifest.
func ManifestObject(lease *Lease, seq int) string {
	return fmt.Sprintf("%scheckpoints/%010d-%06d.manifest.gz", objectPrefix(lease.SessionID), lease.Epoch, seq)
}

// blobPrefix is where a session's checkpoint blobs live: outside
// sessions/, because the bucket's lifecycle rule deletes every object
// under sessions/ by its age, and a blob stays live for as long as a
// checkpoint names it, however old it is (an unchanged file of a session
// in use for weeks). Purge deletes them with the rest of the session.
func blobPrefix(sessionID string) string { return "blobs/" + sessionID + "/" }

// BlobStore keeps the checkpoint blobs of sessions.
type BlobStore interface {
	PutBlob(ctx context.Context, sessionID, name string, size int64, r io.Reader) error
	GetBlob(ctx context.Context, sessionID, name string) (io.ReadCloser, error)
}

// Blobs are a session's checkpoint blobs, with the Put and Get that
// workspace.Blobs asks for.
type Blobs struct {
	store     BlobStore
	sessionID string
}

// SessionBlobs returns the blobs of a session that store keeps.
func SessionBlobs(store BlobStore, sessionID string) Blobs { return Blobs{store, sessionID} }

// Blobs returns the session's checkpoint blobs.
func (s *Store) Blobs(sessionID string) Blobs { return SessionBlobs(s, sessionID) }

// Put stores a blob (PutBlob).
func (b Blobs) Put(ctx context.Context, name string, size int64, r io.Reader) error {
	return b.store.PutBlob(ctx, b.sessionID, name, size, r)
}

// Get reads a blob (GetBlob).
func (b Blobs) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return b.store.GetBlob(ctx, b.sessionID, name)
}

// PutBlob stores a content-addressed checkpoint blob of the session. It
// sets no precondition: every writer of a name writes the same bytes, and a
// rewrite gives the object a new generation and creation time, which
// SweepBlobs respects. When r fails, the upload is abandoned and nothing is
// stored.
func (s *Store) PutBlob(ctx context.Context, sessionID, name string, size int64, r io.Reader) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.gcs.Bucket(s.cfg.Bucket).Object(blobPrefix(sessionID) + name).NewWriter(wctx)
	w.ContentType = "application/octet-stream"
	if size < smallBlob {
		// The writer's default buffer is 16 MiB per upload; most blobs are
		// small files, many uploaded at once.
		w.ChunkSize = smallBlob
	}
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		w.Close()
		return fmt.Errorf("write blob %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write blob %s: %w", name, err)
	}
	return nil
}

// smallBlob is the upload buffer of a blob that fits in it, the smallest
// Cloud Storage's resumable uploads take: the upload keeps its retries.
const smallBlob = 256 << 10

// GetBlob reads a checkpoint blob of the session.
func (s *Store) GetBlob(ctx context.Context, sessionID, name string) (io.ReadCloser, error) {
	r, err := s.gcs.Bucket(s.cfg.Bucket).Object(blobPrefix(sessionID) + name).NewReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", name, err)
	}
	return r, nil
}

// DeleteBlobs deletes checkpoint blobs of the session; one already gone is
// no error.
func (s *Store) DeleteBlobs(ctx context.Context, sessionID string, names []string) error {
	b := s.gcs.Bucket(s.cfg.Bucket)
	for _, name := range names {
		if err := b.Object(blobPrefix(sessionID) + name).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
			return fmt.Errorf("delete blob %s: %w", name, err)
		}
	}
	return nil
}

// SweepBlobs deletes the session's blobs that live does not hold and that
// were created before before: the uploads of hosts that died before their
// checkpoint was committed. The caller holds the lease and passes a time
// before which no other host could have written (its lease was current
// then, less a margin for clocks), so that a blob a later host stored is
// never swept; the delete is conditional on the generation listed, so a
// blob rewritten since is kept. It returns how many blobs it deleted.
func (s *Store) SweepBlobs(ctx context.Context, sessionID string, live map[string]bool, before time.Time) (int, error) {
	b := s.gcs.Bucket(s.cfg.Bucket)
	prefix := blobPrefix(sessionID)
	it := b.Objects(ctx, &storage.Query{Prefix: prefix})
	deleted := 0
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return deleted, nil
		}
		if err != nil {
			return deleted, fmt.Errorf("list blobs of session %s: %w", sessionID, err)
		}
		if live[a.Name[len(prefix):]] || !a.Created.Before(before) {
			continue
		}
		err = b.Object(a.Name).If(storage.Conditions{GenerationMatch: a.Generation}).Delete(ctx)
		if err != nil && !errors.Is(err, storage.ErrObjectNotExist) && !isPrecondition(err) {
			return deleted, fmt.Errorf("delete blob %s: %w", a.Name, err)
		}
		if err == nil {
			deleted++
		}
	}
}

// CommitCheckpoint makes cp the session's checkpoint, under the lease. The
// host deletes what it replaced (DeleteObject, DeleteBlobs): only it knows
// which blobs the new checkpoint still needs.
func (s *Store) CommitCheckpoint(ctx context.Context, lease *Lease, cp Checkpoint) error {
	err := s.fenced(ctx, lease, func(tx *firestore.Transaction, now time.Time) error {
		cp.Epoch, cp.CreatedAt = lease.Epoch, now
		state := map[string]any{"checkpoint": cp, "expire_at": now.Add(s.cfg.TTL)}
		return tx.Set(s.stateRef(lease.SessionID), state, firestore.Merge([]string{"checkpoint"}, []string{"expire_at"}))
	})
	if err != nil {
		return fmt.Errorf("commit checkpoint %s of session %s: %w", cp.Object, lease.SessionID, err)
	}
	lease.Checkpoint = &cp
	return nil
}

// DeleteObject deletes an object of the bucket; one already gone is no
// error.
func (s *Store) DeleteObject(ctx context.Context, name string) error {
	if err := s.gcs.Bucket(s.cfg.Bucket).Object(name).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("delete object %s: %w", name, err)
	}
	return nil
}

// ReadCheckpoint reads the whole of a checkpoint's object at its recorded
// generation: an incremental checkpoint's manifest.
func (s *Store) ReadCheckpoint(ctx context.Context, cp *Checkpoint) ([]byte, error) {
	r, err := s.OpenCheckpoint(ctx, cp)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", cp.Object, err)
	}
	return b, nil
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

// isPrecondition reports whether err is Cloud Storage refusing a write for
// its precondition.
func isPrecondition(err error) bool {
	var g *googleapi.Error
	return errors.As(err, &g) && g.Code == http.StatusPreconditionFailed
}
