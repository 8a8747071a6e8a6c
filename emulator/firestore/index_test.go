package firestore

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// runBoth runs q at version v through the indexes, creating those it can
// use, and by scanning, with the indexes hidden, and returns both results
// as "name@version" lists.
func runBoth(t testing.TB, srv *Server, parent string, sq *pb.StructuredQuery, v int64) (indexed, scanned []string) {
	t.Helper()
	q, err := srv.compileQuery(parent, sq)
	if err != nil {
		t.Fatalf("compile %v: %v", sq, err)
	}
	st := srv.store
	st.mu.Lock()
	defer st.mu.Unlock()
	render := func(ms []match) []string {
		var out []string
		for _, m := range ms {
			out = append(out, fmt.Sprintf("%s@%d", strings.TrimPrefix(m.doc.Name, dbPath+"/documents/"), m.version))
		}
		return out
	}
	indexed = render(q.run(st, v))
	hidden := st.indexes
	st.indexes = map[string]map[string]*fieldIndex{}
	scanned = render(q.run(st, v))
	st.indexes = hidden
	return indexed, scanned
}

// scanBoth returns the names of the documents in collections with ID id
// below parent at version v, found through the store's list of
// collections by ID and by scanning every document.
func scanBoth(st *store, parent, id string, v int64) (grouped, scanned []string) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	st.scanGroup(parent, id, v, func(doc *pb.Document, _ int64) { grouped = append(grouped, doc.Name) })
	st.scan(parent+"/", v, func(doc *pb.Document, _ int64) {
		if _, coll := parentAndCollection(doc.Name); coll == id {
			scanned = append(scanned, doc.Name)
		}
	})
	slices.Sort(grouped)
	slices.Sort(scanned)
	return grouped, scanned
}

func eq(path string, v *pb.Value) *pb.StructuredQuery_Filter {
	return &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_FieldFilter{FieldFilter: &pb.StructuredQuery_FieldFilter{
		Field: &pb.StructuredQuery_FieldReference{FieldPath: path}, Op: pb.StructuredQuery_FieldFilter_EQUAL, Value: v}}}
}

func composite(or bool, fs ...*pb.StructuredQuery_Filter) *pb.StructuredQuery_Filter {
	op := pb.StructuredQuery_CompositeFilter_AND
	if or {
		op = pb.StructuredQuery_CompositeFilter_OR
	}
	return &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_CompositeFilter{CompositeFilter: &pb.StructuredQuery_CompositeFilter{Op: op, Filters: fs}}}
}

