package firestore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// txnLifetime is how long a transaction stays usable: Firestore's limit of
// 270 seconds. txnIdle is how long it stays usable, and keeps its locks,
// without a read or commit: Firestore's 60 seconds, which Google's emulator
// keeps too (a write blocked by an abandoned transaction went through 63 s
// after the transaction's last read, not at 58 s).
const (
	txnLifetime = 270 * time.Second
	txnIdle     = 60 * time.Second
)

// DefaultLockTimeout is how long a write waits for a transaction's lock
// before it fails with ABORTED "Transaction lock timeout.": 2 seconds, as
// measured on Google's Firestore emulator (docs/reliability.md).
const DefaultLockTimeout = 2 * time.Second

// errLockTimeout is the error of a write that waited DefaultLockTimeout for
// a lock, in the words of Google's emulator.
var errLockTimeout = status.Error(codes.Aborted, "Transaction lock timeout.")

// txn is an open transaction. A read-write transaction locks what it reads,
// as Firestore's pessimistic concurrency does: every document it reads
// (found or missing) and, for each query it runs, every document the query
// could match. A write that touches a locked document waits until the
// transaction ends (see Server.commit). Read-only transactions read one
// snapshot and lock nothing.
type txn struct {
	id       string
	db       string
	readOnly bool
	version  int64     // read-only: the snapshot every read uses
	deadline time.Time // begin + txnLifetime
	expires  time.Time // the earlier of deadline and last use + txnIdle

	mu      sync.Mutex
	reads   map[string]struct{} // names of the documents read (found or missing)
	queries []*query
}

// recordRead notes that the transaction read (and so locked) name.
func (t *txn) recordRead(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reads[name] = struct{}{}
}

// recordQuery notes that the transaction ran q, which locks every document
// q matches, including ones created or changed later (no phantoms).
func (t *txn) recordQuery(q *query) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.queries = append(t.queries, q)
}

// locks reports whether the transaction holds a lock on c's document:
// it read the document, or ran a query that matches the document before
// or after the change.
func (t *txn) locks(c change) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.reads[c.name]; ok {
		return true
	}
	for _, q := range t.queries {
		if (c.old != nil && q.matchesDoc(c.old)) || (c.new != nil && q.matchesDoc(c.new)) {
			return true
		}
	}
	return false
}

// change is one document a commit writes, before and after (nil: missing).
type change struct {
	name     string
	old, new *pb.Document
}

// txnTable holds open transactions by ID.
type txnTable struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]*txn
	// ended is closed, and replaced, whenever a transaction ends, which
	// wakes the writes waiting for its locks.
	ended chan struct{}
}

func newTxnTable(now func() time.Time) *txnTable {
	return &txnTable{now: now, m: map[string]*txn{}, ended: make(chan struct{})}
}

// removeLocked forgets a transaction, releasing its locks. Callers hold
// tt.mu.
func (tt *txnTable) removeLocked(id string) {
	if _, ok := tt.m[id]; !ok {
		return
	}
	delete(tt.m, id)
	close(tt.ended)
	tt.ended = make(chan struct{})
}

// end forgets a transaction once it has committed, failed or been rolled
// back, releasing its locks. Ending one twice is harmless.
func (tt *txnTable) end(t *txn) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.removeLocked(t.id)
}

// waitEnded returns a channel closed when the next transaction ends. Take
// it before looking for locks, so that no ending between the look and the
// wait is missed.
func (tt *txnTable) waitEnded() <-chan struct{} {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.ended
}

// lockedBy reports whether an open read-write transaction of database db,
// other than self, holds a lock on one of changes. A transaction past its
// lifetime holds nothing: it can no longer commit.
func (tt *txnTable) lockedBy(db string, self *txn, changes []change) bool {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	now := tt.now()
	for _, t := range tt.m {
		if t == self || t.readOnly || t.db != db || now.After(t.expires) {
			continue
		}
		for _, c := range changes {
			if t.locks(c) {
				return true
			}
		}
	}
	return false
}

