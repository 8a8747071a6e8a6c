package firestore

import (
	"slices"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
)

// A fieldIndex finds the documents of every collection with one ID (as a
// collection group does) by the value of one field, so that a query with
// an equality filter on that field reads only the documents that can
// match instead of its whole collection, or, for a collection group query,
// every document of the database. A reaper pass runs such queries over
// the inbox of every session, which grows with every request served.
//
// Indexes are created the first time a query could use one (see
// store.prepare), kept up to date by install and prune, and never
// dropped. They only narrow what a query reads: the query still applies
// its whole filter to each document it reads, so a result is the same
// with and without them.
//
// An index has two listings. entries covers every retained version: a
// document is listed under the value of each of its retained versions, so
// that a read at an older version (a transaction's snapshot, a read_time)
// finds it too; install adds the new version's value, prune removes the
// values that no retained version holds any more. latest lists each
// document under its latest version's value only, for reads at the latest
// version, most of them: in entries, every request of the history's last
// minute stays under "queued", which a query of the queued requests then
// reads.
type fieldIndex struct {
	path    fieldPath
	entries listing
	latest  listing
}

// A listing holds documents by value, then collection path, then name, so
// that a query of one collection (a host's of its session's inbox) reads
// that collection's documents with the value, not every session's.
type listing map[indexValue]map[string]map[string]*history

// indexValue is a value an index can key by: one whose equality is plain
// equality of (type, content), so that a map lookup finds exactly the
// values Firestore's equality matches. Numbers are left out (1 equals 1.0,
// and NaN needs care), as are timestamps, bytes, references and
// composites: their filters scan.
type indexValue struct {
	rank int
	s    string // a string's content
	b    bool   // a boolean's value
}

// indexValueOf returns v's key, and false when v is not of a type indexes
// key by.
func indexValueOf(v *pb.Value) (indexValue, bool) {
	switch x := v.GetValueType().(type) {
	case *pb.Value_NullValue:
		return indexValue{rank: rankNull}, true
	case *pb.Value_BooleanValue:
		return indexValue{rank: rankBool, b: x.BooleanValue}, true
	case *pb.Value_StringValue:
		return indexValue{rank: rankString, s: x.StringValue}, true
	default:
		return indexValue{}, false
	}
}

// keyOf returns the key doc is listed under, and false when doc is nil
// (deleted) or has no indexable value at the index's field.
func (ix *fieldIndex) keyOf(doc *pb.Document) (indexValue, bool) {
	if doc == nil {
		return indexValue{}, false
	}
	v, ok := getField(doc.GetFields(), ix.path)
	if !ok {
		return indexValue{}, false
	}
	return indexValueOf(v)
}

// add lists a new version of document name (h its history): under its
// value k in entries, and in latest in place of the previous version's
// value prev (ok and prevOK tell whether each has one).
func (ix *fieldIndex) add(name string, h *history, prev indexValue, prevOK bool, k indexValue, ok bool) {
	if prevOK && (!ok || prev != k) {
		ix.latest.remove(prev, name)
	}
	if ok {
		ix.entries.add(k, name, h)
		ix.latest.add(k, name, h)
	}
}

func (l listing) add(k indexValue, name string, h *history) {
	byColl := l[k]
	if byColl == nil {
		byColl = map[string]map[string]*history{}
		l[k] = byColl
	}
	coll := collectionOf(name)
	e := byColl[coll]
	if e == nil {
		e = map[string]*history{}
		byColl[coll] = e
	}
	e[name] = h
}

func (l listing) remove(k indexValue, name string) {
	byColl := l[k]
	coll := collectionOf(name)
	e := byColl[coll]
	delete(e, name)
	if len(e) == 0 {
		delete(byColl, coll)
	}
	if len(byColl) == 0 {
		delete(l, k)
	}
}

// lookup returns the documents listed under k in q's scope, by
// collection (its own collection, or for a collection group query each
// collection below its parent), and how many they are.
func (l listing) lookup(k indexValue, q *query) ([]map[string]*history, int) {
	byColl := l[k]
	if !q.allDescendants {
		e := byColl[q.parent+"/"+q.collection]
		return []map[string]*history{e}, len(e)
	}
	var out []map[string]*history
	n := 0
	for coll, e := range byColl {
		if _, ok := cutSegments(coll, q.parent); ok {
			out = append(out, e)
			n += len(e)
		}
	}
	return out, n
}

