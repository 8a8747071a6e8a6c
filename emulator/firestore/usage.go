package firestore

import (
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc"

	"github.com/sandrun/sandrun/emulator/calls"
)

// Usage counts what the calls served would be billed as on Firestore, so
// that the cost of sandrun's requests and hosts can be measured on the local
// cloud (docs/cost.md). It follows Firestore's billing units, as its pricing
// page describes them:
//   - a document read for each document a get, a query or a listener
//     returns, and one for a query that returns none (a get of a missing
//     document is counted as a read too);
//   - one read per aggregation query answered (Firestore bills one per up
//     to 1,000 index entries counted; sandrun's counts are small);
//   - a write for each document a commit sets, updates or transforms, and a
//     delete for each it deletes; transactions themselves cost nothing.
//
// It counts on the gRPC boundary, with interceptors (Interceptors), and
// changes nothing the server does. Google's own emulator counts nothing of
// the kind, so these rules are checked against the pricing page, not
// against it (TestFirestoreUsageCounts, in package emulator). Calls per method are kept too. Failed
// calls count what they returned before failing; a commit counts only when
// it succeeds.
type Usage struct {
	// Log, when set, records each call too, with the documents it named,
	// its transaction and its billing units, and each listener change as a
	// push caused by the last commit that wrote the document.
	Log *calls.Log

	mu      sync.Mutex
	reads   int64
	writes  int64
	deletes int64
	calls   map[string]int64
}

// UsageCounts is a snapshot of a Usage.
type UsageCounts struct {
	Reads, Writes, Deletes int64
	// Calls counts the calls of each method, by its short name (Commit).
	Calls map[string]int64
}

// Sub returns the counts since an earlier snapshot.
func (c UsageCounts) Sub(earlier UsageCounts) UsageCounts {
	out := UsageCounts{Reads: c.Reads - earlier.Reads, Writes: c.Writes - earlier.Writes,
		Deletes: c.Deletes - earlier.Deletes, Calls: map[string]int64{}}
	for m, n := range c.Calls {
		if d := n - earlier.Calls[m]; d != 0 {
			out.Calls[m] = d
		}
	}
	return out
}

// Counts returns what has been counted so far.
func (u *Usage) Counts() UsageCounts {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := UsageCounts{Reads: u.reads, Writes: u.writes, Deletes: u.deletes, Calls: map[string]int64{}}
	for m, n := range u.calls {
		c.Calls[m] = n
	}
	return c
}

func (u *Usage) add(method string, reads, writes, deletes int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.calls == nil {
		u.calls = map[string]int64{}
	}
	if method != "" {
		u.calls[method]++
	}
	u.reads += reads
	u.writes += writes
	u.deletes += deletes
}

// Interceptors returns the server options that make u count the calls of
// the gRPC server they are given to.
func (u *Usage) Interceptors() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(u.unary), grpc.ChainStreamInterceptor(u.stream)}
}

func (u *Usage) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	var reads, writes, deletes int64
	var keys []string
	var tx []byte
	switch r := req.(type) {
	case *pb.CommitRequest:
		if err == nil {
			writes, deletes = countWrites(r.GetWrites())
		}
		tx = r.GetTransaction()
		for _, w := range r.GetWrites() {
			keys = append(keys, relDoc(w.GetUpdate().GetName()+w.GetDelete()+w.GetTransform().GetDocument()))
		}
	case *pb.BeginTransactionRequest:
		if b, ok := resp.(*pb.BeginTransactionResponse); ok {
			tx = b.GetTransaction()
		}
	case *pb.RollbackRequest:
		tx = r.GetTransaction()
	case *pb.GetDocumentRequest:
		reads = 1
		keys = []string{relDoc(r.GetName())}
	case *pb.CreateDocumentRequest, *pb.UpdateDocumentRequest:
		if err == nil {
			writes = 1
		}
	case *pb.DeleteDocumentRequest:
		if err == nil {
			deletes = 1
		}
	case *pb.BatchWriteRequest:
		if err == nil {
			writes, deletes = countWrites(r.GetWrites())
		}
	case *pb.ListDocumentsRequest:
		if l, ok := resp.(*pb.ListDocumentsResponse); ok {
			reads = max(int64(len(l.GetDocuments())), 1)
		}
	}
	method := calls.ShortMethod(info.FullMethod)
	u.add(method, reads, writes, deletes)
	if u.Log != nil {
		c := calls.Call{Service: calls.Firestore, Method: method, Start: start, End: time.Now(), Keys: keys, Tx: txKey(tx), Peer: calls.PeerOf(ctx),
			Reads: reads, Writes: writes, Deletes: deletes, Failed: err != nil}
		if r, ok := req.(*pb.CommitRequest); ok && err == nil {
			u.Log.RecordCommit(c, versions(r, resp.(*pb.CommitResponse)))
		} else {
			u.Log.Record(c)
		}
	}
	return resp, err
}