// begin opens a transaction. version is the snapshot of a read-only one.
func (tt *txnTable) begin(db string, readOnly bool, version int64) *txn {
	var id [16]byte
	_, _ = rand.Read(id[:])
	now := tt.now()
	binary.BigEndian.PutUint64(id[:8], uint64(now.UnixNano()))
	t := &txn{
		id:       string(id[:]),
		db:       db,
		readOnly: readOnly,
		version:  version,
		deadline: now.Add(txnLifetime),
		expires:  now.Add(txnIdle),
		reads:    map[string]struct{}{},
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for k, old := range tt.m { // forget abandoned transactions
		if now.After(old.expires) {
			tt.removeLocked(k)
		}
	}
	tt.m[t.id] = t
	return t
}

func (tt *txnTable) lookup(db string, id []byte, remove bool) (*txn, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t, ok := tt.m[string(id)]
	if !ok || tt.now().After(t.expires) {
		tt.removeLocked(string(id))
		return nil, status.Errorf(codes.InvalidArgument,
			"transaction %s has expired or is no longer valid", hex.EncodeToString(id))
	}
	if t.db != db {
		return nil, status.Errorf(codes.InvalidArgument,
			"transaction %s belongs to database %s, not %s", hex.EncodeToString(id), t.db, db)
	}
	if remove {
		tt.removeLocked(string(id))
	}
	if idle := tt.now().Add(txnIdle); idle.Before(t.deadline) {
		t.expires = idle
	} else {
		t.expires = t.deadline
	}
	return t, nil
}

// get returns an open transaction for a read.
func (tt *txnTable) get(db string, id []byte) (*txn, error) { return tt.lookup(db, id, false) }

// take ends a transaction and returns it, for Rollback.
func (tt *txnTable) take(db string, id []byte) (*txn, error) { return tt.lookup(db, id, true) }

// BeginTransaction opens a read-write or read-only transaction.
func (s *Server) BeginTransaction(ctx context.Context, req *pb.BeginTransactionRequest) (*pb.BeginTransactionResponse, error) {
	db, err := parseDatabase(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	st := s.store
	st.mu.RLock()
	defer st.mu.RUnlock()
	t, err := s.beginLocked(db, req.GetOptions())
	if err != nil {
		return nil, err
	}
	return &pb.BeginTransactionResponse{Transaction: []byte(t.id)}, nil
}

// beginLocked opens a transaction with opts (nil: read-write). Callers
// hold s.store.mu.
func (s *Server) beginLocked(db string, opts *pb.TransactionOptions) (*txn, error) {
	st := s.store
	ro := opts.GetReadOnly()
	if ro == nil {
		return s.txns.begin(db, false, 0), nil
	}
	version := st.version
	if rt := ro.GetReadTime(); rt != nil {
		v, err := readTimeVersion(st, rt)
		if err != nil {
			return nil, err
		}
		version = v
	}
	return s.txns.begin(db, true, version), nil
}

// Rollback ends a transaction without writing.
func (s *Server) Rollback(ctx context.Context, req *pb.RollbackRequest) (*emptypb.Empty, error) {
	db, err := parseDatabase(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	if len(req.GetTransaction()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "rollback needs a transaction")
	}
	if _, err := s.txns.take(db, req.GetTransaction()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func readTimeVersion(st *store, rt *timestamppb.Timestamp) (int64, error) {
	if err := rt.CheckValid(); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "invalid read_time: %v", err)
	}
	return st.versionAt(rt.AsTime())
}

// readView says which snapshot a read uses and where it records what it
// read.
type readView struct {
	version int64
	tx      *txn   // a read-write transaction to record reads in, or nil
	newTxID []byte // the ID of a transaction this read began, to return
}

// record notes a document read in the transaction, if any.
func (v *readView) record(name string) {
	if v.tx != nil {
		v.tx.recordRead(name)
	}
}

// resolveRead turns a request's consistency selector into a readView.
// Callers hold s.store.mu.
func (s *Server) resolveRead(db string, txID []byte, newTx *pb.TransactionOptions, readTime *timestamppb.Timestamp) (*readView, error) {
	st := s.store
	switch {
	case len(txID) > 0:
		t, err := s.txns.get(db, txID)
		if err != nil {
			return nil, err
		}
		if t.readOnly {
			if err := st.checkReadable(t.version); err != nil {
				return nil, err
			}
			return &readView{version: t.version}, nil
		}
		return &readView{version: st.version, tx: t}, nil
	case newTx != nil:
		t, err := s.beginLocked(db, newTx)
		if err != nil {
			return nil, err
		}
		view := &readView{version: st.version, newTxID: []byte(t.id)}
		if t.readOnly {
			view.version = t.version
		} else {
			view.tx = t
		}
		return view, nil
	case readTime != nil:
		v, err := readTimeVersion(st, readTime)
		if err != nil {
			return nil, err
		}
		return &readView{version: v}, nil
	default:
		return &readView{version: st.version}, nil
	}
}
