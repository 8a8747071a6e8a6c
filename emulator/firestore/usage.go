package firestore

import (
	"context"
	"sync"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc"
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
	resp, err := handler(ctx, req)
	var reads, writes, deletes int64
	switch r := req.(type) {
	case *pb.CommitRequest:
		if err == nil {
			writes, deletes = countWrites(r.GetWrites())
		}
	case *pb.GetDocumentRequest:
		reads = 1
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
	u.add(shortMethod(info.FullMethod), reads, writes, deletes)
	return resp, err
}

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
	method := shortMethod(info.FullMethod)
	cs := &countingStream{ServerStream: ss, u: u}
	err := handler(srv, cs)
	if method == "RunQuery" && !cs.sawDocument {
		cs.reads++ // a query that returns nothing is billed one read
	}
	u.add(method, cs.reads, 0, 0)
	return err
}

// countingStream counts the documents a streaming call sends.
type countingStream struct {
	grpc.ServerStream
	u           *Usage
	reads       int64
	sawDocument bool
}

func (s *countingStream) SendMsg(m any) error {
	switch r := m.(type) {
	case *pb.BatchGetDocumentsResponse:
		if r.GetFound() != nil || r.GetMissing() != "" {
			s.reads++
		}
	case *pb.RunQueryResponse:
		if r.GetDocument() != nil {
			s.reads++
			s.sawDocument = true
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
		}
	}
	return s.ServerStream.SendMsg(m)
}

// shortMethod turns /google.firestore.v1.Firestore/Commit into Commit.
func shortMethod(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}
