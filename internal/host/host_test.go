package host

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
)

// The host's decisions on the in-memory store with a fake publisher: real
// shells and files, no cloud.

// fakePublisher records the completions published, in order.
type fakePublisher struct {
	mu        sync.Mutex
	published []api.Completion
}

func (p *fakePublisher) PublishCompletion(ctx context.Context, data []byte, traceparent string) error {
	var c api.Completion
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published = append(p.published, c)
	return nil
}

func (p *fakePublisher) byRequest() map[string]api.Completion {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]api.Completion{}
	for _, c := range p.published {
		out[c.RequestID] = c
	}
	return out
}

type hostWorld struct {
	store *memstore.Store
	pub   *fakePublisher
	// workspace is every host's workspace, as on Cloud Run, where each
	// execution has the image's; empty: a new directory for each host.
	workspace string
}

func newHostWorld() *hostWorld {
	clock := memstore.NewClock(time.Now())
	return &hostWorld{store: memstore.New(session.Config{Bucket: "b", Now: clock.Now}), pub: &fakePublisher{}}
}

func (w *hostWorld) enqueue(t *testing.T, req api.Request) {
	t.Helper()
	raw, _ := json.Marshal(req)
	if _, err := w.store.Enqueue(context.Background(), &req, raw, ""); err != nil {
		t.Fatal(err)
	}
}

