package firestore

import (
	"encoding/binary"
	"errors"
	"io"
	"slices"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The watch protocol, as the client libraries expect it (see watch.go in
// cloud.google.com/go/firestore):
//
//   - AddTarget is answered with TargetChange ADD, then a DocumentChange for
//     each document in the target, TargetChange CURRENT, and a global
//     TargetChange NO_CHANGE (no target IDs) carrying read_time and a
//     resume token. The global NO_CHANGE is the consistency marker: the
//     client shows a snapshot only when it arrives.
//   - After each commit that changes a target's results, the stream sends
//     DocumentChange (added or modified), DocumentDelete (deleted) or
//     DocumentRemove (no longer matches), then a global NO_CHANGE.
//   - A client whose stream broke adds its target again with the resume
//     token of the last NO_CHANGE it saw. The token names a version of
//     the store, so the stream sends exactly what changed between that
//     version and now. A token the server cannot use (too old, or from
//     another server) gets a RESET and the full results instead.
//
// Each stream is one goroutine that sends (the handler) and one that
// receives; the handler wakes on new requests and on commits.

// listenStream is one open Listen call.
type listenStream struct {
	kill chan struct{} // closed to end the stream with Unavailable (test hook)
}

// watchTarget is a target on a stream and what its client has been told.
type watchTarget struct {
	id      int32
	query   *query   // a query target, or
	docs    []string // a documents target
	once    bool
	known   map[string]*pb.Document // documents the client holds, by name
	current bool                    // CURRENT has been sent
}

// tokenSize is the length of a resume token: the server's epoch, then a
// store version.
const tokenSize = 16

func (s *Server) resumeToken(version int64) []byte {
	b := make([]byte, tokenSize)
	binary.BigEndian.PutUint64(b, s.epoch)
	binary.BigEndian.PutUint64(b[8:], uint64(version))
	return b
}

// tokenVersion decodes a resume token of this server; ok is false for a
// token the server cannot resume from.
func (s *Server) tokenVersion(tok []byte) (int64, bool) {
	if len(tok) != tokenSize || binary.BigEndian.Uint64(tok) != s.epoch {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(tok[8:])), true
}

func (s *Server) addStream() (*listenStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "the Firestore emulator is shutting down")
	}
	ls := &listenStream{kill: make(chan struct{})}
	s.streams[ls] = struct{}{}
	s.wg.Add(1)
	return ls, nil
}

func (s *Server) removeStream(ls *listenStream) {
	s.mu.Lock()
	delete(s.streams, ls)
	s.mu.Unlock()
	s.wg.Done()
}

// breakListenStreams ends every open Listen stream with Unavailable, as a
// network failure or a Firestore frontend restart would. Tests use it to
// prove that clients resume correctly.
func (s *Server) breakListenStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ls := range s.streams {
		close(ls.kill)
		delete(s.streams, ls)
	}
}