// TestIndexedQueriesMatchTheScan writes random documents, rewrites and
// deletes them over many commits (with history short enough that old
// versions are pruned), and checks that random queries, collection group
// and not, return the same documents at the same versions, at the latest
// version and at older ones, with the equality indexes as without.
func TestIndexedQueriesMatchTheScan(t *testing.T) {
	skipOnOfficial(t, "compares the fake's indexes with its scan")
	rng := rand.New(rand.NewPCG(1, 2))
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	srv := New(Options{Now: func() time.Time { return clock }, History: time.Minute})
	t.Cleanup(srv.Close)
	ctx := context.Background()

	// Values whose equality is subtle: numbers that equal each other
	// across types, a string next to bytes and a reference, null, NaN, a
	// missing field (nil).
	values := []*pb.Value{
		val("queued"), val("done"), val(""), val(true), val(false), val(nil),
		val(1), val(1.0), val(0), val(math.NaN()),
		{ValueType: &pb.Value_BytesValue{BytesValue: []byte("queued")}},
		{ValueType: &pb.Value_ReferenceValue{ReferenceValue: dbPath + "/documents/a/queued"}},
		{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: []*pb.Value{val("queued")}}}},
		nil,
	}
	pick := func() *pb.Value { return values[rng.IntN(len(values))] }
	// A filter's value: any but missing.
	pickValue := func() *pb.Value { return values[rng.IntN(len(values)-1)] }
	// Documents in collections named inbox at two depths, and in others.
	var names []string
	for s := range 4 {
		for i := range 6 {
			names = append(names, fmt.Sprintf("sessions/s%d/inbox/r%d", s, i), fmt.Sprintf("sessions/s%d/log/r%d", s, i))
		}
		names = append(names, fmt.Sprintf("inbox/r%d", s), fmt.Sprintf("sessions/s%d/inbox/r0/inbox/x", s))
	}
	randomDoc := func() map[string]*pb.Value {
		fields := map[string]*pb.Value{}
		for _, f := range []string{"status", "published", "seq"} {
			if v := pick(); v != nil {
				fields[f] = v
			}
		}
		if v := pick(); v != nil {
			fields["launch"] = &pb.Value{ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: map[string]*pb.Value{"state": v}}}}
		}
		return fields
	}

	queries := func() []*pb.StructuredQuery {
		var out []*pb.StructuredQuery
		for range 12 {
			var where *pb.StructuredQuery_Filter
			switch rng.IntN(5) {
			case 0:
				where = eq("status", pickValue())
			case 1:
				where = composite(false, eq("status", pickValue()), eq("published", pickValue()))
			case 2:
				where = composite(false, eq("launch.state", pickValue()), composite(false, eq("seq", pickValue())))
			case 3:
				where = composite(true, eq("status", pickValue()), eq("published", pickValue()))
			case 4:
				where = composite(false, eq("status", pickValue()), composite(true, eq("seq", pickValue()), eq("published", pickValue())))
			}
			sq := &pb.StructuredQuery{
				From:  []*pb.StructuredQuery_CollectionSelector{{CollectionId: "inbox", AllDescendants: rng.IntN(2) == 0}},
				Where: where,
			}
			if rng.IntN(2) == 0 {
				sq.OrderBy = []*pb.StructuredQuery_Order{{Field: &pb.StructuredQuery_FieldReference{FieldPath: "seq"}, Direction: pb.StructuredQuery_DESCENDING}}
			}
			if rng.IntN(3) == 0 {
				sq.Limit = wrapperspb.Int32(int32(1 + rng.IntN(3)))
			}
			out = append(out, sq)
		}
		return out
	}
	parents := []string{dbPath + "/documents", dbPath + "/documents/sessions/s1", dbPath + "/documents/sessions/s2/inbox/r0"}

	var versions []int64
	for round := range 300 {
		var ws []*write
		for range 1 + rng.IntN(4) {
			name := dbPath + "/documents/" + names[rng.IntN(len(names))]
			if slices.ContainsFunc(ws, func(w *write) bool { return w.name == name }) {
				continue
			}
			if rng.IntN(5) == 0 {
				ws = append(ws, &write{name: name, delete: true})
			} else {
				ws = append(ws, &write{name: name, update: true, fields: randomDoc()})
			}
		}
		if _, _, err := srv.commit(ctx, dbPath, ws, nil); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Second) // history of the last 60 rounds is kept
		srv.store.mu.RLock()
		versions = append(versions, srv.store.version)
		floor := srv.store.floor()
		srv.store.mu.RUnlock()
		if round%10 != 9 {
			continue
		}
		for _, parent := range parents {
			for _, id := range []string{"inbox", "log"} {
				if grouped, scanned := scanBoth(srv.store, parent, id, floor); !slices.Equal(grouped, scanned) {
					t.Fatalf("round %d: collection group %s under %s at version %d:\nby group %v\nscanned %v", round, id, parent, floor, grouped, scanned)
				}
			}
		}
		for _, sq := range queries() {
			parent := parents[rng.IntN(len(parents))]
			for _, v := range []int64{versions[len(versions)-1], max(floor, versions[rng.IntN(len(versions))])} {
				indexed, scanned := runBoth(t, srv, parent, sq, v)
				if !slices.Equal(indexed, scanned) {
					t.Fatalf("round %d: query %v under %s at version %d:\nindexed %v\nscanned %v", round, sq, parent, v, indexed, scanned)
				}
			}
		}
	}
	if len(srv.store.indexes["inbox"]) != 4 {
		t.Errorf("indexes on inbox: %v, want status, published, seq and launch.state", srv.store.indexes["inbox"])
	}
}

