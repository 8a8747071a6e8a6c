package firestore

import (
	"context"
	"crypto/rand"

	"math"
	"strconv"
	"time"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// write is a validated pb.Write.
type write struct {
	name       string
	delete     bool
	update     bool                 // the write replaces or merges fields
	fields     map[string]*pb.Value // the update's fields
	mask       []fieldPath          // with hasMask: the only paths the update touches
	hasMask    bool
	transforms []transform
	exists     *bool                  // precondition: the document must (not) exist
	updateTime *timestamppb.Timestamp // precondition: the document's update time
}

type transform struct {
	path fieldPath
	op   *pb.DocumentTransform_FieldTransform
}

// parseWrite validates w, a write in database db.
func parseWrite(db string, w *pb.Write) (*write, error) {
	if w == nil {
		return nil, status.Error(codes.InvalidArgument, "write is missing")
	}
	out := &write{}
	var rawTransforms []*pb.DocumentTransform_FieldTransform
	switch op := w.Operation.(type) {
	case *pb.Write_Update:
		if op.Update == nil {
			return nil, status.Error(codes.InvalidArgument, "update write has no document")
		}
		out.name, out.update, out.fields = op.Update.Name, true, op.Update.Fields
		if err := checkFields(out.fields, 0); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "document %q: %s", out.name, status.Convert(err).Message())
		}
		if err := checkValueBytes(out.fields); err != nil {
			return nil, err
		}
		if w.UpdateMask != nil {
			out.hasMask = true
			for _, s := range w.UpdateMask.FieldPaths {
				p, err := parseFieldPath(s)
				if err != nil {
					return nil, status.Errorf(codes.InvalidArgument, "update mask of %q: %s", out.name, status.Convert(err).Message())
				}
				out.mask = append(out.mask, p)
			}
		}
		rawTransforms = w.UpdateTransforms
	case *pb.Write_Delete:
		out.name, out.delete = op.Delete, true
	case *pb.Write_Transform:
		if op.Transform == nil {
			return nil, status.Error(codes.InvalidArgument, "transform write has no transform")
		}
		out.name = op.Transform.Document
		rawTransforms = op.Transform.FieldTransforms
	default:
		return nil, status.Error(codes.InvalidArgument, "write has no operation (update, delete or transform)")
	}
	docDB, err := parseDocumentName(out.name)
	if err != nil {
		return nil, err
	}
	if docDB != db {
		return nil, status.Errorf(codes.InvalidArgument, "document %q is not in database %q", out.name, db)
	}
	if !out.update && (w.UpdateMask != nil || len(w.UpdateTransforms) > 0) {
		return nil, status.Errorf(codes.InvalidArgument, "write to %q: update_mask and update_transforms need an update operation", out.name)
	}
	for _, ft := range rawTransforms {
		t, err := parseTransform(out.name, ft)
		if err != nil {
			return nil, err
		}
		for _, prev := range out.transforms {
			if t.path.hasPrefix(prev.path) || prev.path.hasPrefix(t.path) {
				return nil, status.Errorf(codes.InvalidArgument, "write to %q transforms field %s more than once", out.name, t.path)
			}
		}
		for _, m := range out.mask {
			if t.path.hasPrefix(m) || m.hasPrefix(t.path) {
				return nil, status.Errorf(codes.InvalidArgument, "write to %q both updates and transforms field %s", out.name, t.path)
			}
		}
		out.transforms = append(out.transforms, t)
	}
	if pc := w.CurrentDocument; pc != nil {
		switch c := pc.ConditionType.(type) {
		case *pb.Precondition_Exists:
			out.exists = &c.Exists
		case *pb.Precondition_UpdateTime:
			if err := c.UpdateTime.CheckValid(); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "write to %q: invalid update_time precondition: %v", out.name, err)
			}
			out.updateTime = c.UpdateTime
		}
	}
	return out, nil
}

