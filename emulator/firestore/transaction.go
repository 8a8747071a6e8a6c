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
// 270 seconds.
const txnLifetime = 270 * time.Second

// txn is an open transaction. Read-write transactions are optimistic: they
// read the latest data and remember what they saw, and Commit aborts them
// if any of it has changed. Read-only transactions read one snapshot.
type txn struct {
	id       string
	db       string
	readOnly bool
	version  int64 // read-only: the snapshot every read uses
	expires  time.Time

	mu      sync.Mutex
	reads   map[string]int64 // document name to the version read (0: missing)
	queries []txnQuery
}

// txnQuery is a query a read-write transaction ran and what it returned.
type txnQuery struct {
	q    *query
	seen []docRef
}

type docRef struct {
	name    string
	version int64
}

// recordRead notes that the transaction saw name at version (0: missing).
// A second read of the same document keeps the first version: if the two
// differ, the transaction has seen inconsistent data and must abort, which
// validate detects since the first version is no longer current.
func (t *txn) recordRead(name string, version int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.reads[name]; !ok {
		t.reads[name] = version
	}
}

func (t *txn) recordQuery(q *query, seen []docRef) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.queries = append(t.queries, txnQuery{q: q, seen: seen})
}

// validate checks, at commit and with the store locked for writing, that
// every document and query the transaction read would read the same now.
func (t *txn) validate(st *store) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, seen := range t.reads {
		if _, now := st.get(name, st.version); now != seen {
			return status.Errorf(codes.Aborted,
				"transaction aborted: document %s changed after the transaction read it; retry the transaction", name)
		}
	}
	for _, tq := range t.queries {
		now := tq.q.run(st, st.version)
		same := len(now) == len(tq.seen)
		for i := 0; same && i < len(now); i++ {
			same = now[i].doc.Name == tq.seen[i].name && now[i].version == tq.seen[i].version
		}
		if !same {
			return status.Errorf(codes.Aborted,
				"transaction aborted: the results of a query under %s changed after the transaction ran it; retry the transaction", tq.q.parent)
		}
	}
	return nil
}

// txnTable holds open transactions by ID.
type txnTable struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]*txn
}

func newTxnTable(now func() time.Time) *txnTable {
	return &txnTable{now: now, m: map[string]*txn{}}
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
		expires:  now.Add(txnLifetime),
		reads:    map[string]int64{},
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for k, old := range tt.m { // forget abandoned transactions
		if now.After(old.expires) {
			delete(tt.m, k)
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
		delete(tt.m, string(id))
		return nil, status.Errorf(codes.InvalidArgument,
			"transaction %s has expired or is no longer valid", hex.EncodeToString(id))
	}
	if t.db != db {
		return nil, status.Errorf(codes.InvalidArgument,
			"transaction %s belongs to database %s, not %s", hex.EncodeToString(id), t.db, db)
	}
	if remove {
		delete(tt.m, string(id))
	}
	return t, nil
}

// get returns an open transaction for a read.
func (tt *txnTable) get(db string, id []byte) (*txn, error) { return tt.lookup(db, id, false) }

// take ends a transaction and returns it, for Commit and Rollback.
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
func (v *readView) record(name string, version int64) {
	if v.tx != nil {
		v.tx.recordRead(name, version)
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
