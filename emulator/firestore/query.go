package firestore

import (
	"slices"
	"strings"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// query is a validated StructuredQuery under a parent, ready to run against
// the store at any version.
type query struct {
	parent         string // the documents root or a document name
	collection     string // "" only with allDescendants: every collection
	allDescendants bool
	where          filter // nil: every document
	orders         []order
	start, end     *cursor
	offset         int
	limit          int // -1: no limit
	hasProjection  bool
	projection     []fieldPath
	// equalities are where's equality filters that an index can serve
	// (see equalities), found once as the query is compiled.
	equalities []fieldFilter
}

type order struct {
	path fieldPath
	desc bool
}

type cursor struct {
	values []*pb.Value
	before bool
}

// match is a document a query returned and the version that wrote it.
type match struct {
	doc     *pb.Document
	version int64
}

// filter decides whether a stored document matches.
type filter interface {
	matches(doc *pb.Document) bool
}

func compileQuery(parent string, sq *pb.StructuredQuery) (*query, error) {
	if _, err := parseParent(parent); err != nil {
		return nil, err
	}
	if sq == nil {
		return nil, status.Error(codes.InvalidArgument, "structured query is missing")
	}
	if sq.FindNearest != nil {
		return nil, status.Error(codes.Unimplemented, "find_nearest (vector search) is not supported by the sandrun Firestore emulator")
	}
	if len(sq.From) != 1 || sq.From[0] == nil {
		return nil, status.Errorf(codes.InvalidArgument, "a query needs exactly one collection selector in from, got %d", len(sq.From))
	}
	q := &query{
		parent:         parent,
		collection:     sq.From[0].CollectionId,
		allDescendants: sq.From[0].AllDescendants,
		offset:         int(sq.Offset),
		limit:          -1,
	}
	if q.collection == "" && !q.allDescendants {
		return nil, status.Error(codes.InvalidArgument, "a query needs a collection_id unless it selects all descendants")
	}
	if q.collection != "" {
		if err := checkID(q.collection); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid collection_id %q: %s", q.collection, err)
		}
	}
	if sq.Offset < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "offset must not be negative, got %d", sq.Offset)
	}
	if sq.Limit != nil {
		if sq.Limit.Value < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "limit must not be negative, got %d", sq.Limit.Value)
		}
		q.limit = int(sq.Limit.Value)
	}
	var inequalities []fieldPath
	if sq.Where != nil {
		f, err := compileFilter(sq.Where, &inequalities, 0)
		if err != nil {
			return nil, err
		}
		q.where = f
	}
	for _, o := range sq.OrderBy {
		if o == nil {
			return nil, status.Error(codes.InvalidArgument, "order_by has an empty entry")
		}
		p, err := parseFieldRef(o.Field)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(q.orders, func(x order) bool { return x.path.equal(p) }) {
			return nil, status.Errorf(codes.InvalidArgument, "order_by lists field %s twice", p)
		}
		switch o.Direction {
		case pb.StructuredQuery_DIRECTION_UNSPECIFIED, pb.StructuredQuery_ASCENDING, pb.StructuredQuery_DESCENDING:
		default:
			return nil, status.Errorf(codes.InvalidArgument, "unknown order direction %d", o.Direction)
		}
		q.orders = append(q.orders, order{path: p, desc: o.Direction == pb.StructuredQuery_DESCENDING})
	}
	q.addImplicitOrders(inequalities)
	var err error
	if q.start, err = compileCursor(sq.StartAt, q.orders, "start_at"); err != nil {
		return nil, err
	}
	if q.end, err = compileCursor(sq.EndAt, q.orders, "end_at"); err != nil {
		return nil, err
	}
	if sq.Select != nil {
		q.hasProjection = true
		for _, f := range sq.Select.Fields {
			p, err := parseFieldRef(f)
			if err != nil {
				return nil, err
			}
			q.projection = append(q.projection, p)
		}
	}
	q.equalities = equalities(q.where)
	return q, nil
}

