package cloudrun

import (
	"context"
	"strings"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// defaultWaitTimeout bounds WaitOperation when the request sets no timeout.
const defaultWaitTimeout = time.Minute

// operation is a long-running operation. Job operations (create, update,
// delete) and execution deletions carry a fixed metadata; RunJob and
// CancelExecution follow an execution: their metadata is the execution as it
// is now, and they are done when it finishes, with the finished execution as
// their response (whether it succeeded, failed or was cancelled, as Cloud
// Run does: callers read the counts and conditions).
type operation struct {
	name     string
	created  time.Time
	metadata proto.Message // nil when exec is set
	exec     *execution
	done     bool
	doneCh   chan struct{} // closed when done
	response proto.Message
}

func (s *Server) newOperationLocked(loc locationName, metadata proto.Message, exec *execution) *operation {
	op := &operation{
		name:     loc.String() + "/operations/" + newUID(),
		created:  time.Now(),
		metadata: metadata,
		exec:     exec,
		doneCh:   make(chan struct{}),
	}
	s.ops[op.name] = op
	if exec != nil {
		exec.ops = append(exec.ops, op)
	}
	return op
}

// completeLocked marks op done with response; later calls do nothing.
func (op *operation) completeLocked(response proto.Message) {
	if op.done {
		return
	}
	op.done, op.response = true, response
	close(op.doneCh)
}

// protoLocked renders op as google.longrunning.Operation.
func (op *operation) protoLocked() (*longrunningpb.Operation, error) {
	meta := op.metadata
	if op.exec != nil {
		meta = op.exec.snapshotLocked()
	}
	out := &longrunningpb.Operation{Name: op.name, Done: op.done}
	var err error
	if out.Metadata, err = anypb.New(meta); err != nil {
		return nil, status.Errorf(codes.Internal, "encode metadata of %s: %v", op.name, err)
	}
	if op.done {
		resp, err := anypb.New(op.response)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode response of %s: %v", op.name, err)
		}
		out.Result = &longrunningpb.Operation_Response{Response: resp}
	}
	return out, nil
}

// doneOperationLocked records an operation that finished as it started, as
// job creation does here, and renders it.
func (s *Server) doneOperationLocked(loc locationName, result proto.Message) (*longrunningpb.Operation, error) {
	op := s.newOperationLocked(loc, result, nil)
	op.completeLocked(result)
	return op.protoLocked()
}

// operationsAPI serves google.longrunning.Operations for the operations the
// other services return.
type operationsAPI struct {
	longrunningpb.UnimplementedOperationsServer
	s *Server
}

func (a operationsAPI) lookupLocked(name string) (*operation, error) {
	if _, err := parseOperation(name); err != nil {
		return nil, err
	}
	op := a.s.ops[name]
	if op == nil {
		return nil, status.Errorf(codes.NotFound, "operation %s not found", name)
	}
	return op, nil
}

// GetOperation returns the operation's current state.
func (a operationsAPI) GetOperation(ctx context.Context, req *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	op, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return op.protoLocked()
}

// ListOperations lists a location's operations, newest first. Filters are
// not supported.
func (a operationsAPI) ListOperations(ctx context.Context, req *longrunningpb.ListOperationsRequest) (*longrunningpb.ListOperationsResponse, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	loc, err := parseLocation(req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetFilter() != "" {
		return nil, status.Error(codes.InvalidArgument, "the Cloud Run emulator does not support operation filters")
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	prefix := loc.String() + "/operations/"
	var ops []*operation
	for name, op := range a.s.ops {
		if strings.HasPrefix(name, prefix) {
			ops = append(ops, op)
		}
	}
	page, next, err := paginate(ops, func(op *operation) string { return newestFirstKey(op.created.UnixNano(), op.name) },
		req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &longrunningpb.ListOperationsResponse{NextPageToken: next}
	for _, op := range page {
		p, err := op.protoLocked()
		if err != nil {
			return nil, err
		}
		resp.Operations = append(resp.Operations, p)
	}
	return resp, nil
}

// DeleteOperation forgets the operation; it does not cancel what it follows.
func (a operationsAPI) DeleteOperation(ctx context.Context, req *longrunningpb.DeleteOperationRequest) (*emptypb.Empty, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	op, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	delete(a.s.ops, op.name)
	return &emptypb.Empty{}, nil
}

// CancelOperation cancels the execution a RunJob operation follows; the
// operation then finishes with the cancelled execution. Cancelling a finished
// operation, or one that finished as it started, does nothing.
func (a operationsAPI) CancelOperation(ctx context.Context, req *longrunningpb.CancelOperationRequest) (*emptypb.Empty, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	op, err := a.lookupLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	if op.exec != nil && !op.done {
		a.s.requestCancelLocked(op.exec, "")
	}
	return &emptypb.Empty{}, nil
}

// WaitOperation returns when the operation is done, when the timeout (default
// one minute) passes, or when the server shuts down, with the operation's
// state at that moment.
func (a operationsAPI) WaitOperation(ctx context.Context, req *longrunningpb.WaitOperationRequest) (*longrunningpb.Operation, error) {
	req, err := wireCopy(req)
	if err != nil {
		return nil, err
	}
	timeout := defaultWaitTimeout
	if req.GetTimeout() != nil {
		if err := req.GetTimeout().CheckValid(); err != nil || req.GetTimeout().AsDuration() < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "invalid timeout %v", req.GetTimeout())
		}
		timeout = req.GetTimeout().AsDuration()
	}
	a.s.mu.Lock()
	op, err := a.lookupLocked(req.GetName())
	a.s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-op.doneCh:
	case <-t.C:
	case <-a.s.closing:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return op.protoLocked()
}
