package reaper

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/launch"
	"github.com/sandrun/sandrun/internal/session"
)

// fakeRunner is a Cloud Run that the test controls: it lists the
// executions the test says run, records launches and cancels.
type fakeRunner struct {
	mu        sync.Mutex
	running   []jobrunner.Execution
	launched  []string
	cancelled []string
}

func (f *fakeRunner) Launch(ctx context.Context, sessionID, launchID string, env map[string]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.launched = append(f.launched, sessionID)
	return "exec-" + sessionID, nil
}

func (f *fakeRunner) LaunchPoolMember(ctx context.Context, memberID string, env map[string]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.launched = append(f.launched, memberID)
	return "exec-" + memberID, nil
}

func (f *fakeRunner) Running(ctx context.Context) ([]jobrunner.Execution, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.running), nil
}

func (f *fakeRunner) Get(ctx context.Context, id string) (jobrunner.Execution, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.running {
		if e.ID == id {
			return e, nil
		}
	}
	return jobrunner.Execution{ID: id}, nil
}

func (f *fakeRunner) Cancel(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, id)
	return nil
}

// publisher records what the reaper publishes.
type publisher struct {
	mu   sync.Mutex
	sent []api.Completion
}

func (p *publisher) PublishCompletion(ctx context.Context, data []byte, traceparent string) error {
	var c api.Completion
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent = append(p.sent, c)
	return nil
}

type env struct {
	store  *session.Store
	fs     *firestore.Client
	gcs    *storage.Client
	runner *fakeRunner
	pub    *publisher
	reaper *Reaper
	// launcher carries out the reaper's launches.
	launcher *launch.Launcher
	now      time.Time
}

const bucket = "reaper-test"

func setup(t *testing.T) *env {
	t.Helper()
	s := emulatortest.Start(t, emulator.Config{Buckets: []string{bucket}})
	fs, gcs := emulatortest.Clients(t, s)
	e := &env{fs: fs, gcs: gcs, runner: &fakeRunner{}, pub: &publisher{}, now: time.Now()}
	// The store's clock is the test's, so that it can age sessions.
	e.store = session.NewStore(fs, gcs, session.Config{Bucket: bucket, Now: func() time.Time { return e.now }})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.launcher = launch.New(launch.Config{}, e.store, e.runner, logger)
	lctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.launcher.Run(lctx) }()
	t.Cleanup(func() { stop(); <-done })
	e.reaper = New(Config{PublishAfter: time.Second, OrphanAfter: time.Minute}, e.store, e.pub, e.runner, e.launcher, nil, logger)
	e.reaper.now = func() time.Time { return e.now }
	return e
}

// once makes a reaper pass and waits until the launcher tried each launch
// it claimed, as `reaper --once` does.
func (e *env) once(ctx context.Context) (Report, error) {
	rep, err := e.reaper.Once(ctx)
	if err != nil {
		return rep, err
	}
	return rep, e.launcher.Drain(ctx)
}

