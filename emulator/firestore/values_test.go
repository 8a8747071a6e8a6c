package firestore

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestCompareValuesTypeOrder(t *testing.T) {
	ref := func(p string) *pb.Value {
		return &pb.Value{ValueType: &pb.Value_ReferenceValue{ReferenceValue: dbPath + "/documents/" + p}}
	}
	m := func(f map[string]*pb.Value) *pb.Value {
		return &pb.Value{ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: f}}}
	}
	ts := func(s int64) *pb.Value {
		return &pb.Value{ValueType: &pb.Value_TimestampValue{TimestampValue: &timestamppb.Timestamp{Seconds: s}}}
	}
	b := func(v bool) *pb.Value { return &pb.Value{ValueType: &pb.Value_BooleanValue{BooleanValue: v}} }
	by := func(s string) *pb.Value { return &pb.Value{ValueType: &pb.Value_BytesValue{BytesValue: []byte(s)}} }
	geo := func(lat, lng float64) *pb.Value {
		return &pb.Value{ValueType: &pb.Value_GeoPointValue{GeoPointValue: &latlng.LatLng{Latitude: lat, Longitude: lng}}}
	}
	vec := m(map[string]*pb.Value{"__type__": val("__vector__"), "value": val([]*pb.Value{val(1.0)})})
	// Each group holds values equal to each other; groups are ascending.
	groups := [][]*pb.Value{
		{val(nil)},
		{b(false)}, {b(true)},
		{val(math.NaN())},
		{val(math.Inf(-1))},
		{&pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: math.MinInt64}}},
		{val(-1.5)},
		{val(0), val(0.0), val(math.Copysign(0, -1))},
		{val(1), val(1.0)},
		{&pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: 1 << 53}}, val(float64(1 << 53))},
		{&pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: 1<<53 + 1}}},
		{&pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: math.MaxInt64}}},
		{val(math.Inf(1))},
		{ts(-1)}, {ts(5)},
		{val("")}, {val("B")}, {val("a")}, {val("é")},
		{by("")}, {by("\x00")}, {by("a")},
		{ref("a/b")}, {ref("a/b/c/d")}, {ref("a-b/c")}, {ref("b/a")},
		{geo(-10, 50)}, {geo(0, -5)}, {geo(0, 5)},
		{val([]*pb.Value{})}, {val([]*pb.Value{val(1)})}, {val([]*pb.Value{val(1), val(nil)})}, {val([]*pb.Value{val(2)})},
		{vec},
		{m(nil)}, {m(map[string]*pb.Value{"a": val(1)})}, {m(map[string]*pb.Value{"a": val(2)})}, {m(map[string]*pb.Value{"b": val(0)})},
	}
	for i, gi := range groups {
		for j, gj := range groups {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			for _, a := range gi {
				for _, b := range gj {
					if got := compareValues(a, b); got != want {
						t.Errorf("compare(%v, %v) = %d, want %d", a, b, got, want)
					}
				}
			}
		}
	}
}

func TestParseFieldPath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want fieldPath
	}{
		{"a", fieldPath{"a"}},
		{"a.b.c", fieldPath{"a", "b", "c"}},
		{"`a.b`.c", fieldPath{"a.b", "c"}},
		{"`a\\`b`", fieldPath{"a`b"}},
		{"`a\\\\b`", fieldPath{`a\b`}},
		{"__name__", fieldPath{"__name__"}},
		{"ünï.x", fieldPath{"ünï", "x"}},
	} {
		got, err := parseFieldPath(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseFieldPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if back, err := parseFieldPath(got.String()); err != nil || !back.equal(got) {
			t.Errorf("round trip of %q through %q failed: %q, %v", tc.in, got.String(), back, err)
		}
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", "`a", "a`b`", "`a`b", "`a\\"} {
		if p, err := parseFieldPath(bad); err == nil {
			t.Errorf("parseFieldPath(%q) = %q, want an error", bad, p)
		}
	}
}

// TestDocumentSize checks the example of
// https://firebase.google.com/docs/firestore/storage-size: a task document
// of 147 bytes.
func TestDocumentSize(t *testing.T) {
	name := dbPath + "/documents/users/jeff/tasks/my_task_id"
	if got := nameSize(name); got != 44 {
		t.Fatalf("name size %d, want 44", got)
	}
	fields := map[string]*pb.Value{
		"type":        val("Personal"),
		"done":        {ValueType: &pb.Value_BooleanValue{}},
		"priority":    val(1),
		"description": val("Learn Cloud Firestore"),
	}
	if got := documentSize(name, fields); got != 147 {
		t.Fatalf("document size %d, want 147", got)
	}
}

// TestCloneAndSameMatchProto checks cloneValue and sameValue, the
// commit's reflection-free copy and equality, against proto.Clone and
// proto.Equal on random values of every type, NaN, -0, empty and nil
// bytes, arrays and maps among them.
func TestCloneAndSameMatchProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var random func(depth int) *pb.Value
	random = func(depth int) *pb.Value {
		kinds := 10
		if depth > 2 {
			kinds = 8 // no more nesting
		}
		switch rng.IntN(kinds) {
		case 0:
			return val(nil)
		case 1:
			return val(rng.IntN(2) == 0)
		case 2:
			return val(rng.IntN(3) - 1)
		case 3:
			return val([]float64{0, math.Copysign(0, -1), 1, math.NaN(), math.Inf(1)}[rng.IntN(5)])
		case 4:
			return val([]string{"", "a", "b"}[rng.IntN(3)])
		case 5:
			return &pb.Value{ValueType: &pb.Value_BytesValue{BytesValue: [][]byte{nil, {}, []byte("a")}[rng.IntN(3)]}}
		case 6:
			return &pb.Value{ValueType: &pb.Value_TimestampValue{TimestampValue: &timestamppb.Timestamp{Seconds: int64(rng.IntN(2)), Nanos: int32(rng.IntN(2))}}}
		case 7:
			return &pb.Value{ValueType: &pb.Value_GeoPointValue{GeoPointValue: &latlng.LatLng{Latitude: float64(rng.IntN(2)), Longitude: math.NaN()}}}
		case 8:
			var vs []*pb.Value
			for range rng.IntN(3) {
				vs = append(vs, random(depth+1))
			}
			return val(vs)
		default:
			fields := map[string]*pb.Value{}
			for range rng.IntN(3) {
				fields[[]string{"x", "y"}[rng.IntN(2)]] = random(depth + 1)
			}
			return &pb.Value{ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: fields}}}
		}
	}
	same := 0
	for range 20000 {
		a, b := random(0), random(0)
		if c := cloneValue(a); !proto.Equal(c, a) {
			t.Fatalf("cloneValue(%v) = %v", a, c)
		}
		want := proto.Equal(a, b)
		if got := sameValue(a, b); got != want {
			t.Fatalf("sameValue(%v, %v) = %t, proto.Equal says %t", a, b, got, want)
		}
		if want {
			same++
		}
	}
	if same < 100 {
		t.Errorf("only %d of the random pairs were equal: the test says little about equality", same)
	}
	// A clone shares nothing with its original.
	orig := val([]*pb.Value{{ValueType: &pb.Value_TimestampValue{TimestampValue: &timestamppb.Timestamp{Nanos: 1500}}}})
	c := cloneValue(orig)
	truncateTimestamp(c)
	if orig.GetArrayValue().Values[0].GetTimestampValue().Nanos != 1500 {
		t.Error("truncating a clone's timestamps changed the original")
	}
}
