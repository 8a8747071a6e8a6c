package pubsub

import (
	"context"
	"errors"
	"io"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxPullWait is how long a Pull with nothing to deliver waits before it
// answers with no messages.
const maxPullWait = 10 * time.Second

// StreamingPull serves one stream: deliveries as they become possible,
// within the client's flow control; acks, nacks and deadline changes sent
// on the stream. Outstanding deliveries outlive the stream: they end with an
// ack or nack by RPC, or when their deadline passes.
func (s *Server) StreamingPull(stream pubsubpb.Subscriber_StreamingPullServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if d := first.GetStreamAckDeadlineSeconds(); d < minAckDeadline || d > maxAckDeadline {
		return status.Errorf(codes.InvalidArgument, "stream ack deadline %d s is outside %d to %d", d, minAckDeadline, maxAckDeadline)
	}
	p := &puller{ackDeadline: time.Duration(first.GetStreamAckDeadlineSeconds()) * time.Second,
		maxMessages: first.GetMaxOutstandingMessages(), maxBytes: first.GetMaxOutstandingBytes(), responseSize: maxResponseBytes}
	var props *pubsubpb.StreamingPullResponse_SubscriptionProperties
	s.mu.Lock()
	sub, err := s.subscription(first.GetSubscription())
	if err == nil {
		// The Go client orders its callbacks only when told so here.
		props = &pubsubpb.StreamingPullResponse_SubscriptionProperties{MessageOrderingEnabled: sub.pb.GetEnableMessageOrdering()}
		err = s.onStream(sub, p, first)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}

	// The client's requests are read on a goroutine of their own; the
	// first error (io.EOF when the client closed its side) ends the stream.
	ended := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err == nil {
				s.mu.Lock()
				err = s.onStream(sub, p, req)
				s.mu.Unlock()
			}
			if err != nil {
				ended <- err
				return
			}
		}
	}()

	for {
		msgs, wake, err := s.pull(sub, p)
		if err != nil {
			return err
		}
		if len(msgs) > 0 {
			if err := stream.Send(&pubsubpb.StreamingPullResponse{ReceivedMessages: msgs, SubscriptionProperties: props}); err != nil {
				return err
			}
			continue
		}
		select {
		case <-wake:
		case err := <-ended:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-s.done:
			return status.Error(codes.Unavailable, "the local Pub/Sub is shutting down")
		}
	}
}

// onStream applies what a stream's request carries: acks, deadline changes
// (0 is a nack) and a new stream deadline.
func (s *Server) onStream(sub *subscription, p *puller, r *pubsubpb.StreamingPullRequest) error {
	if sub.deleted {
		return status.Errorf(codes.NotFound, "subscription %s not found", sub.pb.GetName())
	}
	if len(r.GetModifyDeadlineSeconds()) != len(r.GetModifyDeadlineAckIds()) {
		return status.Error(codes.InvalidArgument, "modify_deadline_seconds and modify_deadline_ack_ids differ in length")
	}
	if d := r.GetStreamAckDeadlineSeconds(); d != 0 {
		if d < minAckDeadline || d > maxAckDeadline {
			return status.Errorf(codes.InvalidArgument, "stream ack deadline %d s is outside %d to %d", d, minAckDeadline, maxAckDeadline)
		}
		p.ackDeadline = time.Duration(d) * time.Second
	}
	sub.acknowledge(r.GetAckIds())
	now := time.Now()
	for i, id := range r.GetModifyDeadlineAckIds() {
		if err := s.modify(sub, []string{id}, r.GetModifyDeadlineSeconds()[i], now); err != nil {
			return err
		}
	}
	return nil
}

// pull delivers to p what it may have now; with nothing, it returns the
// channel that is closed when that may change.
func (s *Server) pull(sub *subscription, p *puller) ([]*pubsubpb.ReceivedMessage, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.deleted {
		return nil, nil, status.Errorf(codes.NotFound, "subscription %s not found", sub.pb.GetName())
	}
	now := time.Now()
	var msgs []*pubsubpb.ReceivedMessage
	for _, e := range sub.take(p, now) {
		msgs = append(msgs, s.deliver(sub, e, p, now))
	}
	return msgs, sub.wake, nil
}

// Pull answers with up to max_messages, waiting for the first while there
// is none, up to maxPullWait (or at once with return_immediately).
func (s *Server) Pull(ctx context.Context, r *pubsubpb.PullRequest) (*pubsubpb.PullResponse, error) {
	if r.GetMaxMessages() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "max_messages must be positive")
	}
	s.mu.Lock()
	sub, err := s.subscription(r.GetSubscription())
	var p *puller
	if err == nil {
		p = &puller{ackDeadline: time.Duration(sub.pb.GetAckDeadlineSeconds()) * time.Second,
			maxMessages: int64(r.GetMaxMessages()), responseSize: maxResponseBytes}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	timeout := time.NewTimer(maxPullWait)
	defer timeout.Stop()
	for {
		msgs, wake, err := s.pull(sub, p)
		if err != nil {
			return nil, err
		}
		if len(msgs) > 0 || r.GetReturnImmediately() {
			return &pubsubpb.PullResponse{ReceivedMessages: msgs}, nil
		}
		select {
		case <-wake:
		case <-timeout.C:
			return &pubsubpb.PullResponse{}, nil
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return nil, status.Error(codes.Unavailable, "the local Pub/Sub is shutting down")
		}
	}
}
