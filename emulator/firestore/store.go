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

	mu      sync.RWMutex
	docs    map[string]*history // by full document name
	version int64               // the latest committed version
	// commits describes each retained version, consecutive from the floor:
	// commits[i].version == commits[0].version+i. Versions before the
	// floor cannot be read.
	commits []commitRecord
	// changed is closed and replaced at every commit that changes a
	// document, waking Listen streams.
	changed chan struct{}
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
		commits:   []commitRecord{{version: 0, time: now().UTC().Truncate(time.Microsecond)}},
		changed:   make(chan struct{}),
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
		}
		h.versions = append(h.versions, docVersion{version: v, doc: doc})
		names = append(names, name)
	}
	s.commits = append(s.commits, commitRecord{version: v, time: t, names: names})
	if len(names) > 0 {
		close(s.changed)
		s.changed = make(chan struct{})
	}
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
				h.versions = append([]docVersion(nil), h.versions[j-1:]...)
			}
			if len(h.versions) == 1 && h.versions[0].doc == nil && h.versions[0].version <= floor {
				delete(s.docs, name)
			}
		}
	}
	// Reslicing (not copying) keeps pruning cheap; append reallocates the
	// array now and then, which frees the dropped prefix.
	clear(dropped)
	s.commits = s.commits[i-1:]
}

// changedSince reports whether a commit after version from changed a
// document that touches reports as relevant, and the latest version.
// When the history no longer reaches back to from it answers true.
func (s *store) changedSince(from int64, touches func(name string) bool) (bool, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if from < s.floor() {
		return true, s.version
	}
	for v := from + 1; v <= s.version; v++ {
		for _, name := range s.commits[v-s.floor()].names {
			if touches(name) {
				return true, s.version
			}
		}
	}
	return false, s.version
}
