package calls

import (
	"context"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// PeerOf is the address of the client of ctx's call.
func PeerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// ShortMethod turns /google.firestore.v1.Firestore/Commit into Commit.
func ShortMethod(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// PubSub returns the server options that record the calls of a Pub/Sub
// server: each RPC, each message delivered on a StreamingPull stream (caused
// by its Publish), and each acknowledgement or deadline change sent on one.
func (l *Log) PubSub() []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		c := Call{Service: PubSub, Method: ShortMethod(info.FullMethod), Start: start, End: time.Now(), Peer: PeerOf(ctx), Failed: err != nil}
		switch r := req.(type) {
		case *pubsubpb.PublishRequest:
			for _, m := range r.GetMessages() {
				c.Keys = append(c.Keys, attributeKeys(m.GetAttributes())...)
			}
			var ids []string
			if p, ok := resp.(*pubsubpb.PublishResponse); ok {
				ids = p.GetMessageIds()
				c.Messages = int64(len(ids))
			}
			l.RecordPublish(c, ids)
		case *pubsubpb.AcknowledgeRequest:
			l.RecordAck(c, r.GetAckIds())
		case *pubsubpb.ModifyAckDeadlineRequest:
			l.RecordAck(c, r.GetAckIds())
		case *pubsubpb.PullRequest:
			l.Record(c)
			if p, ok := resp.(*pubsubpb.PullResponse); ok {
				l.deliveries(p.GetReceivedMessages(), c.End, c.Peer)
			}
		default:
			l.Record(c)
		}
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, &pullStream{ServerStream: ss, l: l, peer: PeerOf(ss.Context())})
		l.Record(Call{Service: PubSub, Method: ShortMethod(info.FullMethod), Start: start, End: time.Now(), Stream: true, Peer: PeerOf(ss.Context()), Failed: err != nil})
		return err
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

func (l *Log) deliveries(msgs []*pubsubpb.ReceivedMessage, at time.Time, to string) {
	for _, m := range msgs {
		c := Call{Service: PubSub, Method: "StreamingPull.Deliver", Start: at, End: at, Messages: 1, Peer: to,
			Keys: attributeKeys(m.GetMessage().GetAttributes())}
		l.RecordDelivery(c, m.GetMessage().GetMessageId(), m.GetAckId())
	}
}

// pullStream records what a StreamingPull stream carries.
type pullStream struct {
	grpc.ServerStream
	l    *Log
	peer string
}

func (s *pullStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*pubsubpb.StreamingPullRequest); ok && err == nil {
		now := time.Now()
		if ids := r.GetAckIds(); len(ids) > 0 {
			s.l.RecordAck(Call{Service: PubSub, Method: "StreamingPull.Ack", Start: now, End: now, Peer: s.peer}, ids)
		}
		if ids := r.GetModifyDeadlineAckIds(); len(ids) > 0 {
			s.l.RecordAck(Call{Service: PubSub, Method: "StreamingPull.ModAck", Start: now, End: now, Peer: s.peer}, ids)
		}
	}
	return err
}

func (s *pullStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if r, ok := m.(*pubsubpb.StreamingPullResponse); ok && err == nil {
		s.l.deliveries(r.GetReceivedMessages(), time.Now(), s.peer)
	}
	return err
}

func attributeKeys(attrs map[string]string) []string {
	var keys []string
	for k, v := range attrs {
		keys = append(keys, k+"="+v)
	}
	return keys
}

// CloudRun returns the server options that record the calls of a Cloud
// Run Admin API server, each with the resource it names and, for RunJob,
// the environment its overrides set (NAME=VALUE).
func (l *Log) CloudRun() []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		c := Call{Service: CloudRun, Method: ShortMethod(info.FullMethod), Start: start, End: time.Now(), Peer: PeerOf(ctx), Failed: err != nil}
		if n, ok := req.(interface{ GetName() string }); ok && n.GetName() != "" {
			c.Keys = append(c.Keys, n.GetName())
		}
		r, ok := req.(*runpb.RunJobRequest)
		if !ok {
			l.Record(c)
			return resp, err
		}
		for _, co := range r.GetOverrides().GetContainerOverrides() {
			for _, e := range co.GetEnv() {
				c.Keys = append(c.Keys, e.GetName()+"="+e.GetValue())
			}
		}
		// The operation's metadata is the execution it made.
		var execution runpb.Execution
		if op, ok := resp.(*longrunningpb.Operation); ok && op.GetMetadata().UnmarshalTo(&execution) == nil {
			c.Keys = append(c.Keys, execution.GetName())
		}
		l.RecordRunJob(c, execution.GetName())
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		l.Record(Call{Service: CloudRun, Method: ShortMethod(info.FullMethod), Start: start, End: time.Now(), Stream: true, Peer: PeerOf(ss.Context()), Failed: err != nil})
		return err
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}
