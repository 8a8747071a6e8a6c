package firestore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"
	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
)

// changeString renders a DocumentChange as "kind:id", e.g. "added:a".
func changeString(c fs.DocumentChange) string {
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
		out = append(out, changeString(c))
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
			changes = append(changes, changeString(c))
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
	e.fakeOnly(t, "breaks the fake's Listen streams from inside")
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
	e.fakeOnly(t, "moves the fake's clock past its history")
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
	e.fakeOnly(t, "closes the fake")
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

// setX commits {x: x} to the document at path (relative to the documents
// root) directly on the server, bypassing gRPC, so that writes can follow
// each other closely.
func setX(t *testing.T, srv *Server, path string, x int64) {
	w := &write{name: dbPath + "/documents/" + path, update: true,
		fields: map[string]*pb.Value{"x": {ValueType: &pb.Value_IntegerValue{IntegerValue: x}}}}
	if _, _, err := srv.commit(context.Background(), dbPath, []*write{w}, nil); err != nil {
		t.Error(err)
	}
}

// TestListenManyListeners runs listeners on distinct collections while
// writers commit to all of them at once, as sandrun's session hosts do.
// Each round writes, to every collection, a document the query does not
// match and then one it does, between writes to other collections and
// elsewhere; every listener must then report its round's write. A
// listener that misses a wake-up for its last write of a round never
// reports it. Before the fix it failed within a few rounds under -race.
func TestListenManyListeners(t *testing.T) {
	const listeners, writers, rounds = 16, 4, 150
	e := newTestEnv(t)
	e.fakeOnly(t, "writes through the fake's internals")
	ctx := ctxT(t)
	seen := make([]chan int64, listeners) // the x of document d, as each listener's snapshots show it
	for i := range listeners {
		// Stop may not run beside Next: the listener's goroutine ends with
		// its context first.
		lctx, cancel := context.WithCancel(ctx)
		it := e.client.Collection(fmt.Sprintf("s%d", i)).Where("x", ">", 0).Snapshots(lctx)
		exited := make(chan struct{})
		t.Cleanup(func() { cancel(); <-exited; it.Stop() })
		if _, err := it.Next(); err != nil {
			close(exited)
			t.Fatal(err)
		}
		seen[i] = make(chan int64, rounds)
		go func() {
			defer close(exited)
			for {
				snap, err := it.Next()
				if err != nil {
					return // its context ended with the test
				}
				for _, c := range snap.Changes {
					if c.Doc.Ref.ID == "d" {
						seen[i] <- c.Doc.Data()["x"].(int64)
					}
				}
			}
		}()
	}
	last := make([]int64, listeners)
	for round := int64(1); round <= rounds; round++ {
		work := make(chan int, listeners)
		for i := range listeners {
			work <- i
		}
		close(work)
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				for i := range work {
					setX(t, e.srv, "elsewhere/z", round)
					setX(t, e.srv, fmt.Sprintf("s%d/skip", i), -round) // in scope, not matched
					setX(t, e.srv, fmt.Sprintf("s%d/d", i), round)
				}
			})
		}
		wg.Wait()
		deadline := time.After(10 * time.Second)
		for i, ch := range seen {
			for last[i] != round {
				select {
				case last[i] = <-ch:
				case <-deadline:
					t.Fatalf("round %d: listener %d still shows x=%d 10s after the round's writes", round, i, last[i])
				}
			}
		}
	}
}

