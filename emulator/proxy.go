package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// A proxy serves an external emulator (Google's Pub/Sub emulator, given as
// Config.ExternalPubSub) on the suite's own port, so that the fault rules
// reach it as they reach the local services: every call is forwarded
// unchanged, message by message, behind the same interceptors.
type proxy struct {
	conn *grpc.ClientConn
}

func newProxy(target string) (*proxy, error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", target, err)
	}
	return &proxy{conn: conn}, nil
}

// serverOptions make a gRPC server hand every call to the proxy.
func (p *proxy) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.UnknownServiceHandler(p.forward), grpc.ForceServerCodecV2(rawCodec{})}
}

// forward relays one call, unary or streaming: the caller's messages up, the
// emulator's messages, status and trailer back.
func (p *proxy) forward(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	cs, err := p.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	go func() {
		for {
			var b []byte
			if err := ss.RecvMsg(&b); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if cs.SendMsg(&b) != nil {
				return // the emulator's status comes with RecvMsg below
			}
		}
	}()
	for {
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(&b); err != nil {
			return err
		}
	}
}

func (p *proxy) Close() error { return p.conn.Close() }

// rawCodec passes messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
