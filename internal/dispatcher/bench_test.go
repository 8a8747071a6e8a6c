package dispatcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/logging"
	"github.com/sandrun/sandrun/internal/session"
)

// BenchmarkHandle measures the dispatcher's handling of a warm request:
// an exec for a session whose host holds the lease, against the local
// cloud's Firestore, in this process, with the production logger (JSON,
// info level) writing to nowhere. An op is one Handle; cpu-µs/op is the
// process's CPU per op: the dispatcher, its Firestore client, and the
// local cloud serving it (a CPU profile tells them apart:
// -cpuprofile, then the stacks under grpc.(*Server) are the local
// cloud's).
func BenchmarkHandle(b *testing.B) {
	ctx := context.Background()
	const bucket = "sandrun-bench"
	suite := emulatortest.Start(b, emulator.Config{Buckets: []string{bucket}})
	clients, err := gcp.Connect(ctx, suite.Project, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { clients.Close() })
	store := session.NewStore(clients.Firestore, clients.Storage, session.Config{Bucket: bucket})
	d := New(Config{}, nil, store, &fakeQueue{}, &fakeLaunches{}, logging.New(io.Discard, slog.LevelInfo, suite.Project))

	const sessionID = "bench-handle"
	if err := d.Handle(ctx, message(b, api.Request{RequestID: "create", SessionID: sessionID, Op: api.OpSessionCreate})); err != nil {
		b.Fatal(err)
	}
	if _, err := store.Acquire(ctx, sessionID, "execution-1", time.Hour); err != nil {
		b.Fatal(err)
	}
	cpu0 := processCPU()
	for i := 0; b.Loop(); i++ {
		m := message(b, api.Request{RequestID: fmt.Sprintf("r%d", i), SessionID: sessionID, Op: api.OpExec, Command: "true"})
		if err := d.Handle(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
