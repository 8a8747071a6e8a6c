package firestore

import (
	"context"
	"errors"
	"io"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// fakeStream stands in for gRPC's server streams when handlers are called
// directly: it yields reqs, then io.EOF, and keeps what is sent.
type fakeStream[Req, Res any] struct {
	ctx  context.Context
	mu   sync.Mutex
	reqs []*Req
	sent []*Res
}

func (f *fakeStream[Req, Res]) Send(r *Res) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r == nil {
		return errors.New("handler sent a nil response")
	}
	f.sent = append(f.sent, r)
	return nil
}

func (f *fakeStream[Req, Res]) Recv() (*Req, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return nil, io.EOF
	}
	r := f.reqs[0]
	f.reqs = f.reqs[1:]
	return r, nil
}

func (f *fakeStream[Req, Res]) Context() context.Context     { return f.ctx }
func (f *fakeStream[Req, Res]) SetHeader(metadata.MD) error  { return nil }
func (f *fakeStream[Req, Res]) SendHeader(metadata.MD) error { return nil }
func (f *fakeStream[Req, Res]) SetTrailer(metadata.MD)       {}
func (f *fakeStream[Req, Res]) SendMsg(any) error            { return nil }
func (f *fakeStream[Req, Res]) RecvMsg(any) error            { return nil }

var _ grpc.BidiStreamingServer[pb.ListenRequest, pb.ListenResponse] = (*fakeStream[pb.ListenRequest, pb.ListenResponse])(nil)

// call sends one request of kind k (an index into the handlers) to srv
// and returns the handler's error.
func call(ctx context.Context, srv *Server, k int, msg proto.Message) error {
	switch req := msg.(type) {
	case *pb.GetDocumentRequest:
		_, err := srv.GetDocument(ctx, req)
		return err
	case *pb.ListDocumentsRequest:
		_, err := srv.ListDocuments(ctx, req)
		return err
	case *pb.BatchGetDocumentsRequest:
		return srv.BatchGetDocuments(req, &fakeStream[pb.BatchGetDocumentsRequest, pb.BatchGetDocumentsResponse]{ctx: ctx})
	case *pb.BeginTransactionRequest:
		_, err := srv.BeginTransaction(ctx, req)
		return err
	case *pb.CommitRequest:
		_, err := srv.Commit(ctx, req)
		return err
	case *pb.RollbackRequest:
		_, err := srv.Rollback(ctx, req)
		return err
	case *pb.RunQueryRequest:
		return srv.RunQuery(req, &fakeStream[pb.RunQueryRequest, pb.RunQueryResponse]{ctx: ctx})
	case *pb.RunAggregationQueryRequest:
		return srv.RunAggregationQuery(req, &fakeStream[pb.RunAggregationQueryRequest, pb.RunAggregationQueryResponse]{ctx: ctx})
	case *pb.ListCollectionIdsRequest:
		_, err := srv.ListCollectionIds(ctx, req)
		return err
	case *pb.BatchWriteRequest:
		_, err := srv.BatchWrite(ctx, req)
		return err
	case *pb.CreateDocumentRequest:
		_, err := srv.CreateDocument(ctx, req)
		return err
	case *pb.UpdateDocumentRequest:
		_, err := srv.UpdateDocument(ctx, req)
		return err
	case *pb.DeleteDocumentRequest:
		_, err := srv.DeleteDocument(ctx, req)
		return err
	case *pb.ListenRequest:
		return srv.Listen(&fakeStream[pb.ListenRequest, pb.ListenResponse]{ctx: ctx, reqs: []*pb.ListenRequest{req, req}})
	}
	panic("unknown request type")
}

// requestKinds are the request types the fuzzer builds, by first byte.
var requestKinds = []func() proto.Message{
	func() proto.Message { return &pb.GetDocumentRequest{} },
	func() proto.Message { return &pb.ListDocumentsRequest{} },
	func() proto.Message { return &pb.BatchGetDocumentsRequest{} },
	func() proto.Message { return &pb.BeginTransactionRequest{} },
	func() proto.Message { return &pb.CommitRequest{} },
	func() proto.Message { return &pb.RollbackRequest{} },
	func() proto.Message { return &pb.RunQueryRequest{} },
	func() proto.Message { return &pb.RunAggregationQueryRequest{} },
	func() proto.Message { return &pb.ListCollectionIdsRequest{} },
	func() proto.Message { return &pb.BatchWriteRequest{} },
	func() proto.Message { return &pb.ListenRequest{} },
	func() proto.Message { return &pb.CreateDocumentRequest{} },
	func() proto.Message { return &pb.UpdateDocumentRequest{} },
	func() proto.Message { return &pb.DeleteDocumentRequest{} },
}

