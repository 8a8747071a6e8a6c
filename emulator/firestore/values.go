package firestore

import (
	"bytes"
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Firestore's limits on values (https://firebase.google.com/docs/firestore/quotas).
const (
	maxDocumentBytes = 1 << 20 // 1 MiB, counted by storageSize rules
	maxDepth         = 20      // maps and arrays nested in a field value
	// maxValueBytes bounds one string or bytes value (1 MiB less 89
	// bytes), wherever it is nested.
	maxValueBytes = 1_048_487
)

// Type ranks in Firestore's cross-type ordering: null < bool < number <
// timestamp < string < bytes < reference < geopoint < array < vector < map.
const (
	rankNull = iota
	rankBool
	rankNumber
	rankTimestamp
	rankString
	rankBytes
	rankReference
	rankGeoPoint
	rankArray
	rankVector
	rankMap
	rankInvalid
)

func typeRank(v *pb.Value) int {
	switch v.GetValueType().(type) {
	case *pb.Value_NullValue:
		return rankNull
	case *pb.Value_BooleanValue:
		return rankBool
	case *pb.Value_IntegerValue, *pb.Value_DoubleValue:
		return rankNumber
	case *pb.Value_TimestampValue:
		return rankTimestamp
	case *pb.Value_StringValue:
		return rankString
	case *pb.Value_BytesValue:
		return rankBytes
	case *pb.Value_ReferenceValue:
		return rankReference
	case *pb.Value_GeoPointValue:
		return rankGeoPoint
	case *pb.Value_ArrayValue:
		return rankArray
	case *pb.Value_MapValue:
		if isVector(v) {
			return rankVector
		}
		return rankMap
	default:
		return rankInvalid
	}
}

// isVector reports whether v is a vector embedding: a map whose __type__ is
// "__vector__" (the wire form the client uses).
func isVector(v *pb.Value) bool {
	t := v.GetMapValue().GetFields()["__type__"]
	return t.GetStringValue() == "__vector__"
}

func isNaN(v *pb.Value) bool {
	d, ok := v.GetValueType().(*pb.Value_DoubleValue)
	return ok && math.IsNaN(d.DoubleValue)
}

// compareValues orders two values as Firestore does: first by type rank,
// then within the type. Integers and doubles compare by numeric value (NaN
// first); strings compare by UTF-8 bytes; references segment by segment.
func compareValues(a, b *pb.Value) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch ra {
	case rankNull, rankInvalid:
		return 0
	case rankBool:
		ab, bb := a.GetBooleanValue(), b.GetBooleanValue()
		switch {
		case ab == bb:
			return 0
		case !ab:
			return -1
		default:
			return 1
		}
	case rankNumber:
		return compareNumbers(a, b)
	case rankTimestamp:
		ta, tb := a.GetTimestampValue(), b.GetTimestampValue()
		if c := cmp.Compare(ta.GetSeconds(), tb.GetSeconds()); c != 0 {
			return c
		}
		return cmp.Compare(ta.GetNanos(), tb.GetNanos())
	case rankString:
		return strings.Compare(a.GetStringValue(), b.GetStringValue())
	case rankBytes:
		return bytes.Compare(a.GetBytesValue(), b.GetBytesValue())
	case rankReference:
		return compareNames(a.GetReferenceValue(), b.GetReferenceValue())
	case rankGeoPoint:
		ga, gb := a.GetGeoPointValue(), b.GetGeoPointValue()
		if c := cmp.Compare(ga.GetLatitude(), gb.GetLatitude()); c != 0 {
			return c
		}
		return cmp.Compare(ga.GetLongitude(), gb.GetLongitude())
	case rankArray:
		return slices.CompareFunc(a.GetArrayValue().GetValues(), b.GetArrayValue().GetValues(), compareValues)
	case rankVector:
		// Vectors order by dimension first, then element by element.
		va := a.GetMapValue().GetFields()["value"].GetArrayValue().GetValues()
		vb := b.GetMapValue().GetFields()["value"].GetArrayValue().GetValues()
		if c := cmp.Compare(len(va), len(vb)); c != 0 {
			return c
		}
		return slices.CompareFunc(va, vb, compareValues)
	default: // rankMap
		return compareMaps(a.GetMapValue().GetFields(), b.GetMapValue().GetFields())
	}
}