// TestWatchWakes checks which commits wake which Listen targets: a query
// target wakes for its own collection only, a documents target for its
// documents, a collection group target for its collection ID anywhere;
// wake-ups coalesce without being lost, and unwatch ends them.
func TestWatchWakes(t *testing.T) {
	skipOnOfficial(t, "a unit test of the fake's store")
	const root = dbPath + "/documents"
	var offset atomic.Int64
	st := newStore(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }, time.Minute)
	query := func(parent, coll string, group bool) *query {
		q, err := compileQuery(parent, &pb.StructuredQuery{From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: coll, AllDescendants: group}}})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	targets := map[string]*watchTarget{
		"inbox-a": {query: query(root+"/sessions/a", "inbox", false)},
		"doc-a":   {docs: []string{root + "/sessions/a"}},
		"group":   {query: query(root, "inbox", true)},
	}
	watchers := map[string]*watcher{}
	for k, wt := range targets {
		watchers[k] = newWatcher()
		wt.in = wt.interest(watchers[k])
		st.watch(wt.in)
	}
	woken := func() string {
		var out []string
		for k, w := range watchers {
			select {
			case <-w.wake:
				out = append(out, k)
			default:
			}
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	commit := func(names ...string) {
		changes := map[string]*pb.Document{}
		for _, n := range names {
			changes[root+"/"+n] = &pb.Document{Name: root + "/" + n}
		}
		st.mu.Lock()
		st.install(changes, st.nextCommitTime())
		st.mu.Unlock()
	}
	for _, c := range []struct{ doc, want string }{
		{"sessions/a/inbox/1", "group inbox-a"},
		{"sessions/b/inbox/1", "group"},
		{"sessions/a", "doc-a"},
		{"sessions/b", ""},
		{"sessions/a/outbox/1", ""},
		{"sessions/a/inbox/1/inbox/2", "group"},
		{"inbox/3", "group"},
	} {
		commit(c.doc)
		if got := woken(); got != c.want {
			t.Errorf("commit to %s woke %q, want %q", c.doc, got, c.want)
		}
	}
	// Two commits before the watcher looks leave one wake-up pending.
	commit("sessions/a/inbox/1")
	commit("sessions/a/inbox/2")
	if got := woken(); got != "group inbox-a" {
		t.Errorf("after two commits: woke %q", got)
	}
	if got := woken(); got != "" {
		t.Errorf("second look: woke %q, want nothing", got)
	}
	for _, wt := range targets {
		st.unwatch(wt.in)
	}
	commit("sessions/a/inbox/1", "sessions/a")
	if got := woken(); got != "" {
		t.Errorf("after unwatch: woke %q", got)
	}
	if len(st.interests) != 0 || len(st.matchers) != 0 {
		t.Errorf("registry not empty after unwatch: %d keys, %d matchers", len(st.interests), len(st.matchers))
	}

	// The collection index forgets documents that pruning drops.
	st.mu.Lock()
	st.install(map[string]*pb.Document{root + "/gone/x": nil, root + "/sessions/b/inbox/1": nil}, st.nextCommitTime())
	offset.Add(int64(2 * time.Minute))
	st.install(map[string]*pb.Document{}, st.nextCommitTime())
	_, inIndex := st.colls[root+"/sessions/b/inbox"]
	_, stillA := st.colls[root+"/sessions/a/inbox"]
	st.mu.Unlock()
	if inIndex || !stillA {
		t.Errorf("after pruning: sessions/b/inbox indexed %v (want false), sessions/a/inbox %v (want true)", inIndex, stillA)
	}
}

func TestListenCollectionGroup(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	it := e.client.CollectionGroup("inbox").Snapshots(ctx)
	t.Cleanup(it.Stop)
	if got := nextChanges(t, it); got != "" {
		t.Fatalf("initial: %q", got)
	}
	if _, err := e.client.Doc("sessions/a/inbox/1").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if got := nextChanges(t, it); got != "added:1" {
		t.Fatalf("after sessions/a/inbox/1: %q", got)
	}
	if _, err := e.client.Doc("sessions/a/outbox/9").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("sessions/b/inbox/2").Set(ctx, map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if got := nextChanges(t, it); got != "added:2" {
		t.Fatalf("after sessions/b/inbox/2: %q", got)
	}
}

// watching counts the interests registered with the store.
func watching(srv *Server) int {
	st := srv.store
	st.mu.RLock()
	defer st.mu.RUnlock()
	n := len(st.matchers)
	for _, ins := range st.interests {
		n += len(ins)
	}
	return n
}

// TestListenUnwatches checks that targets stop being watched when they
// leave the stream: once targets after their first results, removed
// targets, and every target when the stream ends.
func TestListenUnwatches(t *testing.T) {
	e := newTestEnv(t)
	e.fakeOnly(t, "counts the fake's watchers")
	ctx := ctxT(t)
	stream, err := e.gapic(t).Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	add := func(id int32, once bool) {
		t.Helper()
		err := stream.Send(&pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_AddTarget{AddTarget: &pb.Target{
			TargetId: id, Once: once,
			TargetType: &pb.Target_Documents{Documents: &pb.Target_DocumentsTarget{Documents: []string{dbPath + "/documents/c/d"}}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// awaitRemove reads responses up to the REMOVE of target id.
	awaitRemove := func(id int32) {
		t.Helper()
		for {
			res, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if tc := res.GetTargetChange(); tc.GetTargetChangeType() == pb.TargetChange_REMOVE && slices.Equal(tc.TargetIds, []int32{id}) {
				return
			}
		}
	}
	add(1, false)
	add(2, true)
	awaitRemove(2)
	if n := watching(e.srv); n != 1 {
		t.Errorf("after the once target's results: %d interests, want 1", n)
	}
	if err := stream.Send(&pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_RemoveTarget{RemoveTarget: 1}}); err != nil {
		t.Fatal(err)
	}
	awaitRemove(1)
	if n := watching(e.srv); n != 0 {
		t.Errorf("after RemoveTarget: %d interests, want 0", n)
	}
	add(3, false)
	it := e.client.Collection("c").Snapshots(ctx)
	if _, err := it.Next(); err != nil {
		t.Fatal(err)
	}
	it.Stop()
	e.srv.Close() // ends the raw stream and waits for every handler
	if n := watching(e.srv); n != 0 {
		t.Errorf("after the streams ended: %d interests, want 0", n)
	}
}

// TestListenMatchesQuery checks every snapshot of a variety of listeners
// against the same query run at the snapshot's read time, while random
// writes change, move, remove and delete documents. Listeners of queries
// without limit or offset are kept up to date from the changed documents
// alone (watchTarget.incremental); the others by running their query.
func TestListenMatchesQuery(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	m := func() fs.Query { return e.client.Collection("m").Query }
	queries := []struct {
		name string
		q    func() fs.Query
	}{
		{"all", m},
		{"filter", func() fs.Query { return m().Where("x", ">", 3) }},
		{"cursors", func() fs.Query { return m().OrderBy("x", fs.Asc).StartAfter(2).EndAt(7) }},
		{"select", func() fs.Query { return m().Select("x").Where("y", "==", true) }},
		{"in", func() fs.Query { return m().Where("x", "in", []int{1, 3, 5}) }},
		{"limit", func() fs.Query { return m().OrderBy("x", fs.Desc).Limit(3) }},
		{"offset", func() fs.Query { return m().OrderBy("x", fs.Asc).Offset(2) }},
		{"group", func() fs.Query { return e.client.CollectionGroup("m").Where("x", "<", 5) }},
	}
	// render lists documents by name: the client orders a snapshot by the
	// query's explicit orders only, not by the implicit order on an
	// inequality's field that a query's results follow.
	render := func(snaps []*fs.DocumentSnapshot) string {
		var out []string
		for _, s := range snaps {
			out = append(out, fmt.Sprintf("%s=%v", s.Ref.Path[len(e.db)+len("/documents/"):], s.Data()))
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	type view struct {
		readTime time.Time
		docs     string
	}
	views := make([]chan view, len(queries))
	for i, q := range queries {
		it := q.q().Snapshots(ctx)
		t.Cleanup(it.Stop)
		views[i] = make(chan view, 1000)
		go func() {
			for {
				snap, err := it.Next()
				if err != nil {
					return // it.Stop at the end of the test
				}
				all, err := snap.Documents.GetAll()
				if err != nil {
					t.Error(err)
					return
				}
				views[i] <- view{snap.ReadTime, render(all)}
			}
		}()
	}
	oracle := func(q fs.Query, readTime time.Time) string {
		if !readTime.IsZero() {
			q.WithReadOptions(fs.ReadTime(readTime))
		}
		all, err := q.Documents(ctx).GetAll()
		if err != nil {
			t.Fatal(err)
		}
		return render(all)
	}
	check := func(i int, v view) {
		t.Helper()
		if e.srv == nil {
			// Google's emulator, under load, has sent a snapshot whose read
			// time is after a write that the snapshot lacks (seen once in a
			// loaded run: the cursors query's listener showed "" where the
			// query at that read time returned m/d). Only the fake is held
			// to every snapshot; both must come to the final results below.
			return
		}
		if want := oracle(queries[i].q(), v.readTime); v.docs != want {
			t.Fatalf("%s at %s: listener shows %q, query returns %q", queries[i].name, v.readTime.Format(time.RFC3339Nano), v.docs, want)
		}
	}

	rng := rand.New(rand.NewPCG(1, 2))
	paths := []string{"m/a", "m/b", "m/c", "m/d", "m/e", "m/f", "p/q/m/g", "p/q/m/h", "other/z"}
	for range 150 {
		ref := e.client.Doc(paths[rng.IntN(len(paths))])
		var err error
		switch rng.IntN(6) {
		case 0:
			_, err = ref.Delete(ctx)
		case 1:
			_, err = ref.Set(ctx, map[string]any{"y": rng.IntN(2) == 0}, fs.MergeAll) // may leave x missing
		default:
			_, err = ref.Set(ctx, map[string]any{"x": rng.IntN(10), "y": rng.IntN(2) == 0})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every snapshot so far must be right, and each listener must come to
	// show the final results.
	for i, q := range queries {
		want := oracle(q.q(), time.Time{})
		deadline := time.After(10 * time.Second)
		for got := ""; got != want; {
			select {
			case v := <-views[i]:
				check(i, v)
				got = v.docs
			case <-deadline:
				t.Fatalf("%s: listener shows %q 10s after the last write, want %q", q.name, got, want)
			}
		}
	}
}