func kindOf(msg proto.Message) int {
	for i, k := range requestKinds {
		if proto.MessageName(k()) == proto.MessageName(msg) {
			return i
		}
	}
	panic("unknown request type")
}

// checkResult fails unless err is nil or a gRPC status with a deliberate
// code: Unknown would mean a plain Go error escaped, Internal a bug.
func checkResult(t *testing.T, msg proto.Message, err error) {
	t.Helper()
	if err == nil {
		return
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.Unknown || st.Code() == codes.Internal {
		t.Fatalf("%s %v: error %v is not a deliberate gRPC status", proto.MessageName(msg), msg, err)
	}
}

func val(v any) *pb.Value {
	switch x := v.(type) {
	case nil:
		return &pb.Value{ValueType: &pb.Value_NullValue{}}
	case bool:
		return &pb.Value{ValueType: &pb.Value_BooleanValue{BooleanValue: x}}
	case int:
		return &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: int64(x)}}
	case float64:
		return &pb.Value{ValueType: &pb.Value_DoubleValue{DoubleValue: x}}
	case string:
		return &pb.Value{ValueType: &pb.Value_StringValue{StringValue: x}}
	case []*pb.Value:
		return &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: x}}}
	}
	panic("val")
}

// oddRequests are hand-built requests with nil fields, wrong types, bad
// names and huge values.
func oddRequests() []proto.Message {
	docName := dbPath + "/documents/c/d"
	huge := string(make([]byte, 2<<20))
	nilFilter := &pb.StructuredQuery{From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "c"}},
		Where: &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_FieldFilter{}}}
	deepFilter := &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_UnaryFilter{UnaryFilter: &pb.StructuredQuery_UnaryFilter{
		Op: pb.StructuredQuery_UnaryFilter_IS_NULL, OperandType: &pb.StructuredQuery_UnaryFilter_Field{Field: &pb.StructuredQuery_FieldReference{FieldPath: "a"}}}}}
	for range 200 {
		deepFilter = &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_CompositeFilter{CompositeFilter: &pb.StructuredQuery_CompositeFilter{
			Op: pb.StructuredQuery_CompositeFilter_OR, Filters: []*pb.StructuredQuery_Filter{deepFilter}}}}
	}
	deepValue := val(1)
	for range 100 {
		deepValue = &pb.Value{ValueType: &pb.Value_MapValue{MapValue: &pb.MapValue{Fields: map[string]*pb.Value{"m": deepValue}}}}
	}
	return []proto.Message{
		&pb.GetDocumentRequest{},
		&pb.GetDocumentRequest{Name: docName, Mask: &pb.DocumentMask{FieldPaths: []string{"", "`"}}},
		&pb.GetDocumentRequest{Name: docName, ConsistencySelector: &pb.GetDocumentRequest_ReadTime{ReadTime: &timestamppb.Timestamp{Seconds: -1 << 62}}},
		&pb.GetDocumentRequest{Name: docName, ConsistencySelector: &pb.GetDocumentRequest_ReadTime{}},
		&pb.ListDocumentsRequest{Parent: dbPath + "/documents", CollectionId: "c", PageSize: -1},
		&pb.ListDocumentsRequest{Parent: dbPath + "/documents/c", CollectionId: "c"},
		&pb.BatchGetDocumentsRequest{Database: dbPath, Documents: []string{"", docName},
			ConsistencySelector: &pb.BatchGetDocumentsRequest_NewTransaction{NewTransaction: &pb.TransactionOptions{Mode: &pb.TransactionOptions_ReadOnly_{}}}},
		&pb.BatchGetDocumentsRequest{Database: dbPath, Documents: []string{docName},
			ConsistencySelector: &pb.BatchGetDocumentsRequest_NewTransaction{NewTransaction: &pb.TransactionOptions{
				Mode: &pb.TransactionOptions_ReadOnly_{ReadOnly: &pb.TransactionOptions_ReadOnly{
					ConsistencySelector: &pb.TransactionOptions_ReadOnly_ReadTime{}}}}}},
		&pb.BeginTransactionRequest{Database: dbPath, Options: &pb.TransactionOptions{Mode: &pb.TransactionOptions_ReadWrite_{}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{nil}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Update{}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Transform{}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Update{Update: &pb.Document{Name: docName,
			Fields: map[string]*pb.Value{"a": nil, "b": {ValueType: &pb.Value_MapValue{}}, "c": {ValueType: &pb.Value_ArrayValue{}}}}}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Update{Update: &pb.Document{Name: docName,
			Fields: map[string]*pb.Value{"g": {ValueType: &pb.Value_GeoPointValue{}}, "t": {ValueType: &pb.Value_TimestampValue{}}}}}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Update{Update: &pb.Document{Name: docName,
			Fields: map[string]*pb.Value{"f": {ValueType: &pb.Value_FieldReferenceValue{FieldReferenceValue: "x"}}}}}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Update{Update: &pb.Document{Name: docName,
			Fields: map[string]*pb.Value{"s": val(huge)}}}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Update{Update: &pb.Document{Name: docName,
			Fields: map[string]*pb.Value{"d": deepValue}}}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Update{Update: &pb.Document{Name: docName}},
			UpdateTransforms: []*pb.DocumentTransform_FieldTransform{nil, {FieldPath: "x"}, {FieldPath: "y",
				TransformType: &pb.DocumentTransform_FieldTransform_Increment{}}}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Update{Update: &pb.Document{Name: docName}},
			UpdateTransforms: []*pb.DocumentTransform_FieldTransform{{FieldPath: "x",
				TransformType: &pb.DocumentTransform_FieldTransform_Increment{Increment: val(math.Inf(1))}}, {FieldPath: "a",
				TransformType: &pb.DocumentTransform_FieldTransform_AppendMissingElements{}}}}}},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Delete{Delete: docName},
			CurrentDocument: &pb.Precondition{ConditionType: &pb.Precondition_UpdateTime{}}}}},
		&pb.CommitRequest{Database: dbPath, Transaction: []byte("nope")},
		&pb.RollbackRequest{Database: dbPath},
		&pb.RunQueryRequest{Parent: dbPath + "/documents"},
		&pb.RunQueryRequest{Parent: dbPath + "/documents", QueryType: &pb.RunQueryRequest_StructuredQuery{}},
		&pb.RunQueryRequest{Parent: dbPath + "/documents", QueryType: &pb.RunQueryRequest_StructuredQuery{StructuredQuery: nilFilter}},
		&pb.RunQueryRequest{Parent: dbPath + "/documents", QueryType: &pb.RunQueryRequest_StructuredQuery{StructuredQuery: &pb.StructuredQuery{
			From: []*pb.StructuredQuery_CollectionSelector{nil}}}},
		&pb.RunQueryRequest{Parent: dbPath + "/documents", QueryType: &pb.RunQueryRequest_StructuredQuery{StructuredQuery: &pb.StructuredQuery{
			From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "c"}}, Where: deepFilter}}},
		&pb.RunQueryRequest{Parent: dbPath + "/documents", QueryType: &pb.RunQueryRequest_StructuredQuery{StructuredQuery: &pb.StructuredQuery{
			From:    []*pb.StructuredQuery_CollectionSelector{{CollectionId: "c"}},
			OrderBy: []*pb.StructuredQuery_Order{nil, {}},
			StartAt: &pb.Cursor{Values: []*pb.Value{nil, val(1), val(2)}},
			Limit:   &wrapperspb.Int32Value{Value: -5}, Offset: -1}}},
		&pb.RunQueryRequest{Parent: dbPath + "/documents", QueryType: &pb.RunQueryRequest_StructuredQuery{StructuredQuery: &pb.StructuredQuery{
			From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "c"}},
			Where: &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_FieldFilter{FieldFilter: &pb.StructuredQuery_FieldFilter{
				Field: &pb.StructuredQuery_FieldReference{FieldPath: "__name__"}, Op: pb.StructuredQuery_FieldFilter_IN,
				Value: val([]*pb.Value{val("x")})}}}}}},
		&pb.RunAggregationQueryRequest{Parent: dbPath + "/documents", QueryType: &pb.RunAggregationQueryRequest_StructuredAggregationQuery{
			StructuredAggregationQuery: &pb.StructuredAggregationQuery{Aggregations: []*pb.StructuredAggregationQuery_Aggregation{nil}}}},
		&pb.RunAggregationQueryRequest{Parent: dbPath + "/documents", QueryType: &pb.RunAggregationQueryRequest_StructuredAggregationQuery{
			StructuredAggregationQuery: &pb.StructuredAggregationQuery{
				QueryType: &pb.StructuredAggregationQuery_StructuredQuery{StructuredQuery: &pb.StructuredQuery{
					From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "c"}}}},
				Aggregations: []*pb.StructuredAggregationQuery_Aggregation{
					{Operator: &pb.StructuredAggregationQuery_Aggregation_Sum_{}},
					{Operator: &pb.StructuredAggregationQuery_Aggregation_Count_{}},
				}}}},
		&pb.ListCollectionIdsRequest{Parent: "projects/p/databases/d/documents/a"},
		&pb.BatchWriteRequest{Database: dbPath, Writes: []*pb.Write{nil, {Operation: &pb.Write_Delete{Delete: docName}}}},
		&pb.ListenRequest{},
		&pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_AddTarget{}},
		&pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_AddTarget{AddTarget: &pb.Target{}}},
		&pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_AddTarget{AddTarget: &pb.Target{
			TargetType: &pb.Target_Query{}, ResumeType: &pb.Target_ResumeToken{ResumeToken: []byte("junk")}}}},
		&pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_AddTarget{AddTarget: &pb.Target{
			TargetType: &pb.Target_Documents{Documents: &pb.Target_DocumentsTarget{Documents: []string{docName, "bad"}}},
			ResumeType: &pb.Target_ReadTime{}, TargetId: -3}}},
		&pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_RemoveTarget{RemoveTarget: 9}},
		&pb.CreateDocumentRequest{},
		&pb.CreateDocumentRequest{Parent: dbPath + "/documents", CollectionId: "c", Mask: &pb.DocumentMask{FieldPaths: []string{"a"}}},
		&pb.UpdateDocumentRequest{},
		&pb.UpdateDocumentRequest{Document: &pb.Document{Name: docName}, UpdateMask: &pb.DocumentMask{}},
		&pb.DeleteDocumentRequest{Name: docName, CurrentDocument: &pb.Precondition{}},
	}
}