// compareMaps compares maps as sorted lists of (key, value) pairs.
func compareMaps(a, b map[string]*pb.Value) int {
	ka, kb := sortedKeys(a), sortedKeys(b)
	for i := 0; i < len(ka) && i < len(kb); i++ {
		if c := strings.Compare(ka[i], kb[i]); c != 0 {
			return c
		}
		if c := compareValues(a[ka[i]], b[kb[i]]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(ka), len(kb))
}

func sortedKeys(m map[string]*pb.Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// compareNumbers compares integers and doubles exactly (an int64 does not
// fit a float64, so no conversion of one to the other). NaN sorts first.
func compareNumbers(a, b *pb.Value) int {
	ai, aInt := a.GetValueType().(*pb.Value_IntegerValue)
	bi, bInt := b.GetValueType().(*pb.Value_IntegerValue)
	switch {
	case aInt && bInt:
		return cmp.Compare(ai.IntegerValue, bi.IntegerValue)
	case aInt:
		return -compareDoubleInt(b.GetDoubleValue(), ai.IntegerValue)
	case bInt:
		return compareDoubleInt(a.GetDoubleValue(), bi.IntegerValue)
	default:
		return cmp.Compare(a.GetDoubleValue(), b.GetDoubleValue())
	}
}

func compareDoubleInt(d float64, i int64) int {
	switch {
	case math.IsNaN(d):
		return -1
	case d < -(1 << 63):
		return -1
	case d >= 1<<63:
		return 1
	}
	t := math.Trunc(d)
	if c := cmp.Compare(int64(t), i); c != 0 {
		return c
	}
	return cmp.Compare(d-t, 0)
}

// equalValues is Firestore equality: same type rank and comparing equal
// (so 1 == 1.0).
func equalValues(a, b *pb.Value) bool { return compareValues(a, b) == 0 }

// comparable reports whether a and b can be ordered against each other by
// a range filter (<, <=, >, >=): Firestore ranges stay within one type.
func comparableTypes(a, b *pb.Value) bool { return typeRank(a) == typeRank(b) }

// checkValue enforces the rules a stored value must follow: a value type is
// set, nesting is at most maxDepth, arrays do not directly hold arrays,
// timestamps and geopoints are in range, strings are UTF-8, references name
// documents, and pipeline-only expressions do not appear.
func checkValue(v *pb.Value, depth int, inArray bool) error {
	if v == nil {
		return status.Error(codes.InvalidArgument, "value is missing")
	}
	if depth > maxDepth {
		return status.Errorf(codes.InvalidArgument, "value is nested more than %d levels deep", maxDepth)
	}
	switch x := v.ValueType.(type) {
	case *pb.Value_NullValue, *pb.Value_BooleanValue, *pb.Value_IntegerValue, *pb.Value_DoubleValue, *pb.Value_BytesValue:
		return nil
	case *pb.Value_StringValue:
		if !utf8.ValidString(x.StringValue) {
			return status.Error(codes.InvalidArgument, "string value is not valid UTF-8")
		}
		return nil
	case *pb.Value_TimestampValue:
		if x.TimestampValue == nil {
			return status.Error(codes.InvalidArgument, "timestamp value is missing")
		}
		if err := x.TimestampValue.CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid timestamp value: %v", err)
		}
		return nil
	case *pb.Value_ReferenceValue:
		if _, err := parseDocumentName(x.ReferenceValue); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid reference value: %s", status.Convert(err).Message())
		}
		return nil
	case *pb.Value_GeoPointValue:
		g := x.GeoPointValue
		if g == nil {
			return status.Error(codes.InvalidArgument, "geo point value is missing")
		}
		if !(g.Latitude >= -90 && g.Latitude <= 90) || !(g.Longitude >= -180 && g.Longitude <= 180) {
			return status.Errorf(codes.InvalidArgument, "geo point (%v, %v) is out of range", g.Latitude, g.Longitude)
		}
		return nil
	case *pb.Value_ArrayValue:
		if inArray {
			return status.Error(codes.InvalidArgument, "an array value cannot directly contain another array value")
		}
		for _, e := range x.ArrayValue.GetValues() {
			if err := checkValue(e, depth+1, true); err != nil {
				return err
			}
		}
		return nil
	case *pb.Value_MapValue:
		return checkFields(x.MapValue.GetFields(), depth+1)
	case nil:
		return status.Error(codes.InvalidArgument, "value has no value type set")
	default:
		return status.Errorf(codes.InvalidArgument, "value type %T is only allowed in pipelines, not in documents or queries", x)
	}
}

// checkFields checks the fields of a document (depth 0) or of a map value.
func checkFields(fields map[string]*pb.Value, depth int) error {
	for k, v := range fields {
		if k == "" {
			return status.Error(codes.InvalidArgument, "field name is empty")
		}
		if !utf8.ValidString(k) {
			return status.Errorf(codes.InvalidArgument, "field name %q is not valid UTF-8", k)
		}
		if len(k) > maxFieldPathBytes {
			return status.Errorf(codes.InvalidArgument, "field name is %d bytes; the limit is %d", len(k), maxFieldPathBytes)
		}
		if err := checkValue(v, depth, false); err != nil {
			return err
		}
	}
	return nil
}

