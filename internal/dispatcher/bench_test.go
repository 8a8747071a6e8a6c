package dispatcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/logging"
	"github.com/sandrun/sandrun/internal/procfs"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
)

// BenchmarkHandle measures the dispatcher's handling of a warm request:
// an exec for a session whose host holds the lease, with the production
// logger (JSON, info level) writing to nowhere. An op is one delivery
// (in its session's order, then Handle), as for a message Pub/Sub hands
// the dispatcher; cpu-µs/op is the process's CPU per op.
//
// On the local cloud (cloud), that is the dispatcher, its Firestore
// client and the local cloud serving it, in this process (in a CPU
// profile, the stacks under grpc.(*Server) are the local cloud's). On the
// in-memory store (memory), it is nearly all the dispatcher's own code,
// whose allocations per op are exact.
func BenchmarkHandle(b *testing.B) {
	b.Run("store=cloud", func(b *testing.B) {
		ctx := context.Background()
		const bucket = "sandrun-bench"
		suite := emulatortest.Start(b, emulator.Config{Buckets: []string{bucket}})
		clients, err := gcp.Connect(ctx, suite.Project, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { clients.Close() })
		benchHandle(b, session.NewStore(clients.Firestore, clients.Storage, session.Config{Bucket: bucket}))
	})
	b.Run("store=memory", func(b *testing.B) {
		benchHandle(b, memstore.New(session.Config{Bucket: "b"}))
	})
}

// warmStore is a Store whose sessions a host can hold.
type warmStore interface {
	Store
	Acquire(ctx context.Context, sessionID, execution string, ttl time.Duration) (*session.Lease, error)
}

func benchHandle(b *testing.B, store warmStore) {
	ctx := context.Background()
	d := New(Config{}, nil, store, &fakeQueue{}, &fakeLaunches{}, logging.New(io.Discard, slog.LevelInfo, "bench"))
	const sessionID = "bench-handle"
	if err := d.Handle(ctx, message(b, api.Request{RequestID: "create", SessionID: sessionID, Op: api.OpSessionCreate})); err != nil {
		b.Fatal(err)
	}
	if _, err := store.Acquire(ctx, sessionID, "execution-1", time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := procfs.OwnCPU(false)
	for i := 0; b.Loop(); i++ {
		m := message(b, api.Request{RequestID: fmt.Sprintf("r%d", i), SessionID: sessionID, Op: api.OpExec, Command: "true"})
		if v := d.deliver(ctx, m); v != ack {
			b.Fatalf("request %s not acknowledged: %d", m.ID, v)
		}
	}
	b.ReportMetric(float64((procfs.OwnCPU(false)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
