//go:build linux

package host

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/procfs"
	"github.com/sandrun/sandrun/internal/procs"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
	"github.com/sandrun/sandrun/internal/shell"
)

// BenchmarkTrivialRequest measures the CPU a host spends on a trivial
// request (`exec true` in a warm session) beyond what its command costs,
// against a floor measured in the same run: the same command through the
// same shell protocol (package shell: bash, its wrapper and the state
// file) with no host around it. Both figures count this process and the
// children it reaped (bash and what bash ran), from getrusage.
//
// The host runs in this process on the in-memory store with a publisher
// that only decodes the completion, so the figure leaves out the
// Firestore and Pub/Sub clients (which `sandrun bench --only counts`
// includes) and keeps everything else a host does for a request: the
// inbox listener, starting and finishing the item, the shell, the process
// manager (as a child subreaper, as the executor is), the output files,
// the checkpoint of the (empty) workspace, telemetry, metrics and logs.
//
// It reports per request: host-cpu-ms (the host path), floor-cpu-ms (the
// command alone), beyond-ms (their difference: the host's own work) and
// ratio (host over floor). Run with -benchtime 300x or more: CPU time is
// counted in clock ticks.
func BenchmarkTrivialRequest(b *testing.B) {
	if err := procs.BecomeSubreaper(); err != nil {
		b.Skip(err)
	}
	fl := newFloor(b)
	defer fl.close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := memstore.NewClock(time.Now())
	store := memstore.New(session.Config{Bucket: "b", Now: clock.Now})
	pub := &signalPublisher{done: make(chan api.Completion, 1)}
	const sessionID = "bench"
	enqueue := func(id string) {
		req := exec(id, "true")
		req.SessionID = sessionID
		raw, _ := json.Marshal(req)
		if _, err := store.Enqueue(ctx, &req, raw, ""); err != nil {
			b.Fatal(err)
		}
	}
	await := func(id string) {
		if c := <-pub.done; c.RequestID != id || c.Status != api.StatusOK || c.ExitCode != 0 {
			b.Fatalf("answered %+v, want %s ok", c, id)
		}
	}
	send := func(id string) { enqueue(id); await(id) }
	// The session exists (its first request is queued) before its host
	// starts: a host finds nothing to host otherwise.
	enqueue("first")
	ran := make(chan error, 1)
	go func() {
		cfg := Config{SessionID: sessionID, Execution: "bench-1", Workspace: b.TempDir(), IdleTimeout: time.Hour,
			BaseEnv: map[string]string{"PATH": "/usr/bin:/bin"}, OwnsOrphans: true}
		ran <- Run(ctx, cfg, store, pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	// The first requests start the host; the measured ones find it warm.
	await("first")
	for i := range 5 {
		send(fmt.Sprintf("warm-%d", i))
	}

	// Host and floor alternate in rounds, so that both see the same load
	// on a shared machine.
	const round = 10
	var host, floor time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i += round {
		k := min(round, b.N-i)
		before := procfs.OwnCPU(true)
		for j := range k {
			send(fmt.Sprintf("r%d", i+j))
		}
		host += procfs.OwnCPU(true) - before
		floor += fl.run(b, k)
	}
	b.StopTimer()
	cancel()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}

	n := float64(b.N)
	hostMS, floorMS := ms(host)/n, ms(floor)/n
	b.ReportMetric(hostMS, "host-cpu-ms")
	b.ReportMetric(floorMS, "floor-cpu-ms")
	b.ReportMetric(hostMS-floorMS, "beyond-ms")
	b.ReportMetric(hostMS/floorMS, "ratio")
}

// floorRunner runs `true` through package shell, as a host runs a
// command, with no host around it.
type floorRunner struct {
	dir            string
	st             shell.State
	stdout, stderr *os.File
}

func newFloor(b *testing.B) *floorRunner {
	dir := b.TempDir()
	f := &floorRunner{dir: dir, st: shell.State{Cwd: dir, Env: map[string]string{"PATH": "/usr/bin:/bin", "HOME": dir}}}
	var err error
	if f.stdout, err = os.Create(filepath.Join(dir, "stdout")); err != nil {
		b.Fatal(err)
	}
	if f.stderr, err = os.Create(filepath.Join(dir, "stderr")); err != nil {
		b.Fatal(err)
	}
	return f
}

// run runs the command n times and returns the CPU that took.
func (f *floorRunner) run(b *testing.B, n int) time.Duration {
	before := procfs.OwnCPU(true)
	for range n {
		res, err := shell.Run(context.Background(), f.dir, f.st, shell.Command{Script: "true", Stdout: f.stdout, Stderr: f.stderr, MaxOutput: api.MaxOutputBytes})
		if err != nil || !res.StateSaved {
			b.Fatalf("floor: %+v, %v", res, err)
		}
	}
	return procfs.OwnCPU(true) - before
}

func (f *floorRunner) close() {
	f.stdout.Close()
	f.stderr.Close()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// signalPublisher hands each published completion to done.
type signalPublisher struct{ done chan api.Completion }

func (p *signalPublisher) PublishCompletion(ctx context.Context, data []byte, traceparent string) error {
	var c api.Completion
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	p.done <- c
	return nil
}
