package session_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
)

// An answer and the checkpoint that holds its changes are one commit: a
// host that lost its lease records neither, and the next host restores
// the checkpoint the last answer was recorded with.
func TestFinishRecordsTheCheckpointWithTheAnswer(t *testing.T) {
	ctx := context.Background()
	dispatcher, host, _ := newStores(t)
	for _, r := range []string{"r1", "r2"} {
		if _, err := enqueue(ctx, dispatcher, "s1", r); err != nil {
			t.Fatal(err)
		}
	}
	lease, err := host.Acquire(ctx, "s1", "exec-1", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"r1", "r2"} {
		if _, ok, err := host.Start(ctx, lease, session.Item{RequestID: r}); err != nil || !ok {
			t.Fatalf("start %s: %v %v", r, ok, err)
		}
	}
	cp := &session.Checkpoint{Object: "sessions/s1/checkpoints/1.manifest.gz", Format: session.FormatManifest, Generation: 7}
	if _, err := host.Finish(ctx, lease, time.Time{}, &api.Completion{RequestID: "r1", SessionID: "s1", Op: api.OpExec, Status: api.StatusOK}, nil, cp); err != nil {
		t.Fatal(err)
	}
	if lease.Checkpoint != cp {
		t.Errorf("the lease does not carry the checkpoint just committed")
	}
	// The lease lapses, the reaper takes the session from its host, and
	// another host takes it: the first host's next answer and checkpoint
	// are both refused.
	time.Sleep(5 * time.Millisecond) // past the 1 ms lease
	if _, recovered, err := host.RecoverHost(ctx, "s1"); err != nil || !recovered {
		t.Fatalf("recover the lapsed host: %v %v", recovered, err)
	}
	next, err := host.Acquire(ctx, "s1", "exec-2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	stale := &session.Checkpoint{Object: "sessions/s1/checkpoints/2.manifest.gz", Format: session.FormatManifest}
	if _, err := host.Finish(ctx, lease, time.Time{}, &api.Completion{RequestID: "r2", SessionID: "s1", Op: api.OpExec, Status: api.StatusOK}, nil, stale); !errors.Is(err, session.ErrLeaseLost) {
		t.Fatalf("finish under a lost lease: %v, want ErrLeaseLost", err)
	}
	if next.Checkpoint == nil || next.Checkpoint.Object != cp.Object || next.Checkpoint.Format != session.FormatManifest || next.Checkpoint.Generation != 7 {
		t.Fatalf("the next host restores %+v, want %+v", next.Checkpoint, cp)
	}
}

// SweepBlobs deletes only blobs that no checkpoint references and that
// were stored before the time it is given.
func TestSweepBlobsKeepsLiveAndRecentBlobs(t *testing.T) {
	ctx := context.Background()
	_, host, _ := newStores(t)
	put := func(name, content string) {
		t.Helper()
		if err := host.PutBlob(ctx, "s1", name, int64(len(content)), strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	put("live", "l")
	put("orphan", "o")
	// The local Cloud Storage runs on this machine's clock.
	before := time.Now()
	put("recent", "r")
	n, err := host.SweepBlobs(ctx, "s1", map[string]bool{"live": true}, before)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("swept %d blobs, want 1", n)
	}
	for name, want := range map[string]bool{"live": true, "orphan": false, "recent": true} {
		r, err := host.GetBlob(ctx, "s1", name)
		if err == nil {
			io.Copy(io.Discard, r)
			r.Close()
		}
		if got := err == nil; got != want {
			t.Errorf("blob %s kept: %v, want %v (%v)", name, got, want, err)
		}
	}
}

// A blob whose reader fails is not stored: a file that changed while it
// was uploaded never lands under a name its bytes do not have.
func TestPutBlobStoresNothingWhenTheReaderFails(t *testing.T) {
	ctx := context.Background()
	_, host, _ := newStores(t)
	r := io.MultiReader(strings.NewReader("partial"), failingReader{})
	if err := host.PutBlob(ctx, "s1", "broken", 100, r); err == nil {
		t.Fatal("PutBlob with a failing reader succeeded")
	}
	if _, err := host.GetBlob(ctx, "s1", "broken"); err == nil {
		t.Fatal("a blob whose reader failed was stored")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("file changed") }

// A session's checkpoint blobs live outside sessions/ (where the bucket's
// lifecycle rule deletes by age) and go with the rest of the session when
// it is purged; another session's stay.
func TestPurgeDeletesTheSessionsBlobs(t *testing.T) {
	ctx := context.Background()
	_, host, _ := newStores(t)
	for _, s := range []string{"s1", "s2"} {
		if err := host.PutBlob(ctx, s, "b", 1, strings.NewReader("b")); err != nil {
			t.Fatal(err)
		}
	}
	if err := host.Purge(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"s1": false, "s2": true} {
		r, err := host.GetBlob(ctx, s, "b")
		if err == nil {
			r.Close()
		}
		if got := err == nil; got != want {
			t.Errorf("session %s's blob kept: %v, want %v (%v)", s, got, want, err)
		}
	}
}