func parseTransform(name string, ft *pb.DocumentTransform_FieldTransform) (transform, error) {
	if ft == nil {
		return transform{}, status.Errorf(codes.InvalidArgument, "write to %q has an empty field transform", name)
	}
	p, err := parseFieldPath(ft.FieldPath)
	if err != nil {
		return transform{}, status.Errorf(codes.InvalidArgument, "transform of %q: %s", name, status.Convert(err).Message())
	}
	bad := func(what string) (transform, error) {
		return transform{}, status.Errorf(codes.InvalidArgument, "transform of field %s in %q: %s", p, name, what)
	}
	switch t := ft.TransformType.(type) {
	case *pb.DocumentTransform_FieldTransform_SetToServerValue:
		if t.SetToServerValue != pb.DocumentTransform_FieldTransform_REQUEST_TIME {
			return bad("unknown server value " + t.SetToServerValue.String())
		}
	case *pb.DocumentTransform_FieldTransform_Increment:
		if typeRank(t.Increment) != rankNumber {
			return bad("increment needs an integer or double")
		}
	case *pb.DocumentTransform_FieldTransform_Maximum:
		if typeRank(t.Maximum) != rankNumber {
			return bad("maximum needs an integer or double")
		}
	case *pb.DocumentTransform_FieldTransform_Minimum:
		if typeRank(t.Minimum) != rankNumber {
			return bad("minimum needs an integer or double")
		}
	case *pb.DocumentTransform_FieldTransform_AppendMissingElements:
		for _, e := range t.AppendMissingElements.GetValues() {
			if err := checkValue(e, 1, true); err != nil {
				return bad(status.Convert(err).Message())
			}
		}
	case *pb.DocumentTransform_FieldTransform_RemoveAllFromArray:
		for _, e := range t.RemoveAllFromArray.GetValues() {
			if err := checkValue(e, 1, true); err != nil {
				return bad(status.Convert(err).Message())
			}
		}
	default:
		return bad("no transform type set")
	}
	return transform{path: p, op: ft}, nil
}

// checkPrecondition tests w's precondition against the document as it is
// before w (nil if missing), with Firestore's codes: AlreadyExists for a
// create over an existing document, NotFound for an update of a missing
// one, FailedPrecondition for an update-time mismatch.
func checkPrecondition(w *write, old *pb.Document) error {
	if w.exists != nil {
		switch {
		case *w.exists && old == nil:
			return status.Errorf(codes.NotFound, "No document to update: %s", w.name)
		case !*w.exists && old != nil:
			return status.Errorf(codes.AlreadyExists, "Document already exists: %s", w.name)
		}
	}
	if w.updateTime != nil {
		if old == nil || !proto.Equal(old.UpdateTime, w.updateTime) {
			return status.Errorf(codes.FailedPrecondition,
				"the stored version of %s does not match the required base version (update_time %s)",
				w.name, w.updateTime.AsTime().Format(time.RFC3339Nano))
		}
	}
	return nil
}

// applyWrite computes the document after w on old (nil if missing) at
// commit time t. It returns old itself when the write changes nothing, so
// that the update time stays (Firestore leaves it alone for no-op writes),
// and nil for a delete. It never mutates old.
func applyWrite(w *write, old *pb.Document, t time.Time) (*pb.Document, []*pb.Value, error) {
	if w.delete {
		return nil, nil, nil
	}
	var fields map[string]*pb.Value
	switch {
	case w.update && !w.hasMask:
		fields = cloneFields(w.fields)
	case w.update:
		fields = shareFields(old.GetFields())
		for _, p := range w.mask {
			if v, ok := getField(w.fields, p); ok {
				setField(fields, p, cloneValue(v))
			} else {
				deleteField(fields, p)
			}
		}
	default: // transform only
		fields = shareFields(old.GetFields())
	}
	ts := timestamppb.New(t)
	results := make([]*pb.Value, 0, len(w.transforms))
	for _, tr := range w.transforms {
		cur, _ := getField(fields, tr.path)
		next, result := applyTransform(tr.op, cur, ts)
		setField(fields, tr.path, next)
		results = append(results, result)
	}
	truncateTimestamps(fields)
	if size := documentSize(w.name, fields); size > maxDocumentBytes {
		return nil, nil, status.Errorf(codes.InvalidArgument,
			"Document '%s' cannot be written because its size (%s bytes) exceeds the maximum allowed size of %s bytes.",
			w.name, commas(size), commas(maxDocumentBytes))
	}
	if old != nil && sameFields(old.Fields, fields) {
		return old, results, nil
	}
	doc := &pb.Document{Name: w.name, Fields: fields, CreateTime: ts, UpdateTime: ts}
	if old != nil {
		doc.CreateTime = old.CreateTime
	}
	return doc, results, nil
}