// checkValueBytes rejects a document whose fields hold a string or bytes
// value longer than maxValueBytes, naming the top-level field as Google's
// emulator does.
func checkValueBytes(fields map[string]*pb.Value) error {
	for k, v := range fields {
		if longestValue(v) > maxValueBytes {
			return status.Errorf(codes.InvalidArgument, "The value of property %q is longer than %d bytes.", k, maxValueBytes)
		}
	}
	return nil
}

// longestValue is the length of the longest string or bytes value in v.
func longestValue(v *pb.Value) int {
	switch x := v.GetValueType().(type) {
	case *pb.Value_StringValue:
		return len(x.StringValue)
	case *pb.Value_BytesValue:
		return len(x.BytesValue)
	case *pb.Value_ArrayValue:
		n := 0
		for _, e := range x.ArrayValue.GetValues() {
			n = max(n, longestValue(e))
		}
		return n
	case *pb.Value_MapValue:
		n := 0
		for _, e := range x.MapValue.GetFields() {
			n = max(n, longestValue(e))
		}
		return n
	default:
		return 0
	}
}

// truncateTimestamps cuts every timestamp value in fields to microseconds,
// in place: Firestore stores timestamps at microsecond precision and
// returns what it stored. Callers own fields (a clone).
func truncateTimestamps(fields map[string]*pb.Value) {
	for _, v := range fields {
		truncateTimestamp(v)
	}
}

func truncateTimestamp(v *pb.Value) {
	switch x := v.GetValueType().(type) {
	case *pb.Value_TimestampValue:
		// Only a value that needs it is written to: the others may be
		// shared with stored versions, which readers marshal unlocked.
		if r := x.TimestampValue.GetNanos() % 1000; r != 0 {
			x.TimestampValue.Nanos -= r
		}
	case *pb.Value_ArrayValue:
		for _, e := range x.ArrayValue.GetValues() {
			truncateTimestamp(e)
		}
	case *pb.Value_MapValue:
		truncateTimestamps(x.MapValue.GetFields())
	}
}

// Storage sizes, per https://firebase.google.com/docs/firestore/storage-size:
// strings count their UTF-8 bytes plus one, a document name counts its
// path segments as strings plus 16, a document adds 32 bytes to its name
// and fields.

func stringSize(s string) int64 { return int64(len(s)) + 1 }

func nameSize(name string) int64 {
	var n int64 = 16
	for _, seg := range strings.Split(relPath(name), "/") {
		n += stringSize(seg)
	}
	return n
}

func valueSize(v *pb.Value) int64 {
	switch x := v.GetValueType().(type) {
	case *pb.Value_NullValue, *pb.Value_BooleanValue:
		return 1
	case *pb.Value_IntegerValue, *pb.Value_DoubleValue, *pb.Value_TimestampValue:
		return 8
	case *pb.Value_StringValue:
		return stringSize(x.StringValue)
	case *pb.Value_BytesValue:
		return int64(len(x.BytesValue))
	case *pb.Value_ReferenceValue:
		return nameSize(x.ReferenceValue)
	case *pb.Value_GeoPointValue:
		return 16
	case *pb.Value_ArrayValue:
		var n int64
		for _, e := range x.ArrayValue.GetValues() {
			n += valueSize(e)
		}
		return n
	case *pb.Value_MapValue:
		return fieldsSize(x.MapValue.GetFields())
	default:
		return 0
	}
}

func fieldsSize(fields map[string]*pb.Value) int64 {
	var n int64
	for k, v := range fields {
		n += stringSize(k) + valueSize(v)
	}
	return n
}

// documentSize is the storage size Firestore limits to 1 MiB.
func documentSize(name string, fields map[string]*pb.Value) int64 {
	return nameSize(name) + fieldsSize(fields) + 32
}

// getField returns the value at path in fields, if any.
func getField(fields map[string]*pb.Value, path fieldPath) (*pb.Value, bool) {
	var v *pb.Value
	for i, seg := range path {
		if i > 0 {
			m, ok := v.GetValueType().(*pb.Value_MapValue)
			if !ok {
				return nil, false
			}
			fields = m.MapValue.GetFields()
		}
		var ok bool
		if v, ok = fields[seg]; !ok {
			return nil, false
		}
	}
	return v, v != nil
}