// seededServer returns a server holding a few documents, so that fuzzed
// reads and queries have something to evaluate.
func seededServer(t testing.TB) *Server {
	srv := New(Options{})
	t.Cleanup(srv.Close)
	var writes []*pb.Write
	for _, name := range []string{"c/d", "c/e", "c/d/sub/x", "other/y"} {
		writes = append(writes, &pb.Write{Operation: &pb.Write_Update{Update: &pb.Document{
			Name: dbPath + "/documents/" + name,
			Fields: map[string]*pb.Value{
				"a": val(1), "b": val("s"), "n": val(math.NaN()), "z": val(nil),
				"arr": val([]*pb.Value{val(1), val("x")}),
			},
		}}})
	}
	if _, err := srv.Commit(context.Background(), &pb.CommitRequest{Database: dbPath, Writes: writes}); err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestOddRequests runs the hand-built malformed requests through every
// handler: each must answer with a deliberate status, never a panic.
func TestOddRequests(t *testing.T) {
	skipOnOfficial(t, "calls the fake's handlers in-process")
	srv := seededServer(t)
	for _, msg := range oddRequests() {
		checkResult(t, msg, call(context.Background(), srv, kindOf(msg), msg))
	}
}

// FuzzFirestore builds requests of every kind from fuzz bytes (the first
// byte picks the kind, the rest is the request in protobuf wire format)
// and calls the handlers directly.
func FuzzFirestore(f *testing.F) {
	for _, msg := range oddRequests() {
		if b, err := proto.Marshal(msg); err == nil && len(b) < 1<<10 { // big seeds make minimization crawl
			f.Add(append([]byte{byte(kindOf(msg))}, b...))
		}
	}
	for _, msg := range validRequests() {
		b, err := proto.Marshal(msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{byte(kindOf(msg))}, b...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		// A fresh server per input keeps inputs independent, so that the
		// fuzzer can reproduce and minimize what it finds.
		srv := seededServer(t)
		msg := requestKinds[int(data[0])%len(requestKinds)]()
		if err := proto.Unmarshal(data[1:], msg); err != nil {
			return
		}
		// A handler must answer, not hang: a hang fails the input so that
		// the fuzzer keeps it.
		done := make(chan error, 1)
		go func() { done <- call(context.Background(), srv, kindOf(msg), msg) }()
		select {
		case err := <-done:
			checkResult(t, msg, err)
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s did not answer within 10s: %v\n%s", proto.MessageName(msg), msg, buf)
		}
	})
}

// validRequests seed the fuzzer with well-formed requests to mutate.
func validRequests() []proto.Message {
	root := dbPath + "/documents"
	field := func(p string) *pb.StructuredQuery_FieldReference {
		return &pb.StructuredQuery_FieldReference{FieldPath: p}
	}
	q := &pb.StructuredQuery{
		From: []*pb.StructuredQuery_CollectionSelector{{CollectionId: "c", AllDescendants: true}},
		Where: &pb.StructuredQuery_Filter{FilterType: &pb.StructuredQuery_Filter_CompositeFilter{CompositeFilter: &pb.StructuredQuery_CompositeFilter{
			Op: pb.StructuredQuery_CompositeFilter_OR,
			Filters: []*pb.StructuredQuery_Filter{
				{FilterType: &pb.StructuredQuery_Filter_FieldFilter{FieldFilter: &pb.StructuredQuery_FieldFilter{
					Field: field("a"), Op: pb.StructuredQuery_FieldFilter_GREATER_THAN, Value: val(0)}}},
				{FilterType: &pb.StructuredQuery_Filter_FieldFilter{FieldFilter: &pb.StructuredQuery_FieldFilter{
					Field: field("arr"), Op: pb.StructuredQuery_FieldFilter_ARRAY_CONTAINS_ANY, Value: val([]*pb.Value{val("x")})}}},
				{FilterType: &pb.StructuredQuery_Filter_UnaryFilter{UnaryFilter: &pb.StructuredQuery_UnaryFilter{
					Op: pb.StructuredQuery_UnaryFilter_IS_NAN, OperandType: &pb.StructuredQuery_UnaryFilter_Field{Field: field("n")}}}},
			},
		}}},
		OrderBy: []*pb.StructuredQuery_Order{{Field: field("b"), Direction: pb.StructuredQuery_DESCENDING}},
		StartAt: &pb.Cursor{Values: []*pb.Value{val("a")}, Before: true},
		EndAt:   &pb.Cursor{Values: []*pb.Value{val("z")}},
		Select:  &pb.StructuredQuery_Projection{Fields: []*pb.StructuredQuery_FieldReference{field("a")}},
		Limit:   &wrapperspb.Int32Value{Value: 3},
		Offset:  1,
	}
	return []proto.Message{
		&pb.GetDocumentRequest{Name: root + "/c/d", Mask: &pb.DocumentMask{FieldPaths: []string{"a"}}},
		&pb.ListDocumentsRequest{Parent: root, CollectionId: "c", ShowMissing: true, PageSize: 1},
		&pb.BatchGetDocumentsRequest{Database: dbPath, Documents: []string{root + "/c/d", root + "/c/zz"}},
		&pb.BeginTransactionRequest{Database: dbPath},
		&pb.CommitRequest{Database: dbPath, Writes: []*pb.Write{{
			Operation:  &pb.Write_Update{Update: &pb.Document{Name: root + "/c/d", Fields: map[string]*pb.Value{"a": val(2)}}},
			UpdateMask: &pb.DocumentMask{FieldPaths: []string{"a", "q.`r s`"}},
			UpdateTransforms: []*pb.DocumentTransform_FieldTransform{
				{FieldPath: "t", TransformType: &pb.DocumentTransform_FieldTransform_SetToServerValue{SetToServerValue: pb.DocumentTransform_FieldTransform_REQUEST_TIME}},
				{FieldPath: "i", TransformType: &pb.DocumentTransform_FieldTransform_Increment{Increment: val(1)}},
			},
			CurrentDocument: &pb.Precondition{ConditionType: &pb.Precondition_Exists{Exists: true}},
		}}},
		&pb.RollbackRequest{Database: dbPath, Transaction: []byte("x")},
		&pb.RunQueryRequest{Parent: root, QueryType: &pb.RunQueryRequest_StructuredQuery{StructuredQuery: q}},
		&pb.RunAggregationQueryRequest{Parent: root, QueryType: &pb.RunAggregationQueryRequest_StructuredAggregationQuery{
			StructuredAggregationQuery: &pb.StructuredAggregationQuery{
				QueryType: &pb.StructuredAggregationQuery_StructuredQuery{StructuredQuery: q},
				Aggregations: []*pb.StructuredAggregationQuery_Aggregation{
					{Alias: "n", Operator: &pb.StructuredAggregationQuery_Aggregation_Count_{Count: &pb.StructuredAggregationQuery_Aggregation_Count{}}},
					{Alias: "s", Operator: &pb.StructuredAggregationQuery_Aggregation_Sum_{Sum: &pb.StructuredAggregationQuery_Aggregation_Sum{Field: field("a")}}},
				}}}},
		&pb.ListCollectionIdsRequest{Parent: root + "/c/d"},
		&pb.BatchWriteRequest{Database: dbPath, Writes: []*pb.Write{{Operation: &pb.Write_Delete{Delete: root + "/c/e"}}}},
		&pb.ListenRequest{Database: dbPath, TargetChange: &pb.ListenRequest_AddTarget{AddTarget: &pb.Target{
			TargetId:   7,
			TargetType: &pb.Target_Query{Query: &pb.Target_QueryTarget{Parent: root, QueryType: &pb.Target_QueryTarget_StructuredQuery{StructuredQuery: q}}},
		}}},
	}
}