// Listen serves the watch protocol for document and query targets.
func (s *Server) Listen(stream pb.Firestore_ListenServer) error {
	ls, err := s.addStream()
	if err != nil {
		return err
	}
	defer s.removeStream(ls)
	ctx := stream.Context()
	// The receiver cannot be waited for: gRPC unblocks its Recv only once
	// this handler has returned. quit lets it exit without a reader.
	reqs := make(chan *pb.ListenRequest)
	recvErr := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-quit:
				return
			}
		}
	}()

	targets := map[int32]*watchTarget{}
	var pending []*pb.ListenResponse // target changes to send before the next sync
	dirty := false
	var synced int64 // the version the client's targets are up to date with
	touches := func(name string) bool {
		for _, wt := range targets {
			if wt.touches(name) {
				return true
			}
		}
		return false
	}
	for {
		s.store.mu.RLock()
		changed := s.store.changed
		s.store.mu.RUnlock()
		if dirty || len(pending) > 0 {
			v, err := s.sync(stream, targets, pending)
			if err != nil {
				return err
			}
			pending, dirty, synced = nil, false, v
		}
		select {
		case req := <-reqs:
			msgs, err := s.handleListenRequest(req, targets)
			if err != nil {
				return err
			}
			pending = append(pending, msgs...)
			dirty = true
		case <-changed:
			// Re-evaluate targets only for commits that touched them;
			// otherwise the client is as current at the latest version.
			dirty, synced = s.store.changedSince(synced, touches)
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil // the client closed its side: it has stopped listening
			}
			return err
		case <-ls.kill:
			return status.Error(codes.Unavailable, "listen stream broken by the emulator")
		case <-s.done:
			return status.Error(codes.Unavailable, "the Firestore emulator is shutting down")
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// handleListenRequest adds or removes a target and returns the target
// changes that acknowledge it.
func (s *Server) handleListenRequest(req *pb.ListenRequest, targets map[int32]*watchTarget) ([]*pb.ListenResponse, error) {
	db, err := parseDatabase(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	switch tc := req.GetTargetChange().(type) {
	case *pb.ListenRequest_RemoveTarget:
		if _, ok := targets[tc.RemoveTarget]; !ok {
			return nil, status.Errorf(codes.InvalidArgument, "target %d is not on this stream", tc.RemoveTarget)
		}
		delete(targets, tc.RemoveTarget)
		return []*pb.ListenResponse{targetChange(pb.TargetChange_REMOVE, tc.RemoveTarget, nil)}, nil
	case *pb.ListenRequest_AddTarget:
		return s.addTarget(db, tc.AddTarget, targets)
	default:
		return nil, status.Error(codes.InvalidArgument, "listen request has neither add_target nor remove_target")
	}
}

func (s *Server) addTarget(db string, t *pb.Target, targets map[int32]*watchTarget) ([]*pb.ListenResponse, error) {
	if t == nil {
		return nil, status.Error(codes.InvalidArgument, "add_target is empty")
	}
	id := t.TargetId
	if id == 0 { // the server picks an ID
		for id = 1; targets[id] != nil; id++ {
		}
	}
	if targets[id] != nil {
		return nil, status.Errorf(codes.InvalidArgument, "target %d is already on this stream", id)
	}
	if id < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "target_id must be positive, got %d", id)
	}
	wt := &watchTarget{id: id, once: t.Once, known: map[string]*pb.Document{}}
	reject := func(err error) ([]*pb.ListenResponse, error) {
		rm := targetChange(pb.TargetChange_REMOVE, id, nil)
		rm.GetTargetChange().Cause = status.Convert(err).Proto()
		return []*pb.ListenResponse{rm}, nil
	}
	switch tt := t.TargetType.(type) {
	case *pb.Target_Query:
		qt := tt.Query
		parentDB, err := parseParent(qt.GetParent())
		if err != nil {
			return reject(err)
		}
		if parentDB != db {
			return reject(status.Errorf(codes.InvalidArgument, "parent %q is not in database %q", qt.GetParent(), db))
		}
		q, err := compileQuery(qt.GetParent(), qt.GetStructuredQuery())
		if err != nil {
			return reject(err)
		}
		wt.query = q
	case *pb.Target_Documents:
		for _, name := range tt.Documents.GetDocuments() {
			docDB, err := parseDocumentName(name)
			if err != nil {
				return reject(err)
			}
			if docDB != db {
				return reject(status.Errorf(codes.InvalidArgument, "document %q is not in database %q", name, db))
			}
			wt.docs = append(wt.docs, name)
		}
	default:
		return reject(status.Error(codes.InvalidArgument, "target has neither a query nor documents"))
	}
	msgs := []*pb.ListenResponse{targetChange(pb.TargetChange_ADD, id, nil)}

	// Resuming: start from what the client held at the version its token
	// (or read time) names, so that only what changed since is sent.
	resumeFrom, resuming := int64(0), false
	st := s.store
	st.mu.RLock()
	switch rt := t.ResumeType.(type) {
	case *pb.Target_ResumeToken:
		if len(rt.ResumeToken) > 0 {
			v, ok := s.tokenVersion(rt.ResumeToken)
			resumeFrom, resuming = v, ok && v >= st.floor() && v <= st.version
			if !resuming {
				s.resets.Add(1)
				msgs = append(msgs, targetChange(pb.TargetChange_RESET, id, nil))
			}
		}
	case *pb.Target_ReadTime:
		if v, err := readTimeVersion(st, rt.ReadTime); err == nil {
			resumeFrom, resuming = v, true
		} else {
			s.resets.Add(1)
			msgs = append(msgs, targetChange(pb.TargetChange_RESET, id, nil))
		}
	}
	if resuming {
		for _, doc := range wt.results(st, resumeFrom) {
			wt.known[doc.Name] = doc
		}
	}
	st.mu.RUnlock()
	targets[id] = wt
	return msgs, nil
}