// compileQuery compiles a query that the server is about to run, and
// creates the indexes it can use (see fieldIndex). Callers do not hold
// s.store.mu.
func (s *Server) compileQuery(parent string, sq *pb.StructuredQuery) (*query, error) {
	q, err := compileQuery(parent, sq)
	if err != nil {
		return nil, err
	}
	s.store.prepare(q)
	return q, nil
}

// addImplicitOrders appends what Firestore orders by implicitly: each
// inequality field not already ordered (in field path order), then
// __name__, both in the direction of the last explicit order.
func (q *query) addImplicitOrders(inequalities []fieldPath) {
	desc := len(q.orders) > 0 && q.orders[len(q.orders)-1].desc
	slices.SortFunc(inequalities, compareFieldPaths)
	for _, p := range inequalities {
		if !slices.ContainsFunc(q.orders, func(o order) bool { return o.path.equal(p) }) {
			q.orders = append(q.orders, order{path: p, desc: desc})
		}
	}
	if !slices.ContainsFunc(q.orders, func(o order) bool { return o.path.isName() }) {
		q.orders = append(q.orders, order{path: fieldPath{nameField}, desc: desc})
	}
}

func parseFieldRef(f *pb.StructuredQuery_FieldReference) (fieldPath, error) {
	if f == nil {
		return nil, status.Error(codes.InvalidArgument, "field reference is missing")
	}
	return parseFieldPath(f.FieldPath)
}

func compileCursor(c *pb.Cursor, orders []order, what string) (*cursor, error) {
	if c == nil {
		return nil, nil
	}
	if len(c.Values) > len(orders) {
		return nil, status.Errorf(codes.InvalidArgument,
			"%s has %d values but the query orders by only %d fields", what, len(c.Values), len(orders))
	}
	for i, v := range c.Values {
		if err := checkValue(v, 0, false); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s value %d: %s", what, i, status.Convert(err).Message())
		}
		if orders[i].path.isName() && typeRank(v) != rankReference {
			return nil, status.Errorf(codes.InvalidArgument, "%s value for __name__ must be a document reference", what)
		}
	}
	return &cursor{values: c.Values, before: c.Before}, nil
}

// maxFilterDepth bounds composite filter nesting, so that a hostile query
// cannot exhaust the stack.
const maxFilterDepth = 100

func compileFilter(f *pb.StructuredQuery_Filter, inequalities *[]fieldPath, depth int) (filter, error) {
	if depth > maxFilterDepth {
		return nil, status.Errorf(codes.InvalidArgument, "filters are nested more than %d levels deep", maxFilterDepth)
	}
	switch ft := f.GetFilterType().(type) {
	case *pb.StructuredQuery_Filter_CompositeFilter:
		cf := ft.CompositeFilter
		if cf == nil || len(cf.Filters) == 0 {
			return nil, status.Error(codes.InvalidArgument, "a composite filter needs at least one filter")
		}
		if cf.Op != pb.StructuredQuery_CompositeFilter_AND && cf.Op != pb.StructuredQuery_CompositeFilter_OR {
			return nil, status.Errorf(codes.InvalidArgument, "unknown composite filter operator %d", cf.Op)
		}
		c := compositeFilter{or: cf.Op == pb.StructuredQuery_CompositeFilter_OR}
		for _, sub := range cf.Filters {
			sf, err := compileFilter(sub, inequalities, depth+1)
			if err != nil {
				return nil, err
			}
			c.filters = append(c.filters, sf)
		}
		return c, nil
	case *pb.StructuredQuery_Filter_FieldFilter:
		return compileFieldFilter(ft.FieldFilter, inequalities)
	case *pb.StructuredQuery_Filter_UnaryFilter:
		uf := ft.UnaryFilter
		if uf == nil {
			return nil, status.Error(codes.InvalidArgument, "unary filter is empty")
		}
		p, err := parseFieldRef(uf.GetField())
		if err != nil {
			return nil, err
		}
		switch uf.Op {
		case pb.StructuredQuery_UnaryFilter_IS_NAN, pb.StructuredQuery_UnaryFilter_IS_NULL:
		case pb.StructuredQuery_UnaryFilter_IS_NOT_NAN, pb.StructuredQuery_UnaryFilter_IS_NOT_NULL:
			*inequalities = appendPath(*inequalities, p)
		default:
			return nil, status.Errorf(codes.InvalidArgument, "unknown unary filter operator %d", uf.Op)
		}
		return unaryFilter{path: p, op: uf.Op}, nil
	default:
		return nil, status.Error(codes.InvalidArgument, "filter has no filter type set")
	}
}

