package firestore

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"
)

// seedQueryDocs writes the documents the query tests share:
//
//	a: n=1    s=a tags=[x y] nested.v=1
//	b: n=2    s=b tags=[y]   nullish=null
//	c: n=3.5  s=c tags=[]    nan=NaN
//	d: n=str  s=d
//	e:        s=e            nullish=null
//	f: n=2    s=f            nan=1.0
//	g: n=1.2  s=g
func seedQueryDocs(t *testing.T, ctx context.Context, c *fs.Client) {
	t.Helper()
	docs := map[string]map[string]any{
		"a": {"n": 1, "s": "a", "tags": []any{"x", "y"}, "nested": map[string]any{"v": 1}},
		"b": {"n": 2, "s": "b", "tags": []any{"y"}, "nullish": nil},
		"c": {"n": 3.5, "s": "c", "tags": []any{}, "nan": math.NaN()},
		"d": {"n": "str", "s": "d"},
		"e": {"s": "e", "nullish": nil},
		"f": {"n": 2, "s": "f", "nan": 1.0},
		"g": {"n": 1.2, "s": "g"},
	}
	b := c.Batch()
	for id, data := range docs {
		b.Set(c.Doc("q/"+id), data)
	}
	if _, err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// ids runs a query and returns the IDs of its documents in order.
func ids(t *testing.T, q fs.Query) string {
	t.Helper()
	snaps, err := q.Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var out []string
	for _, s := range snaps {
		out = append(out, s.Ref.ID)
	}
	return strings.Join(out, ",")
}

func TestQueryFilters(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	seedQueryDocs(t, ctx, e.client)
	q := e.client.Collection("q")
	for _, tc := range []struct {
		name string
		q    fs.Query
		want string
	}{
		{"all in name order", q.Query, "a,b,c,d,e,f,g"},
		{"==", q.Where("n", "==", 2), "b,f"},
		{"== across int and double", q.Where("n", "==", 2.0), "b,f"},
		{"!= orders by the field", q.Where("n", "!=", 2), "a,g,c,d"},
		{"<", q.Where("n", "<", 3), "a,g,b,f"},
		{"<=", q.Where("n", "<=", 2), "a,g,b,f"},
		{">", q.Where("n", ">", 1), "g,b,f,c"},
		{">=", q.Where("n", ">=", 2), "b,f,c"},
		{"range stays in type", q.Where("n", ">", "a"), "d"},
		{"array-contains", q.Where("tags", "array-contains", "y"), "a,b"},
		{"array-contains-any", q.Where("tags", "array-contains-any", []any{"x", "z"}), "a"},
		{"in", q.Where("s", "in", []any{"a", "e", "zz"}), "a,e"},
		{"not-in", q.Where("s", "not-in", []any{"a", "b"}), "c,d,e,f,g"},
		{"is null", q.Where("nullish", "==", nil), "b,e"},
		{"is nan", q.Where("nan", "==", math.NaN()), "c"},
		{"is not nan", q.Where("nan", "!=", math.NaN()), "f"},
		{"is not null", q.Where("nullish", "!=", nil), ""},
		{"nested field", q.Where("nested.v", "==", 1), "a"},
		{"document id", q.Where(fs.DocumentID, ">=", e.client.Doc("q/e")), "e,f,g"},
		{"or", q.WhereEntity(fs.OrFilter{Filters: []fs.EntityFilter{
			fs.PropertyFilter{Path: "n", Operator: "==", Value: 1},
			fs.PropertyFilter{Path: "s", Operator: "==", Value: "e"},
		}}), "a,e"},
		{"and of or", q.WhereEntity(fs.AndFilter{Filters: []fs.EntityFilter{
			fs.OrFilter{Filters: []fs.EntityFilter{
				fs.PropertyFilter{Path: "n", Operator: "==", Value: 1},
				fs.PropertyFilter{Path: "n", Operator: "==", Value: 2},
			}},
			fs.PropertyFilter{Path: "s", Operator: "!=", Value: "f"},
		}}), "a,b"},
		{"two filters", q.Where("n", ">=", 1).Where("n", "<", 2), "a,g"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "document id order" {
				skipOnOfficial(t, "Google's emulator refuses descending document ID order (\"does not support descending key scans\"); Firestore serves it")
			}
			if got := ids(t, tc.q); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestQueryOrderLimitCursors(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	seedQueryDocs(t, ctx, e.client)
	q := e.client.Collection("q")
	byN := q.OrderBy("n", fs.Asc)
	snapB, err := e.client.Doc("q/b").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snapF, err := e.client.Doc("q/f").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		q    fs.Query
		want string
	}{
		{"order filters missing fields, mixed types", byN, "a,g,b,f,c,d"},
		{"descending, name ties descending", q.OrderBy("n", fs.Desc), "d,c,f,b,g,a"},
		{"two orders", byN.OrderBy("s", fs.Desc), "a,g,f,b,c,d"},
		{"limit", byN.Limit(2), "a,g"},
		{"offset", byN.Offset(1).Limit(2), "g,b"},
		{"offset past end", byN.Offset(10), ""},
		{"start at", byN.StartAt(2), "b,f,c,d"},
		{"start after", byN.StartAfter(2), "c,d"},
		{"end at", byN.EndAt(2), "a,g,b,f"},
		{"end before", byN.EndBefore(2), "a,g"},
		{"start after snapshot", byN.StartAfter(snapB), "f,c,d"},
		{"end before snapshot", byN.EndBefore(snapF), "a,g,b"},
		{"start at snapshot, descending", q.OrderBy("n", fs.Desc).StartAt(snapF), "f,b,g,a"},
		{"cursor on two orders", byN.OrderBy("s", fs.Asc).StartAfter(2, "b"), "f,c,d"},
		{"document id order", q.OrderBy(fs.DocumentID, fs.Desc).Limit(3), "g,f,e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "document id order" {
				skipOnOfficial(t, "Google's emulator refuses descending document ID order (\"does not support descending key scans\"); Firestore serves it")
			}
			if got := ids(t, tc.q); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}

	// LimitToLast: the client reverses the order and the result itself.
	got, err := byN.LimitToLast(2).Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Ref.ID != "c" || got[1].Ref.ID != "d" {
		t.Fatalf("LimitToLast(2) = %v", got)
	}

	// Select returns only the chosen fields.
	snaps, err := q.Select("s", "nested.v").Where("s", "==", "a").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"s": "a", "nested": map[string]any{"v": int64(1)}}; len(snaps) != 1 || !reflect.DeepEqual(snaps[0].Data(), want) {
		t.Fatalf("projection: %v", snaps)
	}
	snaps, err = q.Select().Limit(1).Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || len(snaps[0].Data()) != 0 {
		t.Fatalf("empty projection: %v", snaps[0].Data())
	}
}

func TestQueryCollectionGroupsAndListing(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	seedQueryDocs(t, ctx, e.client)
	for path, k := range map[string]int{"q/a/sub/x": 1, "other/y/sub/z": 2, "q/a/sub/x/sub/deep": 3, "q/a/else/w": 4} {
		if _, err := e.client.Doc(path).Set(ctx, map[string]any{"k": k}); err != nil {
			t.Fatal(err)
		}
	}
	var paths []string
	snaps, err := e.client.CollectionGroup("sub").OrderBy("k", fs.Asc).Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		paths = append(paths, strings.SplitN(s.Ref.Path, "/documents/", 2)[1])
	}
	if got := strings.Join(paths, " "); got != "q/a/sub/x other/y/sub/z q/a/sub/x/sub/deep" {
		t.Fatalf("collection group: %s", got)
	}
	if got := ids(t, e.client.CollectionGroup("sub").Where("k", ">", 1)); got != "z,deep" {
		t.Fatalf("collection group with filter: %s", got)
	}
	if got := ids(t, e.client.Doc("q/a").Collection("sub").Query); got != "x" {
		t.Fatalf("subcollection: %s", got)
	}
	// Subcollection documents are not in the parent collection.
	if got := ids(t, e.client.Collection("q").Query); got != "a,b,c,d,e,f,g" {
		t.Fatalf("parent collection: %s", got)
	}

	// DocumentRefs lists missing documents that have subcollections.
	refs, err := e.client.Collection("other").DocumentRefs(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].ID != "y" {
		t.Fatalf("DocumentRefs(other) = %v", refs)
	}
	refs, err = e.client.Collection("q").DocumentRefs(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 7 {
		t.Fatalf("DocumentRefs(q) has %d refs, want 7", len(refs))
	}
	colls, err := e.client.Collections(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(colls) != 2 || colls[0].ID != "other" || colls[1].ID != "q" {
		t.Fatalf("Collections = %v", colls)
	}
	colls, err = e.client.Doc("q/a").Collections(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(colls) != 2 || colls[0].ID != "else" || colls[1].ID != "sub" {
		t.Fatalf("q/a Collections = %v", colls)
	}
}

func TestAggregation(t *testing.T) {
	e := newTestEnv(t)
	e.fakeOnly(t, "Google's emulator counts 6 of the 7 documents when the count is asked with a sum and an average of n, which one document lacks; which behaviour Firestore has is not yet checked")
	ctx := ctxT(t)
	seedQueryDocs(t, ctx, e.client)
	q := e.client.Collection("q")
	greater := q.Where("n", ">", 1)
	res, err := greater.NewAggregationQuery().WithCount("count").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := res["count"]; got == nil || got.(interface{ GetIntegerValue() int64 }).GetIntegerValue() != 4 {
		t.Fatalf("count = %v", got)
	}
	res, err = q.NewAggregationQuery().WithCount("all").WithSum("n", "sum").WithAvg("n", "avg").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type number interface {
		GetIntegerValue() int64
		GetDoubleValue() float64
	}
	if n := res["all"].(number).GetIntegerValue(); n != 7 {
		t.Fatalf("count all = %d", n)
	}
	if s := res["sum"].(number).GetDoubleValue(); math.Abs(s-9.7) > 1e-9 {
		t.Fatalf("sum = %v", s)
	}
	if a := res["avg"].(number).GetDoubleValue(); math.Abs(a-9.7/5) > 1e-9 {
		t.Fatalf("avg = %v", a)
	}
	in := q.Where("n", "in", []any{1, 2})
	res, err = in.NewAggregationQuery().WithSum("n", "sum").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := res["sum"].(number).GetIntegerValue(); s != 5 {
		t.Fatalf("integer sum = %v", res["sum"])
	}
}

// TestQueryEqualityAcrossRewrites runs equality queries, which the fake
// answers from its indexes, over documents that change value, lose it and
// are deleted: at the latest read time and at an earlier one, on a
// collection group and on one collection, with values whose equality
// crosses types (1 and 1.0) and values of other types that look alike.
func TestQueryEqualityAcrossRewrites(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	var t0 time.Time
	for path, doc := range map[string]map[string]any{
		"s/a/inbox/r1": {"status": "queued", "n": 1},
		"s/b/inbox/r2": {"status": "queued", "n": 1.0},
		"s/a/inbox/r3": {"status": "done", "published": false},
		"s/a/other/r4": {"status": "queued"},
		"inbox/r5":     {"status": "queued"},
		"s/a/inbox/r6": {"status": nil},
		"s/a/inbox/r7": {"status": true, "n": "1"},
		"s/a/inbox/r8": {"status": []byte("queued")},
	} {
		wr, err := e.client.Doc(path).Set(ctx, doc)
		if err != nil {
			t.Fatal(err)
		}
		if wr.UpdateTime.After(t0) {
			t0 = wr.UpdateTime
		}
	}
	group := e.client.CollectionGroup("inbox")
	sa := e.client.Doc("s/a").Collection("inbox")
	before := map[string]struct {
		q    fs.Query
		want string
	}{
		"group status queued": {group.Where("status", "==", "queued"), "r5,r1,r2"},
		"group n 1":           {group.Where("n", "==", 1), "r1,r2"},
		"group status null":   {group.Where("status", "==", nil), "r6"},
		"group status true":   {group.Where("status", "==", true), "r7"},
		"group done unpublished": {
			group.Where("status", "==", "done").Where("published", "==", false), "r3"},
		"collection status queued": {sa.Where("status", "==", "queued"), "r1"},
	}
	for name, c := range before {
		if got := ids(t, c.q); got != c.want {
			t.Errorf("%s: %s, want %s", name, got, c.want)
		}
	}
	if _, err := e.client.Doc("s/a/inbox/r1").Set(ctx, map[string]any{"status": "done", "published": false, "n": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("s/b/inbox/r2").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("s/a/inbox/r6").Set(ctx, map[string]any{"other": 1}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		q    fs.Query
		want string
	}{
		"group status queued":      {group.Where("status", "==", "queued"), "r5"},
		"group n 1":                {group.Where("n", "==", 1), ""},
		"group status null":        {group.Where("status", "==", nil), ""},
		"group done unpublished":   {group.Where("status", "==", "done").Where("published", "==", false).OrderBy("n", fs.Desc), "r1"},
		"collection status queued": {sa.Where("status", "==", "queued"), ""},
		"collection done":          {sa.Where("status", "==", "done"), "r1,r3"},
	} {
		if got := ids(t, c.q); got != c.want {
			t.Errorf("after the rewrites, %s: %s, want %s", name, got, c.want)
		}
	}
	// At the time before the rewrites, the queries see what they saw then.
	for name, c := range before {
		if got := ids(t, *c.q.WithReadOptions(fs.ReadTime(t0))); got != c.want {
			t.Errorf("at the earlier read time, %s: %s, want %s", name, got, c.want)
		}
	}
}
