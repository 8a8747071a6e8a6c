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

// BenchmarkCommitSteady measures a commit once the history is full, as in
// a long throughput run: the session's document is updated by every
// commit (its next sequence), indexed by its status as the reaper's
// queries make it, and each commit lets the oldest version out of the
// history window, which then holds a few thousand of its versions.
func BenchmarkCommitSteady(b *testing.B) {
	clock := time.Now()
	srv := New(Options{Now: func() time.Time {
		clock = clock.Add(20 * time.Millisecond) // 3,000 commits a minute of history
		return clock
	}})
	b.Cleanup(srv.Close)
	ctx := context.Background()
	sessions := &pb.StructuredQuery{From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "sessions"}},
		Where: eq("status", val("active"))}
	if _, err := srv.compileQuery(dbPath+"/documents", sessions); err != nil {
		b.Fatal(err)
	}
	name := dbPath + "/documents/sessions/s"
	commit := func(i int) {
		w := &write{name: name, update: true, hasMask: true, mask: []fieldPath{{"next_seq"}},
			fields: map[string]*pb.Value{"status": val("active"), "next_seq": val(i)}}
		if i == 0 {
			w.hasMask = false
		}
		if _, _, err := srv.commit(ctx, dbPath, []*write{w}, nil); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 4000 { // fill the history
		commit(i)
	}
	for i := 4000; b.Loop(); i++ {
		commit(i)
	}
}