func appendPath(paths []fieldPath, p fieldPath) []fieldPath {
	if slices.ContainsFunc(paths, p.equal) {
		return paths
	}
	return append(paths, p)
}

func compileFieldFilter(ff *pb.StructuredQuery_FieldFilter, inequalities *[]fieldPath) (filter, error) {
	if ff == nil {
		return nil, status.Error(codes.InvalidArgument, "field filter is empty")
	}
	p, err := parseFieldRef(ff.Field)
	if err != nil {
		return nil, err
	}
	if err := checkValue(ff.Value, 0, false); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "filter on %s: %s", p, status.Convert(err).Message())
	}
	type F = pb.StructuredQuery_FieldFilter
	switch ff.Op {
	case pb.StructuredQuery_FieldFilter_LESS_THAN, pb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL,
		pb.StructuredQuery_FieldFilter_GREATER_THAN, pb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL,
		pb.StructuredQuery_FieldFilter_NOT_EQUAL:
		*inequalities = appendPath(*inequalities, p)
	case pb.StructuredQuery_FieldFilter_EQUAL, pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS:
	case pb.StructuredQuery_FieldFilter_IN, pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY, pb.StructuredQuery_FieldFilter_NOT_IN:
		if typeRank(ff.Value) != rankArray || len(ff.Value.GetArrayValue().GetValues()) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "a %s filter on %s needs a non-empty array value", ff.Op, p)
		}
		if ff.Op == pb.StructuredQuery_FieldFilter_NOT_IN {
			*inequalities = appendPath(*inequalities, p)
		}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown field filter operator %d", ff.Op)
	}
	if p.isName() {
		ok := typeRank(ff.Value) == rankReference
		if typeRank(ff.Value) == rankArray && ff.Op != pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS {
			ok = !slices.ContainsFunc(ff.Value.GetArrayValue().GetValues(), func(v *pb.Value) bool { return typeRank(v) != rankReference })
		}
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "a filter on __name__ must compare with document references")
		}
	}
	return fieldFilter{path: p, op: ff.Op, value: ff.Value}, nil
}

type compositeFilter struct {
	or      bool
	filters []filter
}

func (c compositeFilter) matches(doc *pb.Document) bool {
	for _, f := range c.filters {
		if f.matches(doc) == c.or {
			return c.or
		}
	}
	return !c.or
}

type fieldFilter struct {
	path  fieldPath
	op    pb.StructuredQuery_FieldFilter_Operator
	value *pb.Value
}

// matches follows Firestore: a document without the field never matches
// (not even != or not-in); range operators only match values of the
// filter value's type; NaN is not in any range.
func (f fieldFilter) matches(doc *pb.Document) bool {
	v, ok := docField(doc, f.path)
	if !ok {
		return false
	}
	inRange := func(want func(int) bool) bool {
		if !comparableTypes(v, f.value) || isNaN(v) || isNaN(f.value) {
			return false
		}
		return want(compareValues(v, f.value))
	}
	switch f.op {
	case pb.StructuredQuery_FieldFilter_LESS_THAN:
		return inRange(func(c int) bool { return c < 0 })
	case pb.StructuredQuery_FieldFilter_LESS_THAN_OR_EQUAL:
		return inRange(func(c int) bool { return c <= 0 })
	case pb.StructuredQuery_FieldFilter_GREATER_THAN:
		return inRange(func(c int) bool { return c > 0 })
	case pb.StructuredQuery_FieldFilter_GREATER_THAN_OR_EQUAL:
		return inRange(func(c int) bool { return c >= 0 })
	case pb.StructuredQuery_FieldFilter_EQUAL:
		return equalValues(v, f.value)
	case pb.StructuredQuery_FieldFilter_NOT_EQUAL:
		return !equalValues(v, f.value)
	case pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS:
		return typeRank(v) == rankArray && containsValue(v.GetArrayValue().GetValues(), f.value)
	case pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY:
		if typeRank(v) != rankArray {
			return false
		}
		for _, want := range f.value.GetArrayValue().GetValues() {
			if containsValue(v.GetArrayValue().GetValues(), want) {
				return true
			}
		}
		return false
	case pb.StructuredQuery_FieldFilter_IN:
		return containsValue(f.value.GetArrayValue().GetValues(), v)
	case pb.StructuredQuery_FieldFilter_NOT_IN:
		// A null in the list makes not-in match nothing, as in Firestore.
		list := f.value.GetArrayValue().GetValues()
		if slices.ContainsFunc(list, func(x *pb.Value) bool { return typeRank(x) == rankNull }) {
			return false
		}
		return !containsValue(list, v)
	default:
		return false
	}
}

