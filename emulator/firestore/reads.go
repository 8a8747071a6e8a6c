package firestore

import (
	"context"
	"slices"
	"strings"

	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maskPaths parses a document mask; nil means every field.
func maskPaths(m *pb.DocumentMask) ([]fieldPath, error) {
	if m == nil {
		return nil, nil
	}
	paths := make([]fieldPath, 0, len(m.FieldPaths))
	for _, s := range m.FieldPaths {
		p, err := parseFieldPath(s)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "mask: %s", status.Convert(err).Message())
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// masked returns doc restricted to mask (nil mask: the whole document).
func masked(doc *pb.Document, mask *pb.DocumentMask, paths []fieldPath) *pb.Document {
	if mask == nil {
		return doc
	}
	return &pb.Document{Name: doc.Name, Fields: project(doc.Fields, paths), CreateTime: doc.CreateTime, UpdateTime: doc.UpdateTime}
}

// BatchGetDocuments streams each requested document, found or missing.
func (s *Server) BatchGetDocuments(req *pb.BatchGetDocumentsRequest, stream pb.Firestore_BatchGetDocumentsServer) error {
	db, err := parseDatabase(req.GetDatabase())
	if err != nil {
		return err
	}
	for _, name := range req.GetDocuments() {
		docDB, err := parseDocumentName(name)
		if err != nil {
			return err
		}
		if docDB != db {
			return status.Errorf(codes.InvalidArgument, "document %q is not in database %q", name, db)
		}
	}
	paths, err := maskPaths(req.GetMask())
	if err != nil {
		return err
	}
	st := s.store
	st.mu.RLock()
	view, err := s.resolveRead(db, req.GetTransaction(), req.GetNewTransaction(), req.GetReadTime())
	if err != nil {
		st.mu.RUnlock()
		return err
	}
	readTime := timestamp(st.timeOf(view.version))
	resps := make([]*pb.BatchGetDocumentsResponse, 0, len(req.GetDocuments()))
	answered := map[string]bool{} // like Firestore, answer a repeated name once
	for _, name := range req.GetDocuments() {
		if answered[name] {
			continue
		}
		answered[name] = true
		doc, _ := st.get(name, view.version)
		view.record(name)
		resp := &pb.BatchGetDocumentsResponse{ReadTime: readTime}
		if doc != nil {
			resp.Result = &pb.BatchGetDocumentsResponse_Found{Found: masked(doc, req.GetMask(), paths)}
		} else {
			resp.Result = &pb.BatchGetDocumentsResponse_Missing{Missing: name}
		}
		resps = append(resps, resp)
	}
	st.mu.RUnlock()
	if len(resps) == 0 && view.newTxID != nil {
		resps = append(resps, &pb.BatchGetDocumentsResponse{ReadTime: readTime})
	}
	for i, resp := range resps {
		if i == 0 {
			resp.Transaction = view.newTxID
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return nil
}

// GetDocument returns one document or NotFound.
func (s *Server) GetDocument(ctx context.Context, req *pb.GetDocumentRequest) (*pb.Document, error) {
	db, err := parseDocumentName(req.GetName())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths(req.GetMask())
	if err != nil {
		return nil, err
	}
	st := s.store
	st.mu.RLock()
	defer st.mu.RUnlock()
	view, err := s.resolveRead(db, req.GetTransaction(), nil, req.GetReadTime())
	if err != nil {
		return nil, err
	}
	doc, _ := st.get(req.GetName(), view.version)
	view.record(req.GetName())
	if doc == nil {
		return nil, status.Errorf(codes.NotFound, "Document %q not found", req.GetName())
	}
	return masked(doc, req.GetMask(), paths), nil
}

// ListDocuments lists the documents of a collection in name order,
// optionally including "missing" documents: names that do not exist but
// have documents in subcollections below them.
func (s *Server) ListDocuments(ctx context.Context, req *pb.ListDocumentsRequest) (*pb.ListDocumentsResponse, error) {
	db, err := parseParent(req.GetParent())
	if err != nil {
		return nil, err
	}
	coll := req.GetCollectionId()
	if coll != "" {
		if err := checkID(coll); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid collection_id %q: %s", coll, err)
		}
	}
	if ob := req.GetOrderBy(); ob != "" && ob != nameField && ob != nameField+" asc" {
		return nil, status.Errorf(codes.InvalidArgument, "ListDocuments can only order by __name__, got %q", ob)
	}
	if req.GetPageSize() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "page_size must not be negative, got %d", req.GetPageSize())
	}
	paths, err := maskPaths(req.GetMask())
	if err != nil {
		return nil, err
	}
	prefix := req.GetParent() + "/"
	if coll != "" {
		prefix += coll + "/"
	}
	st := s.store
	st.mu.RLock()
	view, err := s.resolveRead(db, req.GetTransaction(), nil, req.GetReadTime())
	if err != nil {
		st.mu.RUnlock()
		return nil, err
	}
	type entry struct {
		name string
		doc  *pb.Document // nil: missing
	}
	seen := map[string]bool{}
	var entries []entry
	st.scan(prefix, view.version, func(doc *pb.Document, _ int64) {
		rest := strings.Split(doc.Name[len(req.GetParent())+1:], "/")
		if len(rest) == 2 {
			entries = append(entries, entry{name: doc.Name, doc: doc})
			seen[doc.Name] = true
			return
		}
		if !req.GetShowMissing() {
			return
		}
		name := req.GetParent() + "/" + rest[0] + "/" + rest[1]
		if seen[name] {
			return
		}
		seen[name] = true
		if d, _ := st.get(name, view.version); d == nil {
			entries = append(entries, entry{name: name})
		}
	})
	if view.tx != nil && coll != "" {
		// Lock the listing as the equivalent query (under the store lock,
		// so that no write slips in between): a document added to or
		// removed from the collection waits for the transaction.
		view.tx.recordQuery(&query{parent: req.GetParent(), collection: coll, limit: -1, orders: []order{{path: fieldPath{nameField}}}})
	}
	st.mu.RUnlock()
	slices.SortFunc(entries, func(a, b entry) int { return compareNames(a.name, b.name) })
	if tok := req.GetPageToken(); tok != "" {
		i, _ := slices.BinarySearchFunc(entries, tok, func(e entry, t string) int { return compareNames(e.name, t) })
		for i < len(entries) && compareNames(entries[i].name, tok) <= 0 {
			i++
		}
		entries = entries[i:]
	}
	resp := &pb.ListDocumentsResponse{}
	if n := int(req.GetPageSize()); n > 0 && n < len(entries) {
		entries = entries[:n]
		resp.NextPageToken = entries[n-1].name
	}
	for _, e := range entries {
		if e.doc == nil {
			resp.Documents = append(resp.Documents, &pb.Document{Name: e.name})
			continue
		}
		resp.Documents = append(resp.Documents, masked(e.doc, req.GetMask(), paths))
	}
	return resp, nil
}

// ListCollectionIds lists, in order, the IDs of the collections directly
// below a parent that hold at least one document (at any depth).
func (s *Server) ListCollectionIds(ctx context.Context, req *pb.ListCollectionIdsRequest) (*pb.ListCollectionIdsResponse, error) {
	db, err := parseParent(req.GetParent())
	if err != nil {
		return nil, err
	}
	if req.GetPageSize() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "page_size must not be negative, got %d", req.GetPageSize())
	}
	prefix := req.GetParent() + "/"
	st := s.store
	st.mu.RLock()
	var rt = req.GetReadTime()
	view, err := s.resolveRead(db, nil, nil, rt)
	if err != nil {
		st.mu.RUnlock()
		return nil, err
	}
	set := map[string]bool{}
	st.scanNames(prefix, view.version, func(name string) {
		id, _, _ := strings.Cut(name[len(prefix):], "/")
		set[id] = true
	})
	st.mu.RUnlock()
	ids := make([]string, 0, len(set))
	for id := range set {
		if id > req.GetPageToken() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	resp := &pb.ListCollectionIdsResponse{CollectionIds: ids}
	if n := int(req.GetPageSize()); n > 0 && n < len(ids) {
		resp.CollectionIds = ids[:n]
		resp.NextPageToken = ids[n-1]
	}
	return resp, nil
}
