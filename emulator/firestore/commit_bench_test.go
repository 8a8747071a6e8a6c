package firestore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// BenchmarkCommit measures the commits sandrun's requests make: an inbox
// item of a dozen fields (the request's JSON among them) created, then
// updated with a field mask as a host finishes it, and the session's
// state document (the shell's 40 environment variables) rewritten
// unchanged, as a command that leaves the shell alone does.
func BenchmarkCommit(b *testing.B) {
	srv := New(Options{})
	b.Cleanup(srv.Close)
	ctx := context.Background()
	now := &pb.Value{ValueType: &pb.Value_TimestampValue{TimestampValue: timestamppb.New(time.Now())}}
	item := func() map[string]*pb.Value {
		return map[string]*pb.Value{
			"request_id": val("r"), "session_id": val("s"), "op": val("exec"), "seq": val(12), "status": val("queued"),
			"raw":         val(`{"request_id":"r","session_id":"s","op":"exec","command":"` + strings.Repeat("x", 200) + `"}`),
			"traceparent": val("00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"), "enqueued_at": now, "published": val(false),
			"expire_at": now, "attempts": val(0), "meta": {ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: map[string]*pb.Value{"a": val("b"), "n": val(1)}}}},
		}
	}
	env := map[string]*pb.Value{}
	for i := range 40 {
		env[fmt.Sprintf("VAR_%d", i)] = val(strings.Repeat("v", 40))
	}
	state := func() map[string]*pb.Value {
		return map[string]*pb.Value{"shell": {ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: map[string]*pb.Value{
			"cwd": val("/workspace"), "env": {ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: cloneFields(env)}}},
		}}}}, "checkpoint": val(nil), "expire_at": now}
	}
	stateName := dbPath + "/documents/sessions/s/runtime/state"
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("%s/documents/sessions/s/inbox/r%d", dbPath, i)
		if _, _, err := srv.commit(ctx, dbPath, []*write{{name: name, update: true, fields: item()}}, nil); err != nil {
			b.Fatal(err)
		}
		done := &write{name: name, update: true, hasMask: true, mask: []fieldPath{{"status"}, {"completion"}, {"finished_at"}},
			fields: map[string]*pb.Value{"status": val("done"), "completion": val(strings.Repeat("y", 300)), "finished_at": now}}
		st := &write{name: stateName, update: true, hasMask: true, mask: []fieldPath{{"shell"}, {"expire_at"}}, fields: state()}
		if _, _, err := srv.commit(ctx, dbPath, []*write{done, st}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