// applyTransform returns the field's new value and the transform result
// reported to the client.
func applyTransform(ft *pb.DocumentTransform_FieldTransform, cur *pb.Value, now *timestamppb.Timestamp) (next, result *pb.Value) {
	null := &pb.Value{ValueType: &pb.Value_NullValue{}}
	switch t := ft.TransformType.(type) {
	case *pb.DocumentTransform_FieldTransform_SetToServerValue:
		// Firestore's server timestamps have millisecond precision.
		ms := timestamppb.New(now.AsTime().Truncate(time.Millisecond))
		v := &pb.Value{ValueType: &pb.Value_TimestampValue{TimestampValue: ms}}
		return v, v
	case *pb.DocumentTransform_FieldTransform_Increment:
		v := increment(cur, t.Increment)
		return v, v
	case *pb.DocumentTransform_FieldTransform_Maximum:
		v := extreme(cur, t.Maximum, 1)
		return v, v
	case *pb.DocumentTransform_FieldTransform_Minimum:
		v := extreme(cur, t.Minimum, -1)
		return v, v
	case *pb.DocumentTransform_FieldTransform_AppendMissingElements:
		var out []*pb.Value
		if typeRank(cur) == rankArray {
			out = append(out, cur.GetArrayValue().GetValues()...)
		}
		for _, e := range t.AppendMissingElements.GetValues() {
			if !containsValue(out, e) {
				out = append(out, cloneValue(e))
			}
		}
		return &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: out}}}, null
	case *pb.DocumentTransform_FieldTransform_RemoveAllFromArray:
		var out []*pb.Value
		if typeRank(cur) == rankArray {
			for _, e := range cur.GetArrayValue().GetValues() {
				if !containsValue(t.RemoveAllFromArray.GetValues(), e) {
					out = append(out, e)
				}
			}
		}
		return &pb.Value{ValueType: &pb.Value_ArrayValue{ArrayValue: &pb.ArrayValue{Values: out}}}, null
	default: // rejected by parseTransform
		return cur, null
	}
}

func containsValue(list []*pb.Value, v *pb.Value) bool {
	for _, e := range list {
		if equalValues(e, v) {
			return true
		}
	}
	return false
}

// increment follows Firestore: a non-numeric or missing field becomes the
// operand; integer plus integer stays integer, saturating at the int64
// limits; anything with a double is a double.
func increment(cur, by *pb.Value) *pb.Value {
	if typeRank(cur) != rankNumber {
		return cloneValue(by)
	}
	ci, cInt := cur.ValueType.(*pb.Value_IntegerValue)
	bi, bInt := by.ValueType.(*pb.Value_IntegerValue)
	if cInt && bInt {
		a, b := ci.IntegerValue, bi.IntegerValue
		sum := a + b
		switch {
		case a > 0 && b > 0 && sum < 0:
			sum = math.MaxInt64
		case a < 0 && b < 0 && sum >= 0:
			sum = math.MinInt64
		}
		return &pb.Value{ValueType: &pb.Value_IntegerValue{IntegerValue: sum}}
	}
	return &pb.Value{ValueType: &pb.Value_DoubleValue{DoubleValue: toFloat(cur) + toFloat(by)}}
}