// versions maps each document a commit wrote (set, updated or
// transformed; not deleted) to the update time the commit gave it.
func versions(req *pb.CommitRequest, resp *pb.CommitResponse) map[string]time.Time {
	out := map[string]time.Time{}
	for i, w := range req.GetWrites() {
		name := w.GetUpdate().GetName() + w.GetTransform().GetDocument()
		if name == "" {
			continue
		}
		at := resp.GetCommitTime()
		if rs := resp.GetWriteResults(); i < len(rs) && rs[i].GetUpdateTime() != nil {
			at = rs[i].GetUpdateTime()
		}
		out[relDoc(name)] = at.AsTime()
	}
	return out
}

// relDoc turns projects/P/databases/D/documents/sessions/s1 into
// sessions/s1.
func relDoc(name string) string {
	if _, rest, ok := strings.Cut(name, "/documents/"); ok {
		return rest
	}
	if strings.HasSuffix(name, "/documents") {
		return ""
	}
	return name
}

func txKey(tx []byte) string { return hex.EncodeToString(tx) }

func countWrites(ws []*pb.Write) (writes, deletes int64) {
	for _, w := range ws {
		if w.GetDelete() != "" {
			deletes++
		} else {
			writes++
		}
	}
	return writes, deletes
}

func (u *Usage) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	method := calls.ShortMethod(info.FullMethod)
	cs := &countingStream{ServerStream: ss, u: u}
	err := handler(srv, cs)
	if method == "RunQuery" && !cs.sawDocument {
		cs.reads++ // a query that returns nothing is billed one read
	}
	u.add(method, cs.reads, 0, 0)
	if u.Log != nil {
		cs.mu.Lock()
		keys, tx := cs.keys, cs.tx
		cs.mu.Unlock()
		u.Log.Record(calls.Call{Service: calls.Firestore, Method: method, Start: start, End: time.Now(), Stream: method == "Listen", Peer: calls.PeerOf(ss.Context()),
			Keys: keys, Tx: txKey(tx), Reads: cs.reads, Failed: err != nil})
	}
	return err
}

// countingStream counts the documents a streaming call sends, and notes
// what it names for the call log.
type countingStream struct {
	grpc.ServerStream
	u           *Usage
	reads       int64
	sawDocument bool
	// mu guards keys and tx: a Listen's requests are read on a goroutine
	// of their own.
	mu   sync.Mutex
	keys []string
	tx   []byte
	// targetAdded is when the listener last added a target (Unix
	// nanoseconds; requests are read and responses sent on different
	// goroutines).
	targetAdded atomic.Int64
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err != nil || s.u.Log == nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r := m.(type) {
	case *pb.BatchGetDocumentsRequest:
		for _, d := range r.GetDocuments() {
			s.keys = append(s.keys, relDoc(d))
		}
		s.tx = r.GetTransaction()
	case *pb.RunQueryRequest:
		key := relDoc(r.GetParent())
		for _, from := range r.GetStructuredQuery().GetFrom() {
			if key != "" {
				key += "/"
			}
			key += from.GetCollectionId()
		}
		s.keys = append(s.keys, key)
		s.tx = r.GetTransaction()
	case *pb.ListenRequest:
		if r.GetAddTarget() != nil {
			s.targetAdded.Store(time.Now().UnixNano())
		}
		for _, d := range r.GetAddTarget().GetDocuments().GetDocuments() {
			s.keys = append(s.keys, relDoc(d))
		}
		if q := r.GetAddTarget().GetQuery(); q != nil {
			s.keys = append(s.keys, relDoc(q.GetParent()))
		}
	}
	return err
}

func (s *countingStream) SendMsg(m any) error {
	switch r := m.(type) {
	case *pb.BatchGetDocumentsResponse:
		if r.GetFound() != nil || r.GetMissing() != "" {
			s.reads++
		}
		if t := r.GetTransaction(); len(t) > 0 {
			s.setTx(t)
		}
	case *pb.RunQueryResponse:
		if r.GetDocument() != nil {
			s.reads++
			s.sawDocument = true
		}
		if t := r.GetTransaction(); len(t) > 0 {
			s.setTx(t)
		}
	case *pb.RunAggregationQueryResponse:
		if r.GetResult() != nil {
			s.reads++
		}
	case *pb.ListenResponse:
		// A listener is billed a read for each document added to or changed
		// in its results; it runs for long, so count as it goes.
		if r.GetDocumentChange() != nil && len(r.GetDocumentChange().GetTargetIds()) > 0 {
			s.u.add("", 1, 0, 0)
			if s.u.Log != nil {
				d := r.GetDocumentChange().GetDocument()
				now, doc := time.Now(), relDoc(d.GetName())
				s.u.Log.RecordChange(calls.Call{Service: calls.Firestore, Method: "Listen.Change", Start: now, End: now, Peer: calls.PeerOf(s.Context()),
					Keys: []string{doc}, Reads: 1}, doc, d.GetUpdateTime().AsTime(), time.Unix(0, s.targetAdded.Load()))
			}
		}
	}
	return s.ServerStream.SendMsg(m)
}

func (s *countingStream) setTx(t []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tx = t
}