func (e *env) enqueue(t *testing.T, sessionID, requestID, command string) session.Accepted {
	t.Helper()
	req := &api.Request{RequestID: requestID, SessionID: sessionID, Op: api.OpExec, Command: command}
	raw, _ := json.Marshal(req)
	acc, err := e.store.Enqueue(context.Background(), req, raw, "")
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

func TestReaperRepublishesLostCompletions(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.enqueue(t, "s1", "r1", "true")
	lease, err := e.store.Acquire(ctx, "s1", "exec-s1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Start(ctx, lease, session.Item{RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	// The host records the completion, then dies before publishing it.
	c := &api.Completion{RequestID: "r1", SessionID: "s1", Op: api.OpExec, Status: api.StatusOK}
	if _, err := e.store.Finish(ctx, lease, time.Time{}, c, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.once(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.pub.sent) != 0 {
		t.Fatalf("published a fresh completion its host may still publish: %+v", e.pub.sent)
	}
	e.now = e.now.Add(2 * time.Second)
	rep, err := e.once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Republished != 1 || len(e.pub.sent) != 1 || e.pub.sent[0].RequestID != "r1" {
		t.Fatalf("republished %d: %+v", rep.Republished, e.pub.sent)
	}
	if rep, _ := e.once(ctx); rep.Republished != 0 {
		t.Fatalf("a published completion was published again")
	}
}

// runningHost gives session s1 a host, exec-old, whose 10-second lease
// runs r1 ("sleep 600") while r2 waits behind it.
func runningHost(t *testing.T, e *env) *session.Lease {
	t.Helper()
	ctx := context.Background()
	e.enqueue(t, "s1", "r1", "sleep 600")
	lease, err := e.store.Acquire(ctx, "s1", "exec-old", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Start(ctx, lease, session.Item{RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	e.enqueue(t, "s1", "r2", "echo next")
	return lease
}

func TestReaperRecoversLostHostAndRelaunches(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	lease := runningHost(t, e)
	e.now = e.now.Add(11 * time.Second) // the lease lapses
	rep, err := e.once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.HostsRecovered != 1 || rep.HostLost != 1 || rep.Launched != 1 {
		t.Fatalf("report %+v", rep)
	}
	if len(e.pub.sent) != 1 || e.pub.sent[0].RequestID != "r1" || e.pub.sent[0].Error.Code != api.CodeHostLost {
		t.Fatalf("published %+v, want r1 HOST_LOST", e.pub.sent)
	}
	if !slices.Equal(e.runner.launched, []string{"s1"}) {
		t.Fatalf("launched %v, want a host for s1 (r2 waits)", e.runner.launched)
	}
	// The old host, if it still ran, could write nothing.
	if _, err := e.store.Finish(ctx, lease, time.Time{}, &api.Completion{RequestID: "r1", SessionID: "s1", Op: api.OpExec}, nil, nil); err == nil {
		t.Fatal("the lost host could still record a completion")
	}
}

// A lapsed host whose execution still runs (stopped, or cut off from
// Firestore) may still be running a command: the reaper cancels it and
// recovers the session, and launches its next host, only once the
// execution ended. Until then no new host may take the session either.
func TestReaperWaitsOutALapsedHostThatStillRuns(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	runningHost(t, e)
	e.runner.running = []jobrunner.Execution{{ID: "exec-old", SessionID: "s1", Running: true}}
	e.now = e.now.Add(11 * time.Second) // the lease lapses
	rep, err := e.reaper.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.HostsRecovered != 0 || rep.Launched != 0 || len(e.pub.sent) != 0 {
		t.Fatalf("report %+v, published %+v: the session moved on while its old host ran", rep, e.pub.sent)
	}
	if !slices.Equal(e.runner.cancelled, []string{"exec-old"}) {
		t.Fatalf("cancelled %v, want the lapsed host exec-old", e.runner.cancelled)
	}
	if _, err := e.store.Acquire(ctx, "s1", "exec-new", time.Minute); !errors.Is(err, session.ErrLeaseHeld) {
		t.Fatalf("a new host took the session from a lapsed host that still runs: %v", err)
	}

	e.runner.running = nil // the cancel took effect
	rep, err = e.reaper.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.HostsRecovered != 1 || rep.HostLost != 1 || rep.Launched != 1 {
		t.Fatalf("report %+v after the old host ended", rep)
	}
}

func TestReaperGivesUpOnSessionsWhoseHostsKeepDying(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	acc := e.enqueue(t, "s1", "r1", "true")
	if acc.Launch == nil {
		t.Fatal("no launch claimed for a new session")
	}
	for attempt := 1; ; attempt++ {
		// Each launch's execution ends without taking the lease.
		e.now = e.now.Add(session.DefaultLaunchTimeout + time.Second)
		rep, err := e.once(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.LaunchFailed > 0 {
			if attempt != DefaultMaxLaunchAttempts {
				t.Fatalf("gave up after %d relaunches", attempt)
			}
			break
		}
		if attempt > DefaultMaxLaunchAttempts {
			t.Fatal("never gave up")
		}
	}
	if len(e.pub.sent) != 1 || e.pub.sent[0].Error.Code != api.CodeLaunchFailed {
		t.Fatalf("published %+v, want r1 LAUNCH_FAILED", e.pub.sent)
	}
}

func TestReaperDestroysStaleSessionsAndCancelsOrphans(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.enqueue(t, "old", "r1", "true")
	e.enqueue(t, "fresh", "r2", "true")
	w := e.gcs.Bucket(bucket).Object("sessions/old/checkpoints/x").NewWriter(ctx)
	io.WriteString(w, "state")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	started := e.now
	e.now = e.now.Add(session.DefaultTTL + time.Hour)
	e.runner.running = []jobrunner.Execution{
		{ID: "exec-orphan", Running: true, CreatedAt: started},
		// Too young to tell from a launch that is still being recorded.
		{ID: "exec-young", Running: true, CreatedAt: e.now.Add(-time.Second)},
	}
	e.enqueue(t, "fresh", "r3", "true") // fresh is active again
	rep, err := e.once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Destroyed != 1 || rep.Purged < 1 {
		t.Fatalf("report %+v, want old destroyed and purged", rep)
	}
	if d, err := e.store.Session(ctx, "old"); err != nil || d.Status != session.StatusDestroyed {
		t.Fatalf("old: %+v %v", d, err)
	}
	if d, err := e.store.Session(ctx, "fresh"); err != nil || d.Status != session.StatusActive {
		t.Fatalf("fresh: %+v %v", d, err)
	}
	if _, err := e.gcs.Bucket(bucket).Object("sessions/old/checkpoints/x").Attrs(ctx); err == nil {
		t.Fatal("a destroyed session's object is left")
	}
	// old's queued request r1 was answered ABORTED.
	if len(e.pub.sent) != 1 || e.pub.sent[0].RequestID != "r1" || e.pub.sent[0].Error.Code != api.CodeAborted {
		t.Fatalf("published %+v", e.pub.sent)
	}
	if !slices.Equal(e.runner.cancelled, []string{"exec-orphan"}) || len(e.runner.launched) != 0 {
		t.Fatalf("cancelled %v and launched %v; want exec-orphan cancelled, nothing launched", e.runner.cancelled, e.runner.launched)
	}
}
