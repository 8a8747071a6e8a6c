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
// receives; the handler wakes on new requests and on commits that change a
// document its targets read (see watcher in store.go). A commit elsewhere
// costs a stream nothing.

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
	in      *interest               // registered with the store while the target is on the stream
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

	w := newWatcher()
	targets := map[int32]*watchTarget{}
	defer func() {
		for _, wt := range targets {
			s.store.unwatch(wt.in)
		}
	}()
	var pending []*pb.ListenResponse // target changes to send before the next sync
	dirty := false
	for {
		if dirty || len(pending) > 0 {
			if err := s.sync(stream, w, targets, pending); err != nil {
				return err
			}
			pending, dirty = nil, false
		}
		select {
		case req := <-reqs:
			msgs, err := s.handleListenRequest(req, targets, w)
			if err != nil {
				return err
			}
			pending = append(pending, msgs...)
			dirty = true
		case <-w.wake:
			// A commit changed a document one of the targets reads.
			dirty = true
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
// changes that acknowledge it. Added targets wake w.
func (s *Server) handleListenRequest(req *pb.ListenRequest, targets map[int32]*watchTarget, w *watcher) ([]*pb.ListenResponse, error) {
	db, err := parseDatabase(req.GetDatabase())
	if err != nil {
		return nil, err
	}
	switch tc := req.GetTargetChange().(type) {
	case *pb.ListenRequest_RemoveTarget:
		wt, ok := targets[tc.RemoveTarget]
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "target %d is not on this stream", tc.RemoveTarget)
		}
		s.store.unwatch(wt.in)
		delete(targets, tc.RemoveTarget)
		return []*pb.ListenResponse{targetChange(pb.TargetChange_REMOVE, tc.RemoveTarget, nil)}, nil
	case *pb.ListenRequest_AddTarget:
		return s.addTarget(db, tc.AddTarget, targets, w)
	default:
		return nil, status.Error(codes.InvalidArgument, "listen request has neither add_target nor remove_target")
	}
}

func (s *Server) addTarget(db string, t *pb.Target, targets map[int32]*watchTarget, w *watcher) ([]*pb.ListenResponse, error) {
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
		q, err := s.compileQuery(qt.GetParent(), qt.GetStructuredQuery())
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
	// Registered before the handler's next sync reads the store, so every
	// commit that sync does not see wakes the handler.
	wt.in = wt.interest(w)
	st.watch(wt.in)
	targets[id] = wt
	return msgs, nil
}

// interest returns what the target reads, for the store to wake w on.
func (wt *watchTarget) interest(w *watcher) *interest {
	in := &interest{w: w}
	switch q := wt.query; {
	case q == nil:
		in.keys = wt.docs
	case q.allDescendants:
		in.match = q.inScope
	default:
		in.keys = []string{q.parent + "/" + q.collection}
	}
	return in
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

// incremental reports whether diff may look at changed documents only:
// once the client holds the target's results, for a query in which a
// document's membership does not depend on the others (no limit or
// offset). Other targets are evaluated in full, which costs the size of
// the collection (or the list of documents).
func (wt *watchTarget) incremental() bool {
	return wt.current && wt.query != nil && wt.query.limit < 0 && wt.query.offset == 0
}

// diff brings the client's view of the target up to version v and returns
// the messages that do so. changed names the documents committed since
// the client's view was last brought up to date (a superset of those
// that concern the target).
func (wt *watchTarget) diff(st *store, v int64, changed map[string]struct{}, readTime *timestamppb.Timestamp, token []byte) []*pb.ListenResponse {
	var results []*pb.Document // documents to report as they are at v
	var gone []string          // known documents no longer in the results
	if wt.incremental() {
		q := wt.query
		for name := range changed {
			if !q.inScope(name) {
				continue
			}
			if doc, _ := st.get(name, v); doc != nil && q.matchesDoc(doc) && q.withinCursors(doc) {
				results = append(results, q.output(doc))
			} else if wt.known[name] != nil {
				gone = append(gone, name)
			}
		}
		slices.SortFunc(results, func(a, b *pb.Document) int { return compareNames(a.Name, b.Name) })
	} else {
		results = wt.results(st, v)
		now := make(map[string]bool, len(results))
		for _, doc := range results {
			now[doc.Name] = true
		}
		for name := range wt.known {
			if !now[name] {
				gone = append(gone, name)
			}
		}
	}
	var msgs []*pb.ListenResponse
	for _, doc := range results {
		old := wt.known[doc.Name]
		if old != nil && old.UpdateTime.AsTime().Equal(doc.UpdateTime.AsTime()) {
			continue
		}
		wt.known[doc.Name] = doc
		msgs = append(msgs, &pb.ListenResponse{ResponseType: &pb.ListenResponse_DocumentChange{
			DocumentChange: &pb.DocumentChange{Document: doc, TargetIds: []int32{wt.id}},
		}})
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
// a consistent snapshot. It sends nothing if nothing changed. Once targets
// leave the stream after their first sync.
func (s *Server) sync(stream pb.Firestore_ListenServer, w *watcher, targets map[int32]*watchTarget, pending []*pb.ListenResponse) error {
	st := s.store
	st.mu.RLock()
	v := st.version
	changed := w.takeChanged()
	readTime := timestamp(st.timeOf(v))
	token := s.resumeToken(v)
	msgs := pending
	ids := make([]int32, 0, len(targets))
	for id := range targets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	send := len(pending) > 0
	var done []*interest
	for _, id := range ids {
		wt := targets[id]
		m := wt.diff(st, v, changed, readTime, token)
		send = send || len(m) > 0
		msgs = append(msgs, m...)
		if wt.once {
			delete(targets, id)
			done = append(done, wt.in)
			msgs = append(msgs, targetChange(pb.TargetChange_REMOVE, id, nil))
		}
	}
	st.mu.RUnlock()
	if len(done) > 0 {
		st.unwatch(done...)
	}
	if !send {
		return nil
	}
	msgs = append(msgs, &pb.ListenResponse{ResponseType: &pb.ListenResponse_TargetChange{TargetChange: &pb.TargetChange{
		TargetChangeType: pb.TargetChange_NO_CHANGE,
		ReadTime:         readTime,
		ResumeToken:      token,
	}}})
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func targetChange(kind pb.TargetChange_TargetChangeType, id int32, readTime *timestamppb.Timestamp) *pb.ListenResponse {
	return &pb.ListenResponse{ResponseType: &pb.ListenResponse_TargetChange{TargetChange: &pb.TargetChange{
		TargetChangeType: kind,
		TargetIds:        []int32{id},
		ReadTime:         readTime,
	}}}
}
