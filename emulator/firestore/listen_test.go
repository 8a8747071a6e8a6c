package firestore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"
)

// change renders a DocumentChange as "kind:id", e.g. "added:a".
func change(c fs.DocumentChange) string {
	kind := map[fs.DocumentChangeKind]string{fs.DocumentAdded: "added", fs.DocumentModified: "modified", fs.DocumentRemoved: "removed"}[c.Kind]
	return kind + ":" + c.Doc.Ref.ID
}

func nextChanges(t *testing.T, it *fs.QuerySnapshotIterator) string {
	t.Helper()
	snap, err := it.Next()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	var out []string
	for _, c := range snap.Changes {
		out = append(out, change(c))
	}
	return strings.Join(out, ",")
}

func TestListenQuery(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	it := e.client.Collection("w").Where("x", ">", 0).Snapshots(ctx)
	t.Cleanup(it.Stop)
	if got := nextChanges(t, it); got != "" {
		t.Fatalf("initial snapshot changes %q, want none", got)
	}
	a := e.client.Doc("w/a")
	steps := []struct {
		write func() error
		want  string
	}{
		{func() error { _, err := a.Set(ctx, map[string]any{"x": 1}); return err }, "added:a"},
		{func() error { _, err := a.Set(ctx, map[string]any{"x": 2}); return err }, "modified:a"},
		{func() error { _, err := e.client.Doc("w/b").Set(ctx, map[string]any{"x": 5}); return err }, "added:b"},
		{func() error { _, err := a.Set(ctx, map[string]any{"x": -1}); return err }, "removed:a"}, // leaves the query
		{func() error { _, err := e.client.Doc("w/b").Delete(ctx); return err }, "removed:b"},
		{func() error { _, err := a.Update(ctx, []fs.Update{{Path: "x", Value: 3}}); return err }, "added:a"},
	}
	for i, s := range steps {
		if err := s.write(); err != nil {
			t.Fatal(err)
		}
		if got := nextChanges(t, it); got != s.want {
			t.Fatalf("step %d: changes %q, want %q", i, got, s.want)
		}
	}
	// A write outside the query changes nothing the listener sees; the next
	// snapshot is for the next relevant write.
	if _, err := e.client.Doc("elsewhere/z").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("w/c").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if got := nextChanges(t, it); got != "added:c" {
		t.Fatalf("changes %q, want added:c", got)
	}
}