type unaryFilter struct {
	path fieldPath
	op   pb.StructuredQuery_UnaryFilter_Operator
}

func (f unaryFilter) matches(doc *pb.Document) bool {
	v, ok := docField(doc, f.path)
	if !ok {
		return false
	}
	switch f.op {
	case pb.StructuredQuery_UnaryFilter_IS_NAN:
		return isNaN(v)
	case pb.StructuredQuery_UnaryFilter_IS_NULL:
		return typeRank(v) == rankNull
	case pb.StructuredQuery_UnaryFilter_IS_NOT_NAN:
		return !isNaN(v)
	case pb.StructuredQuery_UnaryFilter_IS_NOT_NULL:
		return typeRank(v) != rankNull
	default:
		return false
	}
}

// inScope reports whether a document name is in the query's collection
// (or, for all-descendants queries, in any collection of that ID below
// the parent).
func (q *query) inScope(name string) bool {
	// Cut, not concatenated: a query checks every document it reads, and
	// every change a collection group listener hears of.
	rest, ok := cutSegments(name, q.parent)
	if !ok {
		return false
	}
	if !q.allDescendants {
		id, ok := cutSegments(rest, q.collection)
		return ok && !strings.Contains(id, "/")
	}
	if q.collection == "" {
		return true
	}
	_, coll := parentAndCollection(name)
	return coll == q.collection
}

// cutSegments returns what follows prefix and a '/' in name, and false
// when name does not start so.
func cutSegments(name, prefix string) (string, bool) {
	if len(name) <= len(prefix) || name[len(prefix)] != '/' || !strings.HasPrefix(name, prefix) {
		return "", false
	}
	return name[len(prefix)+1:], true
}

// matchesDoc reports whether doc passes the query's filter and has every
// field the query orders by (ordering by a field also filters on its
// existence, in Firestore).
func (q *query) matchesDoc(doc *pb.Document) bool {
	if !q.inScope(doc.Name) {
		return false
	}
	for _, o := range q.orders {
		if _, ok := docField(doc, o.path); !ok {
			return false
		}
	}
	return q.where == nil || q.where.matches(doc)
}