// touches reports whether a change to document name can change the
// target's results.
func (wt *watchTarget) touches(name string) bool {
	if wt.query != nil {
		return wt.query.inScope(name)
	}
	return slices.Contains(wt.docs, name)
}

// results returns the target's documents at version v, as sent to clients.
// Callers hold st.mu.
func (wt *watchTarget) results(st *store, v int64) []*pb.Document {
	var out []*pb.Document
	if wt.query != nil {
		for _, m := range wt.query.run(st, v) {
			out = append(out, wt.query.output(m.doc))
		}
		return out
	}
	for _, name := range wt.docs {
		if doc, _ := st.get(name, v); doc != nil {
			out = append(out, doc)
		}
	}
	return out
}

// diff brings the client's view of the target up to version v and returns
// the messages that do so.
func (wt *watchTarget) diff(st *store, v int64, readTime *timestamppb.Timestamp, token []byte) []*pb.ListenResponse {
	var msgs []*pb.ListenResponse
	now := map[string]bool{}
	for _, doc := range wt.results(st, v) {
		now[doc.Name] = true
		old := wt.known[doc.Name]
		if old != nil && old.UpdateTime.AsTime().Equal(doc.UpdateTime.AsTime()) {
			continue
		}
		wt.known[doc.Name] = doc
		msgs = append(msgs, &pb.ListenResponse{ResponseType: &pb.ListenResponse_DocumentChange{
			DocumentChange: &pb.DocumentChange{Document: doc, TargetIds: []int32{wt.id}},
		}})
	}
	var gone []string
	for name := range wt.known {
		if !now[name] {
			gone = append(gone, name)
		}
	}
	slices.SortFunc(gone, compareNames)
	for _, name := range gone {
		delete(wt.known, name)
		if doc, _ := st.get(name, v); doc == nil {
			msgs = append(msgs, &pb.ListenResponse{ResponseType: &pb.ListenResponse_DocumentDelete{
				DocumentDelete: &pb.DocumentDelete{Document: name, RemovedTargetIds: []int32{wt.id}, ReadTime: readTime},
			}})
		} else {
			msgs = append(msgs, &pb.ListenResponse{ResponseType: &pb.ListenResponse_DocumentRemove{
				DocumentRemove: &pb.DocumentRemove{Document: name, RemovedTargetIds: []int32{wt.id}, ReadTime: readTime},
			}})
		}
	}
	if !wt.current {
		wt.current = true
		cur := targetChange(pb.TargetChange_CURRENT, wt.id, readTime)
		cur.GetTargetChange().ResumeToken = token
		msgs = append(msgs, cur)
	}
	return msgs
}

// sync sends pending target changes, then every target's changes up to
// the latest version, then the global NO_CHANGE that lets the client show
// a consistent snapshot.
func (s *Server) sync(stream pb.Firestore_ListenServer, targets map[int32]*watchTarget, pending []*pb.ListenResponse) (int64, error) {
	st := s.store
	st.mu.RLock()
	v := st.version
	readTime := timestamp(st.timeOf(v))
	token := s.resumeToken(v)
	msgs := pending
	ids := make([]int32, 0, len(targets))
	for id := range targets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	changed := len(pending) > 0
	for _, id := range ids {
		wt := targets[id]
		m := wt.diff(st, v, readTime, token)
		changed = changed || len(m) > 0
		msgs = append(msgs, m...)
		if wt.once {
			delete(targets, id)
			msgs = append(msgs, targetChange(pb.TargetChange_REMOVE, id, nil))
		}
	}
	st.mu.RUnlock()
	if !changed {
		return v, nil
	}
	msgs = append(msgs, &pb.ListenResponse{ResponseType: &pb.ListenResponse_TargetChange{TargetChange: &pb.TargetChange{
		TargetChangeType: pb.TargetChange_NO_CHANGE,
		ReadTime:         readTime,
		ResumeToken:      token,
	}}})
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			return 0, err
		}
	}
	return v, nil
}

func targetChange(kind pb.TargetChange_TargetChangeType, id int32, readTime *timestamppb.Timestamp) *pb.ListenResponse {
	return &pb.ListenResponse{ResponseType: &pb.ListenResponse_TargetChange{TargetChange: &pb.TargetChange{
		TargetChangeType: kind,
		TargetIds:        []int32{id},
		ReadTime:         readTime,
	}}}
}
