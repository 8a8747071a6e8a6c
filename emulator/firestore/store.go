package firestore

import (
	"sort"
	"strings"
	"sync"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// store holds every document of every database the server has seen, as a
// multi-version history: each commit gets the next version number and a
// strictly increasing commit time, and each document keeps the versions
// written within the retention window. Reading "at version v" gives a
// consistent snapshot, which serves read_time reads, read-only
// transactions and Listen resumption.
//
// Stored *pb.Document values are immutable once stored: readers share
// them without copying, and writers build new ones.
type store struct {
	now       func() time.Time
	retention time.Duration

	mu   sync.RWMutex
	docs map[string]*history // by full document name
	// colls indexes docs by collection path (a document's name up to its
	// last '/'), so that a query reads only its own collection.
	colls map[string]map[string]*history
	// groups lists the paths in colls by collection ID, so that a
	// collection group query reads its own collections, not every
	// document of the database (every session's inbox, for the reaper's
	// queries on its hosts' leases).
	groups map[string]map[string]struct{}
	// indexes are the equality indexes queries have asked for (see
	// fieldIndex), by collection ID, then field path.
	indexes map[string]map[string]*fieldIndex
	version int64 // the latest committed version
	// commits describes each retained version, consecutive from the floor:
	// commits[i].version == commits[0].version+i. Versions before the
	// floor cannot be read.
	commits []commitRecord
	// Listen targets' interests (see watcher): by the collection path or
	// document name they cover, and the collection group queries, which
	// match checks.
	interests map[string]map[*interest]struct{}
	matchers  map[*interest]struct{}
}

type commitRecord struct {
	version int64
	time    time.Time
	names   []string // documents this commit changed
}

// history is the retained versions of one document, oldest first.
type history struct {
	versions []docVersion
}

type docVersion struct {
	version int64
	doc     *pb.Document // nil: the document was deleted at this version
}

func newStore(now func() time.Time, retention time.Duration) *store {
	return &store{
		now:       now,
		retention: retention,
		docs:      map[string]*history{},
		colls:     map[string]map[string]*history{},
		groups:    map[string]map[string]struct{}{},
		indexes:   map[string]map[string]*fieldIndex{},
		commits:   []commitRecord{{version: 0, time: now().UTC().Truncate(time.Microsecond)}},
		interests: map[string]map[*interest]struct{}{},
		matchers:  map[*interest]struct{}{},
	}
}

// at returns the document as of version v and the version that wrote it;
// nil and 0 if it did not exist then.
func (h *history) at(v int64) (*pb.Document, int64) {
	if h == nil {
		return nil, 0
	}
	i := sort.Search(len(h.versions), func(i int) bool { return h.versions[i].version > v })
	if i == 0 {
		return nil, 0
	}
	dv := h.versions[i-1]
	if dv.doc == nil {
		return nil, 0
	}
	return dv.doc, dv.version
}

// get returns the document name at version v (nil if missing) and the
// version that wrote it (0 if missing). Callers hold s.mu.
func (s *store) get(name string, v int64) (*pb.Document, int64) {
	return s.docs[name].at(v)
}

// floor is the oldest readable version. Callers hold s.mu.
func (s *store) floor() int64 { return s.commits[0].version }

// timeOf returns the commit time of a retained version. Callers hold s.mu
// and pass floor() <= v <= s.version.
func (s *store) timeOf(v int64) time.Time {
	return s.commits[v-s.floor()].time
}

// versionAt returns the latest version committed at or before t. Callers
// hold s.mu.
func (s *store) versionAt(t time.Time) (int64, error) {
	i := sort.Search(len(s.commits), func(i int) bool { return s.commits[i].time.After(t) })
	if i == 0 {
		return 0, status.Errorf(codes.FailedPrecondition,
			"read_time %s is older than the %s of history the emulator keeps", t.Format(time.RFC3339Nano), s.retention)
	}
	return s.commits[i-1].version, nil
}

// checkReadable reports whether version v can still be read. Callers hold
// s.mu.
func (s *store) checkReadable(v int64) error {
	if v < s.floor() {
		return status.Errorf(codes.FailedPrecondition,
			"the snapshot this read needs is older than the %s of history the emulator keeps", s.retention)
	}
	return nil
}

// scan calls fn for every document that exists at version v and whose name
// starts with prefix. Callers hold s.mu. Order is unspecified.
func (s *store) scan(prefix string, v int64, fn func(doc *pb.Document, version int64)) {
	for name, h := range s.docs {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		if doc, ver := h.at(v); doc != nil {
			fn(doc, ver)
		}
	}
}

// scanCollection calls fn for every document of collection coll (a
// collection path: a parent's name, '/', a collection ID) that exists at
// version v. Callers hold s.mu. Order is unspecified.
func (s *store) scanCollection(coll string, v int64, fn func(doc *pb.Document, version int64)) {
	for _, h := range s.colls[coll] {
		if doc, ver := h.at(v); doc != nil {
			fn(doc, ver)
		}
	}
}

// scanGroup calls fn for every document that exists at version v in a
// collection with ID id below parent (a document name or the documents
// root). Callers hold s.mu. Order is unspecified.
func (s *store) scanGroup(parent, id string, v int64, fn func(doc *pb.Document, version int64)) {
	for coll := range s.groups[id] {
		if _, below := cutSegments(coll, parent); below {
			s.scanCollection(coll, v, fn)
		}
	}
}

// collectionID returns the last segment of a collection path.
func collectionID(coll string) string {
	return coll[strings.LastIndexByte(coll, '/')+1:]
}

// collectionOf returns the path of the collection that holds document
// name.
func collectionOf(name string) string {
	return name[:strings.LastIndexByte(name, '/')]
}

// scanNames calls fn for the names of all documents that exist at version
// v and start with prefix. Callers hold s.mu.
func (s *store) scanNames(prefix string, v int64, fn func(name string)) {
	s.scan(prefix, v, func(doc *pb.Document, _ int64) { fn(doc.Name) })
}

// nextCommitTime returns the time the next commit will carry: now, but
// always after the previous commit and at microsecond precision, as
// Firestore's timestamps are. Callers hold s.mu for writing.
func (s *store) nextCommitTime() time.Time {
	t := s.now().UTC().Truncate(time.Microsecond)
	if last := s.commits[len(s.commits)-1].time; !t.After(last) {
		t = last.Add(time.Microsecond)
	}
	return t
}

// install commits changes (document name to new document, nil to delete)
// as the next version at time t, then drops history older than the
// retention window. Callers hold s.mu for writing and have computed t with
// nextCommitTime. An empty change set still consumes a version so that
// every commit has its own time.
func (s *store) install(changes map[string]*pb.Document, t time.Time) int64 {
	s.version++
	v := s.version
	names := make([]string, 0, len(changes))
	for name, doc := range changes {
		h := s.docs[name]
		if h == nil {
			if doc == nil {
				continue // deleting what never existed
			}
			h = &history{}
			s.docs[name] = h
			coll := collectionOf(name)
			if s.colls[coll] == nil {
				s.colls[coll] = map[string]*history{}
				id := collectionID(coll)
				if s.groups[id] == nil {
					s.groups[id] = map[string]struct{}{}
				}
				s.groups[id][coll] = struct{}{}
			}
			s.colls[coll][name] = h
		}
		var prev *pb.Document
		if n := len(h.versions); n > 0 {
			prev = h.versions[n-1].doc
		}
		h.versions = append(h.versions, docVersion{version: v, doc: doc})
		for _, ix := range s.indexesOf(name) {
			pk, pok := ix.keyOf(prev)
			k, ok := ix.keyOf(doc)
			ix.add(name, h, pk, pok, k, ok)
		}
		names = append(names, name)
	}
	s.commits = append(s.commits, commitRecord{version: v, time: t, names: names})
	s.wake(names)
	s.prune(t)
	return v
}

// prune forgets versions no read can need any more: those superseded
// before the retention window began. Only documents named by the commits
// that leave the window can hold such versions.
func (s *store) prune(now time.Time) {
	horizon := now.Add(-s.retention)
	// Keep the latest commit at or before the horizon as the new floor.
	i := sort.Search(len(s.commits), func(i int) bool { return s.commits[i].time.After(horizon) })
	if i <= 1 {
		return
	}
	dropped := s.commits[:i-1]
	floor := s.commits[i-1].version
	for _, c := range dropped {
		for _, name := range c.names {
			h := s.docs[name]
			if h == nil {
				continue
			}
			// Keep the newest version at or before the floor, and all later ones.
			j := sort.Search(len(h.versions), func(j int) bool { return h.versions[j].version > floor })
			if j > 1 {
				gone := h.versions[:j-1]
				h.versions = h.versions[j-1:]
				// Unlist the document from the values only the dropped
				// versions held. A document written by every commit keeps
				// thousands of versions: looking at the dropped ones, and
				// at the kept ones only until one holds the value, keeps
				// this in proportion to what is dropped.
				for _, ix := range s.indexesOf(name) {
					for _, k := range ix.keys(gone) {
						if !ix.holds(h.versions, k) {
							ix.entries.remove(k, name)
						}
					}
				}
				// Reslicing, as for commits below: clear the dropped
				// versions so that their documents can be freed before
				// append reallocates the array.
				clear(gone)
			}
			if len(h.versions) == 1 && h.versions[0].doc == nil && h.versions[0].version <= floor {
				delete(s.docs, name)
				coll := collectionOf(name)
				delete(s.colls[coll], name)
				if len(s.colls[coll]) == 0 {
					delete(s.colls, coll)
					id := collectionID(coll)
					delete(s.groups[id], coll)
					if len(s.groups[id]) == 0 {
						delete(s.groups, id)
					}
				}
			}
		}
	}
	// Reslicing (not copying) keeps pruning cheap; append reallocates the
	// array now and then, which frees the dropped prefix.
	clear(dropped)
	s.commits = s.commits[i-1:]
}

// A watcher is a Listen stream waiting for commits that can change its
// targets' results. Each target registers an interest; install wakes the
// watchers whose interests cover a document it changed, and no others,
// and adds the document's name to the watcher's changed set.
//
// wake holds at most one pending wake-up, so install never blocks. No
// wake-up is lost: a commit that finds one pending comes after it, and the
// stream reads the store only after it takes the pending one, so that
// read sees the commit. A stream that registers before it first reads the
// store is thus woken for every later commit that touches its targets.
type watcher struct {
	wake chan struct{}
	// changed names the documents its interests cover that commits have
	// changed since the stream last took the set (with takeChanged).
	// Guarded by store.mu: install adds under the write lock; the stream,
	// its only reader, takes it under the read lock.
	changed map[string]struct{}
}

func newWatcher() *watcher {
	return &watcher{wake: make(chan struct{}, 1), changed: map[string]struct{}{}}
}

func (w *watcher) notify(name string) {
	w.changed[name] = struct{}{}
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// takeChanged returns the documents changed since the last call and
// starts a new set. Callers hold store.mu (for reading suffices), so the
// set is exactly the changes up to the version they read.
func (w *watcher) takeChanged() map[string]struct{} {
	c := w.changed
	if len(c) > 0 {
		w.changed = map[string]struct{}{}
	}
	return c
}

// interest is the documents one Listen target reads: those named by keys
// (collection paths, whose every document counts, and document names),
// and those match accepts (for collection group queries).
type interest struct {
	w     *watcher
	keys  []string
	match func(name string) bool
}

// watch registers in; install wakes in.w from now on.
func (s *store) watch(in *interest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range in.keys {
		if s.interests[k] == nil {
			s.interests[k] = map[*interest]struct{}{}
		}
		s.interests[k][in] = struct{}{}
	}
	if in.match != nil {
		s.matchers[in] = struct{}{}
	}
}

// unwatch removes interests registered with watch.
func (s *store) unwatch(ins ...*interest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range ins {
		for _, k := range in.keys {
			delete(s.interests[k], in)
			if len(s.interests[k]) == 0 {
				delete(s.interests, k)
			}
		}
		delete(s.matchers, in)
	}
}

// wake notifies the watchers whose interests cover the changed documents:
// a few map lookups per document, plus one match call per collection
// group listener. Callers hold s.mu for writing.
func (s *store) wake(names []string) {
	for _, name := range names {
		for in := range s.interests[name] {
			in.w.notify(name)
		}
		for in := range s.interests[collectionOf(name)] {
			in.w.notify(name)
		}
		for in := range s.matchers {
			if in.match(name) {
				in.w.notify(name)
			}
		}
	}
}