// compare orders two documents by the query's orders.
func (q *query) compare(a, b *pb.Document) int {
	for _, o := range q.orders {
		va, _ := docField(a, o.path)
		vb, _ := docField(b, o.path)
		c := compareValues(va, vb)
		if o.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// compareCursor compares doc with a cursor position, over the orders the
// cursor gives values for.
func (q *query) compareCursor(doc *pb.Document, c *cursor) int {
	for i, want := range c.values {
		o := q.orders[i]
		v, _ := docField(doc, o.path)
		r := compareValues(v, want)
		if o.desc {
			r = -r
		}
		if r != 0 {
			return r
		}
	}
	return 0
}

func (q *query) withinCursors(doc *pb.Document) bool {
	if q.start != nil {
		c := q.compareCursor(doc, q.start)
		if c < 0 || (c == 0 && !q.start.before) {
			return false
		}
	}
	if q.end != nil {
		c := q.compareCursor(doc, q.end)
		if c > 0 || (c == 0 && q.end.before) {
			return false
		}
	}
	return true
}

// run evaluates the query at version v, returning the matching documents
// in order, after cursors, offset and limit. Callers hold st.mu.
func (q *query) run(st *store, v int64) []match {
	var out []match
	add := func(doc *pb.Document, ver int64) {
		if q.matchesDoc(doc) && q.withinCursors(doc) {
			out = append(out, match{doc: doc, version: ver})
		}
	}
	if colls, ok := st.candidates(q, v); ok {
		for _, docs := range colls {
			for _, h := range docs {
				if doc, ver := h.at(v); doc != nil {
					add(doc, ver)
				}
			}
		}
	} else if q.allDescendants && q.collection != "" {
		st.scanGroup(q.parent, q.collection, v, add)
	} else if q.allDescendants {
		st.scan(q.parent+"/", v, add)
	} else {
		st.scanCollection(q.parent+"/"+q.collection, v, add)
	}
	slices.SortFunc(out, func(a, b match) int { return q.compare(a.doc, b.doc) })
	if q.offset >= len(out) {
		return nil
	}
	out = out[q.offset:]
	if q.limit >= 0 && q.limit < len(out) {
		out = out[:q.limit]
	}
	return out
}

// output returns the document as the query reports it: projected if the
// query selects fields.
func (q *query) output(doc *pb.Document) *pb.Document {
	if !q.hasProjection {
		return doc
	}
	return &pb.Document{Name: doc.Name, Fields: project(doc.Fields, q.projection), CreateTime: doc.CreateTime, UpdateTime: doc.UpdateTime}
}

// RunQuery streams the documents a query returns.
func (s *Server) RunQuery(req *pb.RunQueryRequest, stream pb.Firestore_RunQueryServer) error {
	if req.GetExplainOptions() != nil {
		return status.Error(codes.Unimplemented, "explain_options is not supported by the sandrun Firestore emulator")
	}
	db, err := parseParent(req.GetParent())
	if err != nil {
		return err
	}
	q, err := s.compileQuery(req.GetParent(), req.GetStructuredQuery())
	if err != nil {
		return err
	}
	st := s.store
	st.mu.RLock()
	view, err := s.resolveRead(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		st.mu.RUnlock()
		return err
	}
	matches := q.run(st, view.version)
	readTime := timestamp(st.timeOf(view.version))
	if view.tx != nil {
		// Under the store lock, so that no write slips in between.
		view.tx.recordQuery(q)
	}
	st.mu.RUnlock()
	if len(matches) == 0 {
		return stream.Send(&pb.RunQueryResponse{ReadTime: readTime, Transaction: view.newTxID})
	}
	for i, m := range matches {
		resp := &pb.RunQueryResponse{Document: q.output(m.doc), ReadTime: readTime}
		if i == 0 {
			resp.Transaction = view.newTxID
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return nil
}

// RunAggregationQuery computes COUNT, SUM and AVG over a query's results.
func (s *Server) RunAggregationQuery(req *pb.RunAggregationQueryRequest, stream pb.Firestore_RunAggregationQueryServer) error {
	if req.GetExplainOptions() != nil {
		return status.Error(codes.Unimplemented, "explain_options is not supported by the sandrun Firestore emulator")
	}
	db, err := parseParent(req.GetParent())
	if err != nil {
		return err
	}
	saq := req.GetStructuredAggregationQuery()
	if saq == nil {
		return status.Error(codes.InvalidArgument, "structured aggregation query is missing")
	}
	q, err := s.compileQuery(req.GetParent(), saq.GetStructuredQuery())
	if err != nil {
		return err
	}
	aggs := saq.GetAggregations()
	if len(aggs) == 0 {
		return status.Error(codes.InvalidArgument, "an aggregation query needs at least one aggregation")
	}
	type agg struct {
		alias string
		a     *pb.StructuredAggregationQuery_Aggregation
		field fieldPath
	}
	var compiled []agg
	aliases := map[string]bool{}
	for i, a := range aggs {
		if a == nil {
			return status.Error(codes.InvalidArgument, "aggregation is empty")
		}
		alias := a.Alias
		if alias == "" {
			alias = "field_" + itoa(i+1)
		}
		if aliases[alias] {
			return status.Errorf(codes.InvalidArgument, "aggregation alias %q is used twice", alias)
		}
		aliases[alias] = true
		c := agg{alias: alias, a: a}
		switch op := a.Operator.(type) {
		case *pb.StructuredAggregationQuery_Aggregation_Count_:
			if op.Count.GetUpTo() != nil && op.Count.GetUpTo().GetValue() < 1 {
				return status.Error(codes.InvalidArgument, "count up_to must be at least 1")
			}
		case *pb.StructuredAggregationQuery_Aggregation_Sum_:
			if c.field, err = parseFieldRef(op.Sum.GetField()); err != nil {
				return err
			}
		case *pb.StructuredAggregationQuery_Aggregation_Avg_:
			if c.field, err = parseFieldRef(op.Avg.GetField()); err != nil {
				return err
			}
		default:
			return status.Error(codes.InvalidArgument, "aggregation has no operator set")
		}
		compiled = append(compiled, c)
	}
	st := s.store
	st.mu.RLock()
	view, err := s.resolveRead(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		st.mu.RUnlock()
		return err
	}
	matches := q.run(st, view.version)
	readTime := timestamp(st.timeOf(view.version))
	if view.tx != nil {
		// Under the store lock, so that no write slips in between.
		view.tx.recordQuery(q)
	}
	st.mu.RUnlock()
	fields := map[string]*pb.Value{}
	for _, c := range compiled {
		switch op := c.a.Operator.(type) {
		case *pb.StructuredAggregationQuery_Aggregation_Count_:
			n := int64(len(matches))
			if up := op.Count.GetUpTo(); up != nil && up.GetValue() < n {
				n = up.GetValue()
			}
			fields[c.alias] = &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: n}}
		case *pb.StructuredAggregationQuery_Aggregation_Sum_:
			fields[c.alias] = sumOf(matches, c.field)
		case *pb.StructuredAggregationQuery_Aggregation_Avg_:
			fields[c.alias] = avgOf(matches, c.field)
		}
	}
	return stream.Send(&pb.RunAggregationQueryResponse{
		Result:      &pb.AggregationResult{AggregateFields: fields},
		ReadTime:    readTime,
		Transaction: view.newTxID,
	})
}

// sumOf adds the numeric values of a field: an integer while every value
// is an integer and the sum fits, a double otherwise. Non-numbers are
// skipped.
func sumOf(ms []match, p fieldPath) *pb.Value {
	var (
		isum    int64
		fsum    float64
		isFloat bool
	)
	for _, m := range ms {
		v, ok := docField(m.doc, p)
		if !ok || typeRank(v) != rankNumber {
			continue
		}
		if i, ok := v.ValueType.(*pb.Value_IntegerValue); ok && !isFloat {
			next := isum + i.IntegerValue
			if (i.IntegerValue > 0 && next < isum) || (i.IntegerValue < 0 && next > isum) {
				isFloat, fsum = true, float64(isum)+float64(i.IntegerValue)
				continue
			}
			isum = next
			continue
		}
		if !isFloat {
			isFloat, fsum = true, float64(isum)
		}
		fsum += toFloat(v)
	}
	if isFloat {
		return &pb.Value{ValueType: &pb.Value_DoubleValue{DoubleValue: fsum}}
	}
	return &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: isum}}
}

// avgOf is the mean of a field's numeric values as a double, or null when
// there are none.
func avgOf(ms []match, p fieldPath) *pb.Value {
	var (
		sum float64
		n   int
	)
	for _, m := range ms {
		if v, ok := docField(m.doc, p); ok && typeRank(v) == rankNumber {
			sum += toFloat(v)
			n++
		}
	}
	if n == 0 {
		return &pb.Value{ValueType: &pb.Value_NullValue{}}
	}
	return &pb.Value{ValueType: &pb.Value_DoubleValue{DoubleValue: sum / float64(n)}}
}
