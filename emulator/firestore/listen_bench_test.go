package firestore

import (
	"context"
	"fmt"
	"testing"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/metadata"

	"github.com/sandrun/sandrun/internal/procfs"
)

// benchStream is a Listen stream that sends one request, then waits for
// the end of ctx; it reports each global NO_CHANGE (a delivered snapshot).
type benchStream struct {
	ctx      context.Context
	req      chan *pb.ListenRequest
	snapshot chan struct{}
}

func (b *benchStream) Send(r *pb.ListenResponse) error {
	if tc := r.GetTargetChange(); tc != nil && tc.TargetChangeType == pb.TargetChange_NO_CHANGE && len(tc.TargetIds) == 0 {
		b.snapshot <- struct{}{}
	}
	return nil
}

func (b *benchStream) Recv() (*pb.ListenRequest, error) {
	select {
	case r := <-b.req:
		return r, nil
	case <-b.ctx.Done():
		return nil, b.ctx.Err()
	}
}

func (b *benchStream) Context() context.Context     { return b.ctx }
func (b *benchStream) SetHeader(metadata.MD) error  { return nil }
func (b *benchStream) SendHeader(metadata.MD) error { return nil }
func (b *benchStream) SetTrailer(metadata.MD)       {}
func (b *benchStream) SendMsg(any) error            { return nil }
func (b *benchStream) RecvMsg(any) error            { return nil }

// BenchmarkListen measures what a commit costs the Listen path, as
// sandrun's session hosts use it: one listener per session on the
// session's queued inbox items, and commits each to one session's inbox.
// An op is one commit and the delivery of the snapshot it causes;
// cpu-µs/op is the process's CPU time per op (gRPC not included). inbox
// is the number of finished items in each session's inbox, elsewhere the
// number of documents per session in another collection.
func BenchmarkListen(b *testing.B) {
	for _, c := range []struct{ listeners, inbox, elsewhere int }{
		{1, 0, 0}, {50, 0, 0}, {200, 0, 0},
		{50, 0, 1000}, {50, 1000, 0},
	} {
		b.Run(fmt.Sprintf("listeners=%d/inbox=%d/elsewhere=%d", c.listeners, c.inbox, c.elsewhere), func(b *testing.B) {
			benchListen(b, c.listeners, c.inbox, c.elsewhere)
		})
	}
}

func benchListen(b *testing.B, listeners, inbox, elsewhere int) {
	srv := New(Options{})
	b.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	item := func(session int, coll string, id int, status string) *write {
		return &write{name: fmt.Sprintf("%s/documents/sessions/s%d/%s/r%d", dbPath, session, coll, id), update: true,
			fields: map[string]*pb.Value{"status": val(status), "seq": val(id)}}
	}
	for s := range listeners {
		var ws []*write
		for i := range inbox {
			ws = append(ws, item(s, "inbox", 1000+i, "done"))
		}
		for i := range elsewhere {
			ws = append(ws, item(s, "log", i, "done"))
		}
		if len(ws) > 0 {
			if _, _, err := srv.commit(context.Background(), dbPath, ws, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	streams := make([]*benchStream, listeners)
	for s := range streams {
		st := &benchStream{ctx: ctx, req: make(chan *pb.ListenRequest, 1), snapshot: make(chan struct{}, 1)}
		streams[s] = st
		st.req <- &pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_AddTarget{AddTarget: &pb.Target{
			TargetId: 1,
			TargetType: &pb.Target_Query{Query: &pb.Target_QueryTarget{
				Parent: fmt.Sprintf("%s/documents/sessions/s%d", dbPath, s),
				QueryType: &pb.Target_QueryTarget_StructuredQuery{StructuredQuery: &pb.StructuredQuery{
					From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "inbox"}},
					Where: &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_FieldFilter{FieldFilter: &pb.StructuredQuery_FieldFilter{
						Field: &pb.StructuredQuery_FieldReference{FieldPath: "status"}, Op: pb.StructuredQuery_FieldFilter_EQUAL, Value: val("queued"),
					}}},
					OrderBy: []*pb.StructuredQuery_Order{{Field: &pb.StructuredQuery_FieldReference{FieldPath: "seq"}}},
				}},
			}},
		}}}
		go func() { _ = srv.Listen(st) }()
		<-st.snapshot
	}
	b.ResetTimer()
	cpu0 := procfs.OwnCPU(false)
	for n := range b.N {
		// Each item is queued, then done: every commit changes the results.
		s, id, status := n%listeners, n/listeners/2%10, "queued"
		if n/listeners%2 == 1 {
			status = "done"
		}
		if _, _, err := srv.commit(context.Background(), dbPath, []*write{item(s, "inbox", id, status)}, nil); err != nil {
			b.Fatal(err)
		}
		<-streams[s].snapshot
	}
	b.ReportMetric(float64((procfs.OwnCPU(false)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