func TestListenLimitQuery(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	for i, id := range []string{"a", "b"} {
		if _, err := e.client.Doc("top/"+id).Set(ctx, map[string]any{"score": 10 * (i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	it := e.client.Collection("top").OrderBy("score", fs.Desc).Limit(2).Snapshots(ctx)
	t.Cleanup(it.Stop)
	if got := nextChanges(t, it); got != "added:b,added:a" {
		t.Fatalf("initial: %q", got)
	}
	// A higher score pushes a out of the top two.
	if _, err := e.client.Doc("top/c").Set(ctx, map[string]any{"score": 30}); err != nil {
		t.Fatal(err)
	}
	if got := nextChanges(t, it); got != "removed:a,added:c" {
		t.Fatalf("after c: %q", got)
	}
}

func TestListenDocument(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	d := e.client.Doc("w/doc")
	it := d.Snapshots(ctx)
	t.Cleanup(it.Stop)
	next := func() *fs.DocumentSnapshot {
		t.Helper()
		snap, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	if snap := next(); snap.Exists() {
		t.Fatal("missing document reported as existing")
	}
	if _, err := d.Create(ctx, map[string]any{"v": 1}); err != nil {
		t.Fatal(err)
	}
	if snap := next(); !snap.Exists() || snap.Data()["v"] != int64(1) {
		t.Fatalf("after create: %v", snap.Data())
	}
	if _, err := d.Update(ctx, []fs.Update{{Path: "v", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if snap := next(); snap.Data()["v"] != int64(2) {
		t.Fatalf("after update: %v", snap.Data())
	}
	if _, err := d.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if snap := next(); snap.Exists() {
		t.Fatal("deleted document reported as existing")
	}
}

// collectChanges reads snapshots until n changes have arrived and returns
// them, sorted, with the final snapshot's document IDs.
func collectChanges(t *testing.T, it *fs.QuerySnapshotIterator, n int) (changes []string, docs []string) {
	t.Helper()
	var snap *fs.QuerySnapshot
	for len(changes) < n {
		var err error
		if snap, err = it.Next(); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		for _, c := range snap.Changes {
			changes = append(changes, change(c))
		}
	}
	all, err := snap.Documents.GetAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		docs = append(docs, fmt.Sprintf("%s=%v", d.Ref.ID, d.Data()["x"]))
	}
	slices.Sort(changes)
	return changes, docs
}

// TestListenResume breaks the stream under a listener and checks that the
// reconnected listener reports exactly the changes made meanwhile: none
// missed, none repeated.
func TestListenResume(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	for _, id := range []string{"a", "c"} {
		if _, err := e.client.Doc("r/"+id).Set(ctx, map[string]any{"x": 1}); err != nil {
			t.Fatal(err)
		}
	}
	it := e.client.Collection("r").Snapshots(ctx)
	t.Cleanup(it.Stop)
	if got := nextChanges(t, it); got != "added:a,added:c" {
		t.Fatalf("initial: %q", got)
	}

	e.srv.breakListenStreams()
	if _, err := e.client.Doc("r/b").Set(ctx, map[string]any{"x": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("r/a").Set(ctx, map[string]any{"x": 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("r/c").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	changes, docs := collectChanges(t, it, 3)
	if got, want := strings.Join(changes, " "), "added:b modified:a removed:c"; got != want {
		t.Fatalf("changes after resume %q, want %q", got, want)
	}
	if got := strings.Join(docs, " "); got != "a=3 b=2" {
		t.Fatalf("documents after resume: %s", got)
	}

	// Still live after the resume, and broken again mid-way.
	if _, err := e.client.Doc("r/d").Set(ctx, map[string]any{"x": 4}); err != nil {
		t.Fatal(err)
	}
	if got := nextChanges(t, it); got != "added:d" {
		t.Fatalf("after resume: %q", got)
	}
	e.srv.breakListenStreams()
	if _, err := e.client.Doc("r/b").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := nextChanges(t, it); got != "removed:b" {
		t.Fatalf("after second break: %q", got)
	}
}

// TestListenResumeAfterHistory resumes with a token older than the kept
// history: the server resets the target and the client still sees exactly
// what changed.
func TestListenResumeAfterHistory(t *testing.T) {
	var offset atomic.Int64 // nanoseconds added to the real clock
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	e := newTestEnvWith(t, Options{Now: clock, History: time.Minute})
	ctx := ctxT(t)
	for _, id := range []string{"a", "b"} {
		if _, err := e.client.Doc("h/"+id).Set(ctx, map[string]any{"x": 1}); err != nil {
			t.Fatal(err)
		}
	}
	it := e.client.Collection("h").Snapshots(ctx)
	t.Cleanup(it.Stop)
	if got := nextChanges(t, it); got != "added:a,added:b" {
		t.Fatalf("initial: %q", got)
	}
	// Writes elsewhere move the history past the listener's resume token
	// (its token only advances when its own results change).
	for range 2 {
		offset.Add(int64(2 * time.Minute))
		if _, err := e.client.Doc("unrelated/x").Set(ctx, map[string]any{"t": clock()}); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.breakListenStreams()
	if _, err := e.client.Doc("h/b").Set(ctx, map[string]any{"x": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("h/a").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	changes, docs := collectChanges(t, it, 2)
	if got, want := strings.Join(changes, " "), "modified:b removed:a"; got != want {
		t.Fatalf("changes after reset %q, want %q", got, want)
	}
	if got := strings.Join(docs, " "); got != "b=2" {
		t.Fatalf("documents after reset: %s", got)
	}
	if n := e.srv.resets.Load(); n != 1 {
		t.Fatalf("%d resets, want 1", n)
	}
}

func TestCloseEndsListeners(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	it := e.client.Doc("w/x").Snapshots(ctx)
	defer it.Stop()
	if _, err := it.Next(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.srv.Close()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a listener open")
	}
}