// TestIndexForgetsPrunedValues checks that pruning unlists a document from
// the values only its dropped versions held, so that the index does not
// grow with every value a document ever had.
func TestIndexForgetsPrunedValues(t *testing.T) {
	skipOnOfficial(t, "looks into the fake's indexes")
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	srv := New(Options{Now: func() time.Time { return clock }, History: time.Minute})
	t.Cleanup(srv.Close)
	ctx := context.Background()
	name := dbPath + "/documents/sessions/s1/inbox/r1"
	set := func(status string) {
		t.Helper()
		w := &write{name: name, update: true, fields: map[string]*pb.Value{"status": val(status)}}
		if status == "" {
			w = &write{name: name, delete: true}
		}
		if _, _, err := srv.commit(ctx, dbPath, []*write{w}, nil); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Minute)
	}
	set("queued")
	if _, err := srv.compileQuery(dbPath+"/documents", &pb.StructuredQuery{
		From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "inbox", AllDescendants: true}}, Where: eq("status", val("queued")),
	}); err != nil {
		t.Fatal(err)
	}
	listedIn := func(pick func(*fieldIndex) listing) string {
		srv.store.mu.RLock()
		defer srv.store.mu.RUnlock()
		var out []string
		for k, byColl := range pick(srv.store.indexes["inbox"]["status"]) {
			n := 0
			for _, e := range byColl {
				n += len(e)
			}
			out = append(out, fmt.Sprintf("%s:%d", k.s, n))
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	listed := func() string { return listedIn(func(ix *fieldIndex) listing { return ix.entries }) }
	latest := func() string { return listedIn(func(ix *fieldIndex) listing { return ix.latest }) }
	if got := latest(); got != "queued:1" {
		t.Errorf("after queued: latest lists %q, want queued:1", got)
	}
	set("running")
	set("done") // "queued" is older than the history now
	if got := listed(); got != "done:1 running:1" {
		t.Errorf("after queued, running, done: index lists %q, want done:1 running:1", got)
	}
	if got := latest(); got != "done:1" {
		t.Errorf("after queued, running, done: latest lists %q, want done:1", got)
	}
	set("")
	if got := latest(); got != "" {
		t.Errorf("after the deletion: latest lists %q, want nothing", got)
	}
	set("") // the deletion is older than the history: forgotten
	if got := listed(); got != "" {
		t.Errorf("after the deletion left the history: index lists %q, want nothing", got)
	}
}

// BenchmarkCollectionGroupQuery runs the reaper's queries over the inboxes
// of many sessions, most of whose requests are done: the queued ones
// (Waiting) and the done but unpublished ones (Unpublished).
func BenchmarkCollectionGroupQuery(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		for _, indexed := range []bool{false, true} {
			b.Run(fmt.Sprintf("docs=%d/indexed=%t", n, indexed), func(b *testing.B) { benchGroupQuery(b, n, indexed) })
		}
	}
}

func benchGroupQuery(b *testing.B, n int, indexed bool) {
	srv := New(Options{})
	b.Cleanup(srv.Close)
	ctx := context.Background()
	var ws []*write
	for i := range n {
		status, published := "done", true
		switch i % 1000 {
		case 0:
			status = "queued"
		case 1:
			published = false
		}
		ws = append(ws, &write{name: fmt.Sprintf("%s/documents/sessions/s%d/inbox/r%d", dbPath, i%100, i), update: true,
			fields: map[string]*pb.Value{"status": val(status), "published": val(published), "finished_at": val(i)}})
		if len(ws) == 500 || i == n-1 {
			if _, _, err := srv.commit(ctx, dbPath, ws, nil); err != nil {
				b.Fatal(err)
			}
			ws = nil
		}
	}
	queued := &pb.StructuredQuery{From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "inbox", AllDescendants: true}},
		Where: eq("status", val("queued"))}
	unpublished := &pb.StructuredQuery{From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "inbox", AllDescendants: true}},
		Where: composite(false, eq("status", val("done")), eq("published", val(false)))}
	if indexed {
		// Create the indexes the queries use before the timing starts: a
		// server does it once, on the first such query.
		for _, sq := range []*pb.StructuredQuery{queued, unpublished} {
			if _, err := srv.compileQuery(dbPath+"/documents", sq); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		for _, sq := range []*pb.StructuredQuery{queued, unpublished} {
			q, err := compileQuery(dbPath+"/documents", sq)
			if err != nil {
				b.Fatal(err)
			}
			srv.store.mu.RLock()
			got := len(q.run(srv.store, srv.store.version))
			srv.store.mu.RUnlock()
			if want := max(n/1000, 1); got != want {
				b.Fatalf("query returned %d documents, want %d", got, want)
			}
		}
	}
}