// keys returns the keys of versions, each once.
func (ix *fieldIndex) keys(versions []docVersion) []indexValue {
	var out []indexValue
	for _, dv := range versions {
		if k, ok := ix.keyOf(dv.doc); ok && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// holds reports whether one of versions is listed under k.
func (ix *fieldIndex) holds(versions []docVersion, k indexValue) bool {
	for _, dv := range versions {
		if got, ok := ix.keyOf(dv.doc); ok && got == k {
			return true
		}
	}
	return false
}

// equalities returns the equality filters on indexable values that every
// document a filter matches must pass: f itself, or the conjuncts of an
// AND, recursively. Other filters (OR, ranges, IN) give none.
func equalities(f filter) []fieldFilter {
	switch f := f.(type) {
	case fieldFilter:
		if f.op != pb.StructuredQuery_FieldFilter_EQUAL || f.path.isName() {
			return nil
		}
		if _, ok := indexValueOf(f.value); !ok {
			return nil
		}
		return []fieldFilter{f}
	case compositeFilter:
		if f.or {
			return nil
		}
		var out []fieldFilter
		for _, sub := range f.filters {
			out = append(out, equalities(sub)...)
		}
		return out
	default:
		return nil
	}
}

// indexable reports whether q can read through an index: it names one
// collection ID and has an equality filter on an indexable value.
func (q *query) indexable() bool {
	return q.collection != "" && len(q.equalities) > 0
}

// prepare creates the indexes q can use that do not exist yet. It takes
// the write lock only to create one; callers do not hold s.mu.
func (s *store) prepare(q *query) {
	if !q.indexable() {
		return
	}
	missing := func() bool {
		for _, f := range q.equalities {
			if s.indexes[q.collection][f.path.String()] == nil {
				return true
			}
		}
		return false
	}
	s.mu.RLock()
	m := missing()
	s.mu.RUnlock()
	if !m {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range q.equalities {
		s.createIndex(q.collection, f.path)
	}
}

// createIndex indexes the documents of collections with ID coll by path,
// unless that index exists. Callers hold s.mu for writing.
func (s *store) createIndex(coll string, path fieldPath) {
	byPath := s.indexes[coll]
	if byPath == nil {
		byPath = map[string]*fieldIndex{}
		s.indexes[coll] = byPath
	}
	if byPath[path.String()] != nil {
		return
	}
	ix := &fieldIndex{path: path, entries: listing{}, latest: listing{}}
	byPath[path.String()] = ix
	for name, h := range s.docs {
		if _, c := parentAndCollection(name); c != coll {
			continue
		}
		for _, k := range ix.keys(h.versions) {
			ix.entries.add(k, name, h)
		}
		if k, ok := ix.keyOf(h.versions[len(h.versions)-1].doc); ok {
			ix.latest.add(k, name, h)
		}
	}
}

// indexesOf returns the indexes that cover document name. Callers hold
// s.mu.
func (s *store) indexesOf(name string) map[string]*fieldIndex {
	if len(s.indexes) == 0 {
		return nil
	}
	_, coll := parentAndCollection(name)
	return s.indexes[coll]
}

// candidates returns the documents q needs to read at most at version v,
// by collection, from its smallest index entry, and false when no index
// applies or the scan reads fewer (a collection smaller than the entry).
// Callers hold s.mu.
func (s *store) candidates(q *query, v int64) ([]map[string]*history, bool) {
	if q.collection == "" {
		return nil, false
	}
	byPath := s.indexes[q.collection]
	if byPath == nil {
		return nil, false
	}
	var best []map[string]*history
	size, found := 0, false
	for _, f := range q.equalities {
		ix := byPath[f.path.String()]
		if ix == nil {
			continue
		}
		l := ix.entries
		if v == s.version {
			l = ix.latest
		}
		k, _ := indexValueOf(f.value)
		if docs, n := l.lookup(k, q); !found || n < size {
			best, size, found = docs, n, true
		}
	}
	if !found {
		return nil, false
	}
	if !q.allDescendants && len(s.colls[q.parent+"/"+q.collection]) <= size {
		return nil, false
	}
	return best, true
}
