package firestore

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"
	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGetAndBatchGet(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	a := e.client.Doc("things/a")
	wr, err := a.Create(ctx, map[string]any{"n": 1, "s": "x", "m": map[string]any{"k": true}})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := a.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Exists() || !snap.UpdateTime.Equal(wr.UpdateTime) || !snap.CreateTime.Equal(wr.UpdateTime) {
		t.Fatalf("snapshot %+v, write result %v", snap, wr.UpdateTime)
	}
	if got := snap.Data(); !reflect.DeepEqual(got, map[string]any{"n": int64(1), "s": "x", "m": map[string]any{"k": true}}) {
		t.Fatalf("data %v", got)
	}
	_, err = e.client.Doc("things/missing").Get(ctx)
	wantCode(t, err, codes.NotFound)

	snaps, err := e.client.GetAll(ctx, []*fs.DocumentRef{a, e.client.Doc("things/missing"), a})
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 3 || !snaps[0].Exists() || snaps[1].Exists() || !snaps[2].Exists() {
		t.Fatalf("GetAll existence: %v %v %v", snaps[0].Exists(), snaps[1].Exists(), snaps[2].Exists())
	}
	if snaps[1].ReadTime.IsZero() {
		t.Fatal("missing document has no read time")
	}

	// Field masks: the high-level client never sends one for gets, so use
	// the official GAPIC client.
	stream, err := e.gapic(t).BatchGetDocuments(ctx, &pb.BatchGetDocumentsRequest{
		Database:  e.db,
		Documents: []string{a.Path},
		Mask:      &pb.DocumentMask{FieldPaths: []string{"m.k", "s"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetFound().GetFields()
	if len(got) != 2 || got["s"].GetStringValue() != "x" || !got["m"].GetMapValue().GetFields()["k"].GetBooleanValue() {
		t.Fatalf("masked document fields %v", got)
	}
}

func TestSetMergeUpdateDelete(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	d := e.client.Doc("c/d")
	if _, err := d.Set(ctx, map[string]any{"a": 1, "b": map[string]any{"x": 1, "y": 2}, "c": "keep"}); err != nil {
		t.Fatal(err)
	}
	// Set without merge replaces the document.
	if _, err := d.Set(ctx, map[string]any{"a": 2, "b": map[string]any{"x": 10, "y": 2}, "c": "keep"}); err != nil {
		t.Fatal(err)
	}
	// MergeAll touches only the given leaves.
	if _, err := d.Set(ctx, map[string]any{"b": map[string]any{"x": 3}, "new": true}, fs.MergeAll); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": int64(2), "b": map[string]any{"x": int64(3), "y": int64(2)}, "c": "keep", "new": true}
	if got := mustData(t, ctx, d); !reflect.DeepEqual(got, want) {
		t.Fatalf("after MergeAll: %v, want %v", got, want)
	}
	// Merge with paths, deleting a field with the Delete sentinel.
	if _, err := d.Set(ctx, map[string]any{"a": 5, "c": fs.Delete, "ignored": 1}, fs.Merge([]string{"a"}, []string{"c"})); err != nil {
		t.Fatal(err)
	}
	// Update with nested paths, a path with a dot in a key, and Delete.
	_, err := d.Update(ctx, []fs.Update{
		{Path: "b.y", Value: fs.Delete},
		{Path: "b.z", Value: "zed"},
		{FieldPath: fs.FieldPath{"odd.key", "in"}, Value: 7},
		{Path: "new", Value: fs.Delete},
	})
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]any{
		"a":       int64(5),
		"b":       map[string]any{"x": int64(3), "z": "zed"},
		"odd.key": map[string]any{"in": int64(7)},
	}
	if got := mustData(t, ctx, d); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Update: %v, want %v", got, want)
	}
	// A write that changes nothing keeps the update time.
	before, _ := d.Get(ctx)
	wr, err := d.Set(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if !wr.UpdateTime.Equal(before.UpdateTime) {
		t.Fatalf("no-op write moved update time from %v to %v", before.UpdateTime, wr.UpdateTime)
	}
	if _, err := d.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = d.Get(ctx)
	wantCode(t, err, codes.NotFound)
	// Deleting a missing document succeeds.
	if _, err := d.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPreconditions(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	d := e.client.Doc("c/p")
	wr, err := d.Create(ctx, map[string]any{"v": 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Create(ctx, map[string]any{"v": 2})
	wantCode(t, err, codes.AlreadyExists)
	_, err = e.client.Doc("c/nope").Update(ctx, []fs.Update{{Path: "v", Value: 1}})
	wantCode(t, err, codes.NotFound)
	_, err = e.client.Doc("c/nope").Delete(ctx, fs.Exists)
	wantCode(t, err, codes.NotFound)

	stale := wr.UpdateTime.Add(-time.Microsecond)
	_, err = d.Update(ctx, []fs.Update{{Path: "v", Value: 3}}, fs.LastUpdateTime(stale))
	wantCode(t, err, codes.FailedPrecondition)
	wr2, err := d.Update(ctx, []fs.Update{{Path: "v", Value: 3}}, fs.LastUpdateTime(wr.UpdateTime))
	if err != nil {
		t.Fatal(err)
	}
	if !wr2.UpdateTime.After(wr.UpdateTime) {
		t.Fatalf("update time did not advance: %v then %v", wr.UpdateTime, wr2.UpdateTime)
	}
	_, err = d.Delete(ctx, fs.LastUpdateTime(wr.UpdateTime))
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := d.Delete(ctx, fs.LastUpdateTime(wr2.UpdateTime)); err != nil {
		t.Fatal(err)
	}

	// A failed write in a batch leaves the whole batch unapplied.
	b := e.client.Batch()
	b.Set(e.client.Doc("c/batch1"), map[string]any{"x": 1})
	b.Update(e.client.Doc("c/absent"), []fs.Update{{Path: "x", Value: 1}})
	_, err = b.Commit(ctx)
	wantCode(t, err, codes.NotFound)
	_, err = e.client.Doc("c/batch1").Get(ctx)
	wantCode(t, err, codes.NotFound)
}

func TestTransforms(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	d := e.client.Doc("c/t")
	wr, err := d.Set(ctx, map[string]any{
		"at": fs.ServerTimestamp, "i": 5, "f": 1.5, "s": "str", "big": int64(math.MaxInt64 - 1),
		"arr": []any{1, "two"}, "mx": 10, "mn": 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := d.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A server timestamp has millisecond precision and is taken as the
	// request is processed: Google's emulator takes it before the commit
	// time, the fake takes the commit time.
	if at := snap.Data()["at"].(time.Time); at.Nanosecond()%int(time.Millisecond) != 0 || at.After(wr.UpdateTime) || wr.UpdateTime.Sub(at) > time.Second {
		t.Fatalf("server timestamp %v, commit %v", at, wr.UpdateTime)
	}
	_, err = d.Update(ctx, []fs.Update{
		{Path: "i", Value: fs.Increment(2)},
		{Path: "f", Value: fs.Increment(1)},
		{Path: "s", Value: fs.Increment(3)},
		{Path: "missing", Value: fs.Increment(2.5)},
		{Path: "big", Value: fs.Increment(10)},
		{Path: "arr", Value: fs.ArrayUnion("two", 3, 3)},
		{Path: "mx", Value: fs.FieldTransformMaximum(12.5)},
		{Path: "mn", Value: fs.FieldTransformMinimum(10.0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := mustData(t, ctx, d)
	want := map[string]any{
		"i":       int64(7),
		"f":       2.5,
		"s":       int64(3),
		"missing": 2.5,
		"big":     int64(math.MaxInt64),
		"arr":     []any{int64(1), "two", int64(3)},
		"mx":      12.5,
		"mn":      int64(10), // a tie keeps the stored value and type
	}
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v, want %#v", k, got[k], w)
		}
	}
	if _, err := d.Update(ctx, []fs.Update{{Path: "arr", Value: fs.ArrayRemove(1, 3)}, {Path: "i", Value: fs.Increment(0.5)}}); err != nil {
		t.Fatal(err)
	}
	got = mustData(t, ctx, d)
	if !reflect.DeepEqual(got["arr"], []any{"two"}) || got["i"] != 7.5 {
		t.Fatalf("after remove: arr=%v i=%v", got["arr"], got["i"])
	}
}

func TestDocumentSizeLimit(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	d := e.client.Doc("c/d")
	// A single string or bytes value: at most 1,048,487 bytes, wherever it
	// is, with Google's emulator's message (which sandrun does not parse).
	for _, v := range []any{strings.Repeat("x", maxValueBytes), make([]byte, maxValueBytes)} {
		if _, err := d.Set(ctx, map[string]any{"f": v}); err != nil {
			t.Fatalf("value of %d bytes refused: %v", maxValueBytes, err)
		}
	}
	for _, v := range []any{strings.Repeat("x", maxValueBytes+1), make([]byte, maxValueBytes+1), []any{strings.Repeat("x", maxValueBytes+1)}} {
		_, err := d.Set(ctx, map[string]any{"f": v})
		wantCode(t, err, codes.InvalidArgument)
		if want := `The value of property "f" is longer than 1048487 bytes.`; status.Convert(err).Message() != want {
			t.Fatalf("error %v, want %q", err, want)
		}
	}
	// A document: at most 1 MiB counted by Firestore's storage-size rules.
	// Name "c/d": 16 + 2 + 2 = 20; fields "f" and "g": 2 each; values:
	// len+1; document: 32.
	const overhead = 20 + 2 + 1 + 2 + 1 + 32
	half := (maxDocumentBytes - overhead) / 2
	rest := maxDocumentBytes - overhead - half
	if _, err := d.Set(ctx, map[string]any{"f": strings.Repeat("x", half), "g": strings.Repeat("x", rest)}); err != nil {
		t.Fatalf("document of exactly 1 MiB refused: %v", err)
	}
	_, err := d.Set(ctx, map[string]any{"f": strings.Repeat("x", half), "g": strings.Repeat("x", rest+1)})
	wantCode(t, err, codes.InvalidArgument)
	// The messages differ: Google's emulator says "maximum entity size is
	// 1048576 bytes", the fake Firestore's own words.
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "1048576") && !strings.Contains(msg, "1,048,576") {
		t.Fatalf("error %v does not explain the limit", err)
	}
}

// TestTimestampsMicroseconds: Firestore keeps timestamps, stored values and
// commit times alike, at microsecond precision, and returns what it kept.
func TestTimestampsMicroseconds(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	d := e.client.Doc("ts/d")
	wr, err := d.Set(ctx, map[string]any{"at": at, "nested": map[string]any{"list": []any{at}}})
	if err != nil {
		t.Fatal(err)
	}
	if wr.UpdateTime.Nanosecond()%1000 != 0 {
		t.Errorf("update time %s is finer than microseconds", wr.UpdateTime.Format(time.RFC3339Nano))
	}
	snap, err := d.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := at.Truncate(time.Microsecond)
	if got := snap.Data()["at"].(time.Time); !got.Equal(want) {
		t.Errorf("stored %s, read back %s, want %s", at.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
	if got := snap.Data()["nested"].(map[string]any)["list"].([]any)[0].(time.Time); !got.Equal(want) {
		t.Errorf("nested: read back %s, want %s", got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
}

func TestValidation(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	// Too deep: the high-level client sends it as is.
	deep := map[string]any{"leaf": 1}
	for range maxDepth + 1 {
		deep = map[string]any{"m": deep}
	}
	_, err := e.client.Doc("c/deep").Set(ctx, deep)
	wantCode(t, err, codes.InvalidArgument)
	// Nested arrays.
	_, err = e.client.Doc("c/arr").Set(ctx, map[string]any{"a": []any{[]any{1}}})
	wantCode(t, err, codes.InvalidArgument)

	// The high-level client refuses bad names and empty paths itself, so
	// send those through the GAPIC client.
	g := e.gapic(t)
	doc := func(name string) *pb.Write {
		return &pb.Write{Operation: &pb.Write_Update{Update: &pb.Document{Name: name}}}
	}
	for _, tc := range []struct {
		name  string
		write *pb.Write
	}{
		{"odd segments", doc(e.db + "/documents/c")},
		{"empty segment", doc(e.db + "/documents/c//d")},
		{"reserved id", doc(e.db + "/documents/c/__x__")},
		{"dot id", doc(e.db + "/documents/c/..")},
		{"other database", doc("projects/p/databases/other/documents/c/d")},
		{"not a document name", doc("c/d")},
		{"no operation", &pb.Write{}},
		{"empty mask path", &pb.Write{Operation: doc(e.db + "/documents/c/d").Operation, UpdateMask: &pb.DocumentMask{FieldPaths: []string{""}}}},
		{"bad mask path", &pb.Write{Operation: doc(e.db + "/documents/c/d").Operation, UpdateMask: &pb.DocumentMask{FieldPaths: []string{"a..b"}}}},
		{"empty field name", &pb.Write{Operation: &pb.Write_Update{Update: &pb.Document{
			Name: e.db + "/documents/c/d", Fields: map[string]*pb.Value{"": {ValueType: &pb.Value_NullValue{}}}}}}},
		{"value without type", &pb.Write{Operation: &pb.Write_Update{Update: &pb.Document{
			Name: e.db + "/documents/c/d", Fields: map[string]*pb.Value{"a": {}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "other database" {
				skipOnOfficial(t, "Google's emulator accepts a write whose document names another database than the request")
			}
			_, err := g.Commit(ctx, &pb.CommitRequest{Database: e.db, Writes: []*pb.Write{tc.write}})
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	_, err = g.Commit(ctx, &pb.CommitRequest{Database: "projects/x"})
	wantCode(t, err, codes.InvalidArgument)

	// Methods the emulator does not implement say so.
	_, err = g.PartitionQuery(ctx, &pb.PartitionQueryRequest{Parent: e.db + "/documents"}).Next()
	wantCode(t, err, codes.Unimplemented)
	if !strings.Contains(err.Error(), "PartitionQuery") {
		t.Fatalf("Unimplemented error %v does not name the method", err)
	}
}

func TestBulkWriter(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	bw := e.client.BulkWriter(ctx)
	var jobs []*fs.BulkWriterJob
	for i := range 10 {
		j, err := bw.Create(e.client.Doc("bulk/d"+string(rune('0'+i))), map[string]any{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	bad, err := bw.Update(e.client.Doc("bulk/missing"), []fs.Update{{Path: "x", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	bw.End()
	for _, j := range jobs {
		if _, err := j.Results(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bad.Results(); err == nil {
		t.Fatal("update of a missing document succeeded in BulkWriter")
	}
	refs, err := e.client.Collection("bulk").DocumentRefs(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 10 {
		t.Fatalf("%d documents after bulk write, want 10", len(refs))
	}
}

// TestUpdatesLeaveEarlierVersions checks that updates of nested fields,
// deletes of nested fields and transforms change the document's new
// version only: a read at the earlier version still finds every field as
// it was (the fake's versions share what a write leaves alone).
func TestUpdatesLeaveEarlierVersions(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	d := e.client.Doc("versions/d")
	first := map[string]any{"m": map[string]any{"a": int64(1), "b": int64(2), "deep": map[string]any{"x": "y"}}, "n": int64(1), "keep": "k"}
	wr1, err := d.Set(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Update(ctx, []fs.Update{{Path: "m.a", Value: 5}, {Path: "m.b", Value: fs.Delete},
		{Path: "m.deep.x", Value: "z"}, {Path: "n", Value: fs.Increment(1)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Set(ctx, map[string]any{"m": map[string]any{"deep": map[string]any{"w": true}}}, fs.MergeAll); err != nil {
		t.Fatal(err)
	}
	now, err := d.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"m": map[string]any{"a": int64(5), "deep": map[string]any{"x": "z", "w": true}}, "n": int64(2), "keep": "k"}
	if got := now.Data(); !reflect.DeepEqual(got, want) {
		t.Errorf("latest version %v, want %v", got, want)
	}
	old, err := d.WithReadOptions(fs.ReadTime(wr1.UpdateTime)).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := old.Data(); !reflect.DeepEqual(got, first) {
		t.Errorf("first version read after the updates %v, want %v", got, first)
	}
}

func TestReadTime(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	d := e.client.Doc("rt/d")
	wr1, err := d.Set(ctx, map[string]any{"v": 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Set(ctx, map[string]any{"v": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("rt/e").Set(ctx, map[string]any{"v": 3}); err != nil {
		t.Fatal(err)
	}
	old, err := e.client.Doc("rt/d").WithReadOptions(fs.ReadTime(wr1.UpdateTime)).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if old.Data()["v"] != int64(1) {
		t.Fatalf("read at %v: %v", wr1.UpdateTime, old.Data())
	}
	q := e.client.Collection("rt").Query
	snaps, err := q.WithReadOptions(fs.ReadTime(wr1.UpdateTime)).Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].Data()["v"] != int64(1) {
		t.Fatalf("query at read time returned %d documents", len(snaps))
	}
	if target == "" {
		// The fake keeps a minute of history; Google's emulator keeps all
		// of it and answers NotFound (Firestore keeps an hour).
		_, err = e.client.Doc("rt/d").WithReadOptions(fs.ReadTime(wr1.UpdateTime.Add(-time.Hour))).Get(ctx)
		wantCode(t, err, codes.FailedPrecondition)
	}

	// GetDocument, which the high-level client does not use.
	g := e.gapic(t)
	doc, err := g.GetDocument(ctx, &pb.GetDocumentRequest{Name: d.Path, Mask: &pb.DocumentMask{FieldPaths: []string{"v"}}})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Fields["v"].GetIntegerValue() != 2 {
		t.Fatalf("GetDocument: %v", doc)
	}
	_, err = g.GetDocument(ctx, &pb.GetDocumentRequest{Name: e.db + "/documents/rt/missing"})
	wantCode(t, err, codes.NotFound)
}

func TestSingleDocumentRPCs(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	g := e.gapic(t)
	doc, err := g.CreateDocument(ctx, &pb.CreateDocumentRequest{
		Parent: e.db + "/documents", CollectionId: "one",
		Document: &pb.Document{Fields: map[string]*pb.Value{"a": {ValueType: &pb.Value_IntegerValue{IntegerValue: 1}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if doc.CreateTime == nil || doc.Fields["a"].GetIntegerValue() != 1 || len(relPath(doc.Name)) != len("one/")+20 {
		t.Fatalf("created %v", doc)
	}
	_, err = g.CreateDocument(ctx, &pb.CreateDocumentRequest{Parent: e.db + "/documents", CollectionId: "one", DocumentId: relPath(doc.Name)[4:], Document: &pb.Document{}})
	wantCode(t, err, codes.AlreadyExists)
	upd, err := g.UpdateDocument(ctx, &pb.UpdateDocumentRequest{
		Document:   &pb.Document{Name: doc.Name, Fields: map[string]*pb.Value{"b": {ValueType: &pb.Value_StringValue{StringValue: "x"}}}},
		UpdateMask: &pb.DocumentMask{FieldPaths: []string{"b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(upd.Fields) != 2 {
		t.Fatalf("merged update left %v", upd.Fields)
	}
	if err := g.DeleteDocument(ctx, &pb.DeleteDocumentRequest{Name: doc.Name}); err != nil {
		t.Fatal(err)
	}
	err = g.DeleteDocument(ctx, &pb.DeleteDocumentRequest{Name: doc.Name, CurrentDocument: &pb.Precondition{ConditionType: &pb.Precondition_Exists{Exists: true}}})
	wantCode(t, err, codes.NotFound)
}