// run hosts the session as execution until the host leaves.
func (w *hostWorld) run(t *testing.T, sessionID, execution string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws := w.workspace
	if ws == "" {
		ws = t.TempDir()
	}
	cfg := Config{SessionID: sessionID, Execution: execution, Workspace: ws, IdleTimeout: 50 * time.Millisecond,
		BaseEnv: map[string]string{"PATH": os.Getenv("PATH")}}
	return Run(ctx, cfg, w.store, w.pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func exec(id, command string) api.Request {
	return api.Request{RequestID: id, SessionID: "s1", Op: api.OpExec, Command: command}
}

func TestRunServesInOrderKeepsTheShellAndLeaves(t *testing.T) {
	ctx := context.Background()
	w := newHostWorld()
	w.enqueue(t, exec("r1", "export A=1; mkdir sub; echo hi > sub/f; cd sub"))
	w.enqueue(t, exec("r2", "echo $A; cat f"))
	if err := w.run(t, "s1", "exec-1"); err != nil {
		t.Fatal(err)
	}
	got := w.pub.byRequest()
	if len(got) != 2 || got["r1"].Status != api.StatusOK || got["r2"].Stdout != "1\nhi\n" {
		t.Fatalf("published %+v", w.pub.published)
	}
	for _, id := range []string{"r1", "r2"} {
		if it, _ := w.store.Item(ctx, "s1", id); it.Status != session.ItemDone {
			t.Errorf("%s: %+v, want done", id, it)
		}
	}
	// Known published: the reaper has nothing to publish again.
	if us, err := w.store.Unpublished(ctx, time.Now().Add(time.Hour), 100); err != nil || len(us) != 0 {
		t.Errorf("unpublished after the host left: %+v %v", us, err)
	}
	// It left cleanly, and the next host starts where it ended.
	next, err := w.store.Acquire(ctx, "s1", "exec-2", time.Minute)
	if err != nil || next.Unreleased || next.Checkpoint == nil {
		t.Fatalf("next lease %+v, %v: want a released session with a checkpoint", next, err)
	}
	if err := w.store.Release(ctx, next, true); err != nil {
		t.Fatal(err)
	}
	w.enqueue(t, exec("r3", "pwd | sed 's|.*/||'; echo $A; cat f"))
	if err := w.run(t, "s1", "exec-3"); err != nil {
		t.Fatal(err)
	}
	if c := w.pub.byRequest()["r3"]; c.Stdout != "sub\n1\nhi\n" {
		t.Errorf("the next host answered %+v, want the shell and files the first left", c)
	}
}

func TestRunAnswersWhatAnEarlierHostLeftRunningHostLost(t *testing.T) {
	ctx := context.Background()
	w := newHostWorld()
	w.enqueue(t, exec("r1", "sleep 100"))
	w.enqueue(t, exec("r2", "echo two"))
	old, err := w.store.Acquire(ctx, "s1", "exec-0", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := w.store.Start(ctx, old, session.Item{RequestID: "r1"}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The old host leaves without finishing r1 (its execution ended).
	if err := w.store.Release(ctx, old, true); err != nil {
		t.Fatal(err)
	}
	if err := w.run(t, "s1", "exec-1"); err != nil {
		t.Fatal(err)
	}
	got := w.pub.byRequest()
	if c := got["r1"]; c.Error == nil || c.Error.Code != api.CodeHostLost {
		t.Errorf("r1 answered %+v, want HOST_LOST", c)
	}
	if c := got["r2"]; c.Stdout != "two\n" {
		t.Errorf("r2 answered %+v", c)
	}
}

func TestRunWithNothingToHostLeaves(t *testing.T) {
	w := newHostWorld()
	if err := w.run(t, "missing", "exec-1"); err != nil {
		t.Errorf("hosting a missing session: %v", err)
	}
	w.enqueue(t, api.Request{RequestID: "c", SessionID: "s1", Op: api.OpSessionCreate})
	if _, _, err := w.store.Destroy(context.Background(), "s1", "test"); err != nil {
		t.Fatal(err)
	}
	if err := w.run(t, "s1", "exec-1"); err != nil {
		t.Errorf("hosting a destroyed session: %v", err)
	}
	if len(w.pub.published) != 0 {
		t.Errorf("published %+v", w.pub.published)
	}
}

func TestRunDestroyOvertakesAndEndsTheSession(t *testing.T) {
	ctx := context.Background()
	w := newHostWorld()
	w.enqueue(t, exec("r1", "echo one"))
	old, err := w.store.Acquire(ctx, "s1", "exec-0", time.Minute) // hosted: the destroy is queued
	if err != nil {
		t.Fatal(err)
	}
	w.enqueue(t, api.Request{RequestID: "d", SessionID: "s1", Op: api.OpSessionDestroy})
	w.enqueue(t, exec("r2", "echo two"))
	if err := w.store.Release(ctx, old, true); err != nil {
		t.Fatal(err)
	}
	if err := w.run(t, "s1", "exec-1"); err != nil {
		t.Fatal(err)
	}
	got := w.pub.byRequest()
	// A destroy overtakes what is queued, which it answers ABORTED.
	if len(got) != 3 || got["d"].Status != api.StatusOK {
		t.Errorf("answers %+v, want d ok", w.pub.published)
	}
	for _, id := range []string{"r1", "r2"} {
		if c := got[id]; c.Error == nil || c.Error.Code != api.CodeAborted {
			t.Errorf("%s answered %+v, want ABORTED", id, c)
		}
	}
	if doc, _ := w.store.Session(ctx, "s1"); doc.Status != session.StatusDestroyed || doc.PurgePending {
		t.Errorf("session %+v, want destroyed and purged", doc)
	}
}

func TestEachCommandAnswersOnlyItsOwnOutput(t *testing.T) {
	w := newHostWorld()
	w.enqueue(t, exec("r1", "echo one; echo err >&2"))
	w.enqueue(t, exec("r2", "printf two"))
	w.enqueue(t, exec("r3", "true"))
	// r4 leaves a process outside its process group, which this host
	// (no subreaper) does not adopt, and which writes to r4's output
	// while r5 runs.
	w.enqueue(t, exec("r4", "setsid sh -c 'sleep 0.3; echo late' & sleep 0.1"))
	w.enqueue(t, exec("r5", "sleep 1; echo five"))
	if err := w.run(t, "s1", "exec-1"); err != nil {
		t.Fatal(err)
	}
	got := w.pub.byRequest()
	for id, want := range map[string][2]string{"r1": {"one\n", "err\n"}, "r2": {"two", ""}, "r3": {"", ""}, "r5": {"five\n", ""}} {
		if c := got[id]; c.Status != api.StatusOK || c.Stdout != want[0] || c.Stderr != want[1] {
			t.Errorf("%s answered stdout %q stderr %q (%s), want %q and %q", id, c.Stdout, c.Stderr, c.Status, want[0], want[1])
		}
	}
}

// A session that has never had a file in its workspace has nothing to
// checkpoint: its requests store no objects; the first file makes a
// checkpoint, which the next host restores.
func TestEmptyWorkspaceIsCheckpointedOnceItHoldsAFile(t *testing.T) {
	w := newHostWorld()
	w.workspace = t.TempDir()
	w.enqueue(t, exec("r1", "true"))
	w.enqueue(t, exec("r2", "echo out > /dev/null; cd /"))
	if err := w.run(t, "s1", "exec-1"); err != nil {
		t.Fatal(err)
	}
	if cp := w.checkpoint(t, "s1"); cp != nil {
		t.Fatalf("checkpoint %+v: want none of an empty workspace", cp)
	}
	if got := w.pub.byRequest(); got["r1"].Status != api.StatusOK || got["r2"].Status != api.StatusOK {
		t.Fatalf("published %+v", w.pub.published)
	}
	w.enqueue(t, exec("r3", "pwd; cd; echo hi > f"))
	if err := w.run(t, "s1", "exec-2"); err != nil {
		t.Fatal(err)
	}
	first := w.checkpoint(t, "s1")
	if first == nil {
		t.Fatal("no checkpoint: want the file checkpointed")
	}
	if c := w.pub.byRequest()["r3"]; c.Stdout != "/\n" {
		t.Errorf("r3 answered %+v: want the working directory the first host left", c)
	}
	w.enqueue(t, exec("r4", "cat f"))
	w.enqueue(t, exec("r5", "echo bye > f"))
	if err := w.run(t, "s1", "exec-3"); err != nil {
		t.Fatal(err)
	}
	if c := w.pub.byRequest()["r4"]; c.Stdout != "hi\n" {
		t.Errorf("the next host answered %+v, want the file the last one wrote", c)
	}
	// The checkpoint r5 made replaced the first, whose manifest went.
	if now := w.checkpoint(t, "s1"); now == nil || now.Object == first.Object {
		t.Fatalf("checkpoint %+v after a change, first %+v", now, first)
	}
	if _, err := w.store.OpenObject(context.Background(), first.Object); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the replaced checkpoint's manifest: %v, want it deleted", err)
	}
}

// checkpoint is the session's checkpoint, read as the next host would
// take it up (a lease taken and given back).
func (w *hostWorld) checkpoint(t *testing.T, sessionID string) *session.Checkpoint {
	t.Helper()
	lease, err := w.store.Acquire(context.Background(), sessionID, "exec-look", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.store.Release(context.Background(), lease, true); err != nil {
		t.Fatal(err)
	}
	return lease.Checkpoint
}