// docField returns a field of a stored document, with __name__ standing for
// the document's own name as a reference.
func docField(doc *pb.Document, path fieldPath) (*pb.Value, bool) {
	if path.isName() {
		return &pb.Value{ValueType: &pb.Value_ReferenceValue{ReferenceValue: doc.GetName()}}, true
	}
	return getField(doc.GetFields(), path)
}

// setField stores v at path in fields, creating maps on the way and
// replacing any non-map value in the way. fields must be owned by the
// caller: setField mutates it. The maps below it may be shared with stored
// versions (see shareFields): those on the way are copied, not mutated.
func setField(fields map[string]*pb.Value, path fieldPath, v *pb.Value) {
	for _, seg := range path[:len(path)-1] {
		fields = ownMap(fields, seg)
	}
	fields[path[len(path)-1]] = v
}

// deleteField removes the value at path, if present. Like setField it
// mutates fields and copies the maps on the way.
func deleteField(fields map[string]*pb.Value, path fieldPath) {
	for _, seg := range path[:len(path)-1] {
		if m, ok := fields[seg].GetValueType().(*pb.Value_MapValue); !ok || m.MapValue == nil {
			return
		}
		fields = ownMap(fields, seg)
	}
	delete(fields, path[len(path)-1])
}

// ownMap replaces fields[seg] with a map value of its own, a copy of the
// map there (its values shared) or an empty one when there is none, and
// returns its map for the caller to change.
func ownMap(fields map[string]*pb.Value, seg string) map[string]*pb.Value {
	var m map[string]*pb.Value
	if cur, ok := fields[seg].GetValueType().(*pb.Value_MapValue); ok {
		m = shareFields(cur.MapValue.GetFields())
	} else {
		m = map[string]*pb.Value{}
	}
	fields[seg] = &pb.Value{ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: m}}}
	return m
}

// shareFields returns a new map of the values of fields, themselves
// shared, not copied: stored values are never mutated, and setField and
// deleteField copy the maps they change below the top. A write on a
// stored document thus copies what it changes, not the whole document.
func shareFields(fields map[string]*pb.Value) map[string]*pb.Value {
	out := make(map[string]*pb.Value, len(fields)+1)
	maps.Copy(out, fields)
	return out
}

// project returns the fields of a document restricted to paths. The result
// shares leaf values with fields, which are never mutated.
func project(fields map[string]*pb.Value, paths []fieldPath) map[string]*pb.Value {
	// Shorter paths first, and a path below one already taken is covered by
	// it: setField must never descend into a shared (stored) map.
	sorted := slices.Clone(paths)
	slices.SortStableFunc(sorted, func(a, b fieldPath) int { return cmp.Compare(len(a), len(b)) })
	out := map[string]*pb.Value{}
	var taken []fieldPath
	for _, p := range sorted {
		if p.isName() || slices.ContainsFunc(taken, func(t fieldPath) bool { return p.hasPrefix(t) }) {
			continue
		}
		if v, ok := getField(fields, p); ok {
			setField(out, p, v)
			taken = append(taken, p)
		}
	}
	return out
}

// cloneValue returns a deep copy of v. It is proto.Clone for the value
// types Firestore stores, without reflection: a commit copies every field
// of the documents it writes, and proto.Clone made that most of a
// commit's CPU. Anything else (a value with no type set) goes to
// proto.Clone.
func cloneValue(v *pb.Value) *pb.Value {
	switch x := v.GetValueType().(type) {
	case *pb.Value_NullValue:
		return &pb.Value{ValueType: &pb.Value_NullValue{NullValue: x.NullValue}}
	case *pb.Value_BooleanValue:
		return &pb.Value{ValueType: &pb.Value_BooleanValue{BooleanValue: x.BooleanValue}}
	case *pb.Value_IntegerValue:
		return &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: x.IntegerValue}}
	case *pb.Value_DoubleValue:
		return &pb.Value{ValueType: &pb.Value_DoubleValue{DoubleValue: x.DoubleValue}}
	case *pb.Value_StringValue:
		return &pb.Value{ValueType: &pb.Value_StringValue{StringValue: x.StringValue}}
	case *pb.Value_ReferenceValue:
		return &pb.Value{ValueType: &pb.Value_ReferenceValue{ReferenceValue: x.ReferenceValue}}
	case *pb.Value_BytesValue:
		return &pb.Value{ValueType: &pb.Value_BytesValue{BytesValue: bytes.Clone(x.BytesValue)}}
	case *pb.Value_TimestampValue:
		if x.TimestampValue != nil {
			return &pb.Value{ValueType: &pb.Value_TimestampValue{TimestampValue: &timestamppb.Timestamp{
				Seconds: x.TimestampValue.Seconds, Nanos: x.TimestampValue.Nanos}}}
		}
	case *pb.Value_GeoPointValue:
		if x.GeoPointValue != nil {
			return &pb.Value{ValueType: &pb.Value_GeoPointValue{GeoPointValue: &latlng.LatLng{
				Latitude: x.GeoPointValue.Latitude, Longitude: x.GeoPointValue.Longitude}}}
		}
	case *pb.Value_ArrayValue:
		if x.ArrayValue != nil {
			vs := make([]*pb.Value, len(x.ArrayValue.Values))
			for i, e := range x.ArrayValue.Values {
				vs[i] = cloneValue(e)
			}
			return &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: vs}}}
		}
	case *pb.Value_MapValue:
		if x.MapValue != nil {
			return &pb.Value{ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: cloneFields(x.MapValue.Fields)}}}
		}
	}
	return proto.Clone(v).(*pb.Value)
}