// extreme implements maximum (sign 1) and minimum (sign -1): a non-numeric
// field becomes the operand, NaN wins, and on a tie the stored value (and
// its type) stays.
func extreme(cur, operand *pb.Value, sign int) *pb.Value {
	switch {
	case typeRank(cur) != rankNumber:
		return cloneValue(operand)
	case isNaN(cur):
		return cur
	case isNaN(operand):
		return cloneValue(operand)
	case compareNumbers(cur, operand)*sign >= 0:
		return cur
	default:
		return cloneValue(operand)
	}
}

func toFloat(v *pb.Value) float64 {
	if i, ok := v.GetValueType().(*pb.Value_IntegerValue); ok {
		return float64(i.IntegerValue)
	}
	return v.GetDoubleValue()
}

// commas formats n with thousands separators, as Firestore's size errors do.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Commit applies writes atomically, optionally ending a transaction.
func (s *Server) Commit(ctx context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	db, err := parseDatabase(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	writes := make([]*write, 0, len(req.GetWrites()))
	for _, w := range req.GetWrites() {
		pw, err := parseWrite(db, w)
		if err != nil {
			return nil, err
		}
		writes = append(writes, pw)
	}
	var tx *txn
	if id := req.GetTransaction(); len(id) > 0 {
		// The transaction keeps its locks while its commit waits for
		// others'; commit ends it whatever happens, so a failed commit is
		// not retried with the same ID.
		if tx, err = s.txns.get(db, id); err != nil {
			return nil, err
		}
		if tx.readOnly && len(writes) > 0 {
			s.txns.end(tx)
			return nil, status.Error(codes.InvalidArgument, "cannot write in a read-only transaction")
		}
	}
	resp, _, err := s.commit(ctx, db, writes, tx)
	return resp, err
}

// commit applies writes as one new version once no other transaction holds
// a lock on a document they change, and ends tx (if any). Like Firestore
// in pessimistic mode, a write waits for the transactions that read its
// documents to end, and fails with ABORTED "Transaction lock timeout." if
// that takes longer than the lock timeout; a transaction whose commit
// fails so releases its own locks, which breaks deadlocks between two
// transactions that read the same document. Holding the store lock for
// the whole check-and-apply makes commits atomic and serializable. It also
// returns each written document as the commit left it (nil if deleted).
// Two transactions whose commits time out at the same moment both abort, as
// on Google's emulator; the client's retry, with its backoff, sorts them.
func (s *Server) commit(ctx context.Context, db string, writes []*write, tx *txn) (*pb.CommitResponse, map[string]*pb.Document, error) {
	if tx != nil {
		defer s.txns.end(tx)
	}
	var timeout <-chan time.Time
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, status.FromContextError(err).Err()
		}
		ended := s.txns.waitEnded()
		resp, final, done, err := s.tryCommit(db, writes, tx)
		if done || err != nil {
			return resp, final, err
		}
		if timeout == nil {
			timer := time.NewTimer(s.lockTimeout)
			defer timer.Stop()
			timeout = timer.C
		}
		select {
		case <-ended:
		case <-timeout:
			return nil, nil, errLockTimeout
		case <-ctx.Done():
			return nil, nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// tryCommit applies writes unless another transaction holds a lock on a
// document they change (done false).
func (s *Server) tryCommit(db string, writes []*write, tx *txn) (resp *pb.CommitResponse, final map[string]*pb.Document, done bool, err error) {
	st := s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	t := st.nextCommitTime()
	ts := timestamppb.New(t)
	pending := map[string]*pb.Document{}
	final = map[string]*pb.Document{}
	var changes []change
	results := make([]*pb.WriteResult, len(writes))
	for i, w := range writes {
		old, ok := pending[w.name]
		if !ok {
			old, _ = st.get(w.name, st.version)
		}
		if err := checkPrecondition(w, old); err != nil {
			return nil, nil, true, err
		}
		doc, transformResults, err := applyWrite(w, old, t)
		if err != nil {
			return nil, nil, true, err
		}
		if doc != old {
			pending[w.name] = doc
		}
		final[w.name] = doc
		changes = append(changes, change{name: w.name, old: old, new: doc})
		wr := &pb.WriteResult{UpdateTime: ts, TransformResults: transformResults}
		if doc != nil {
			wr.UpdateTime = doc.UpdateTime
		}
		results[i] = wr
	}
	if s.txns.lockedBy(db, tx, changes) {
		return nil, nil, false, nil
	}
	st.install(pending, t)
	return &pb.CommitResponse{WriteResults: results, CommitTime: ts}, final, true, nil
}

// BatchWrite applies each write on its own, not atomically, and reports a
// status per write; the BulkWriter uses it.
func (s *Server) BatchWrite(ctx context.Context, req *pb.BatchWriteRequest) (*pb.BatchWriteResponse, error) {
	db, err := parseDatabase(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	resp := &pb.BatchWriteResponse{}
	for _, w := range req.GetWrites() {
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		var res *pb.CommitResponse
		pw, err := parseWrite(db, w)
		if err == nil {
			res, _, err = s.commit(ctx, db, []*write{pw}, nil)
		}
		if err != nil {
			resp.WriteResults = append(resp.WriteResults, &pb.WriteResult{})
			resp.Status = append(resp.Status, status.Convert(err).Proto())
			continue
		}
		resp.WriteResults = append(resp.WriteResults, res.WriteResults[0])
		resp.Status = append(resp.Status, &spb.Status{Code: int32(codes.OK)})
	}
	return resp, nil
}

// CreateDocument creates one document, with a generated ID if none is
// given.
func (s *Server) CreateDocument(ctx context.Context, req *pb.CreateDocumentRequest) (*pb.Document, error) {
	db, err := parseParent(req.GetParent())
	if err != nil {
		return nil, err
	}
	if err := checkID(req.GetCollectionId()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid collection_id %q: %s", req.GetCollectionId(), err)
	}
	id := req.GetDocumentId()
	if id == "" {
		id = autoID()
	}
	name := req.GetParent() + "/" + req.GetCollectionId() + "/" + id
	w := &pb.Write{
		Operation:       &pb.Write_Update{Update: &pb.Document{Name: name, Fields: req.GetDocument().GetFields()}},
		CurrentDocument: &pb.Precondition{ConditionType: &pb.Precondition_Exists{Exists: false}},
	}
	return s.writeOne(ctx, db, w, req.GetMask())
}

// UpdateDocument updates (or creates) one document.
func (s *Server) UpdateDocument(ctx context.Context, req *pb.UpdateDocumentRequest) (*pb.Document, error) {
	if req.GetDocument() == nil {
		return nil, status.Error(codes.InvalidArgument, "document is missing")
	}
	db, err := parseDocumentName(req.GetDocument().GetName())
	if err != nil {
		return nil, err
	}
	w := &pb.Write{
		Operation:       &pb.Write_Update{Update: req.GetDocument()},
		UpdateMask:      req.GetUpdateMask(),
		CurrentDocument: req.GetCurrentDocument(),
	}
	return s.writeOne(ctx, db, w, req.GetMask())
}

// DeleteDocument deletes one document.
func (s *Server) DeleteDocument(ctx context.Context, req *pb.DeleteDocumentRequest) (*emptypb.Empty, error) {
	db, err := parseDocumentName(req.GetName())
	if err != nil {
		return nil, err
	}
	w := &pb.Write{Operation: &pb.Write_Delete{Delete: req.GetName()}, CurrentDocument: req.GetCurrentDocument()}
	pw, err := parseWrite(db, w)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.commit(ctx, db, []*write{pw}, nil); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// writeOne commits a single write and returns the document it left,
// restricted to mask.
func (s *Server) writeOne(ctx context.Context, db string, w *pb.Write, mask *pb.DocumentMask) (*pb.Document, error) {
	paths, err := maskPaths(mask)
	if err != nil {
		return nil, err
	}
	pw, err := parseWrite(db, w)
	if err != nil {
		return nil, err
	}
	_, docs, err := s.commit(ctx, db, []*write{pw}, nil)
	if err != nil {
		return nil, err
	}
	return masked(docs[pw.name], mask, paths), nil
}

// autoID returns a 20-character random document ID, like the clients'.
func autoID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