// BenchmarkSmallCollectionGroupQuery runs the reaper's queries on its
// hosts' leases, a collection group of one document per session, with a
// range filter no index serves, while the inboxes hold many requests.
func BenchmarkSmallCollectionGroupQuery(b *testing.B) {
	srv := New(Options{})
	b.Cleanup(srv.Close)
	ctx := context.Background()
	var ws []*write
	for i := range 10000 {
		ws = append(ws, &write{name: fmt.Sprintf("%s/documents/sessions/s%d/inbox/r%d", dbPath, i%100, i), update: true,
			fields: map[string]*pb.Value{"status": val("done"), "published": val(true), "finished_at": val(i)}})
		if i%100 == 0 {
			ws = append(ws, &write{name: fmt.Sprintf("%s/documents/sessions/s%d/runtime/lease", dbPath, i/100), update: true,
				fields: map[string]*pb.Value{"lease_expires": val(i / 100)}})
		}
		if len(ws) >= 500 {
			if _, _, err := srv.commit(ctx, dbPath, ws, nil); err != nil {
				b.Fatal(err)
			}
			ws = nil
		}
	}
	expired := &pb.StructuredQuery{From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "runtime", AllDescendants: true}},
		Where: &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_FieldFilter{FieldFilter: &pb.StructuredQuery_FieldFilter{
			Field: &pb.StructuredQuery_FieldReference{FieldPath: "lease_expires"}, Op: pb.StructuredQuery_FieldFilter_LESS_THAN, Value: val(10)}}}}
	for b.Loop() {
		q, err := srv.compileQuery(dbPath+"/documents", expired)
		if err != nil {
			b.Fatal(err)
		}
		srv.store.mu.RLock()
		got := len(q.run(srv.store, srv.store.version))
		srv.store.mu.RUnlock()
		if got != 10 {
			b.Fatalf("query returned %d documents, want 10", got)
		}
	}
}

// BenchmarkInboxQuery runs a host's query of its session's queued
// requests while a hundred sessions each have two queued among many done,
// each of which was queued a moment ago (within the history).
func BenchmarkInboxQuery(b *testing.B) {
	srv := New(Options{})
	b.Cleanup(srv.Close)
	ctx := context.Background()
	queued := &pb.StructuredQuery{From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "inbox"}},
		Where:   eq("status", val("queued")),
		OrderBy: []*pb.StructuredQuery_Order{{Field: &pb.StructuredQuery_FieldReference{FieldPath: "seq"}}}}
	if _, err := srv.compileQuery(dbPath+"/documents/sessions/s7", queued); err != nil {
		b.Fatal(err)
	}
	var ws []*write
	for i := range 10000 {
		status := "done"
		if i/100%100 >= 98 {
			status = "queued"
		}
		name := fmt.Sprintf("%s/documents/sessions/s%d/inbox/r%d", dbPath, i%100, i)
		ws = append(ws, &write{name: name, update: true, fields: map[string]*pb.Value{"status": val("queued"), "seq": val(i)}})
		if _, _, err := srv.commit(ctx, dbPath, ws, nil); err != nil {
			b.Fatal(err)
		}
		ws = []*write{{name: name, update: true, fields: map[string]*pb.Value{"status": val(status), "seq": val(i)}}}
		if _, _, err := srv.commit(ctx, dbPath, ws, nil); err != nil {
			b.Fatal(err)
		}
		ws = nil
	}
	for b.Loop() {
		q, err := srv.compileQuery(dbPath+"/documents/sessions/s7", queued)
		if err != nil {
			b.Fatal(err)
		}
		srv.store.mu.RLock()
		got := len(q.run(srv.store, srv.store.version))
		srv.store.mu.RUnlock()
		if got != 2 {
			b.Fatalf("query returned %d documents, want 2", got)
		}
	}
}