// cloneFields returns a deep copy of fields, never nil: callers add to it.
func cloneFields(fields map[string]*pb.Value) map[string]*pb.Value {
	out := make(map[string]*pb.Value, len(fields))
	for k, v := range fields {
		out[k] = cloneValue(v)
	}
	return out
}

// sameValue reports whether a and b are equal as proto.Equal says (not
// as Firestore compares: 1 and 1.0 differ, NaN is NaN), without
// reflection for the value types Firestore stores. A commit uses it to
// tell a write that changes nothing.
func sameValue(a, b *pb.Value) bool {
	switch x := a.GetValueType().(type) {
	case *pb.Value_NullValue:
		y, ok := b.GetValueType().(*pb.Value_NullValue)
		return ok && x.NullValue == y.NullValue
	case *pb.Value_BooleanValue:
		y, ok := b.GetValueType().(*pb.Value_BooleanValue)
		return ok && x.BooleanValue == y.BooleanValue
	case *pb.Value_IntegerValue:
		y, ok := b.GetValueType().(*pb.Value_IntegerValue)
		return ok && x.IntegerValue == y.IntegerValue
	case *pb.Value_DoubleValue:
		y, ok := b.GetValueType().(*pb.Value_DoubleValue)
		return ok && sameDouble(x.DoubleValue, y.DoubleValue)
	case *pb.Value_StringValue:
		y, ok := b.GetValueType().(*pb.Value_StringValue)
		return ok && x.StringValue == y.StringValue
	case *pb.Value_ReferenceValue:
		y, ok := b.GetValueType().(*pb.Value_ReferenceValue)
		return ok && x.ReferenceValue == y.ReferenceValue
	case *pb.Value_BytesValue:
		y, ok := b.GetValueType().(*pb.Value_BytesValue)
		return ok && bytes.Equal(x.BytesValue, y.BytesValue)
	case *pb.Value_TimestampValue:
		y, ok := b.GetValueType().(*pb.Value_TimestampValue)
		if ok && x.TimestampValue != nil && y.TimestampValue != nil {
			return x.TimestampValue.Seconds == y.TimestampValue.Seconds && x.TimestampValue.Nanos == y.TimestampValue.Nanos
		}
	case *pb.Value_GeoPointValue:
		y, ok := b.GetValueType().(*pb.Value_GeoPointValue)
		if ok && x.GeoPointValue != nil && y.GeoPointValue != nil {
			return sameDouble(x.GeoPointValue.Latitude, y.GeoPointValue.Latitude) &&
				sameDouble(x.GeoPointValue.Longitude, y.GeoPointValue.Longitude)
		}
	case *pb.Value_ArrayValue:
		y, ok := b.GetValueType().(*pb.Value_ArrayValue)
		if ok && x.ArrayValue != nil && y.ArrayValue != nil {
			return slices.EqualFunc(x.ArrayValue.Values, y.ArrayValue.Values, sameValue)
		}
	case *pb.Value_MapValue:
		y, ok := b.GetValueType().(*pb.Value_MapValue)
		if ok && x.MapValue != nil && y.MapValue != nil {
			return sameFields(x.MapValue.Fields, y.MapValue.Fields)
		}
	}
	// A nil message or no type set: rare enough for reflection.
	return proto.Equal(a, b)
}

// sameFields reports whether two field maps are equal, as proto.Equal
// says of two maps.
func sameFields(a, b map[string]*pb.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !sameValue(va, vb) {
			return false
		}
	}
	return true
}

// sameDouble is proto.Equal's equality of doubles: ==, except that NaN
// equals NaN.
func sameDouble(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return a == b
}
