package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/jobrunner"
	"github.com/sandrun/sandrun/internal/session"
)

// fakeRunner is a Cloud Run the test controls: it refuses launches while
// refuse is set, and lists as running the executions it started that the
// test has not ended.
type fakeRunner struct {
	mu       sync.Mutex
	refuse   bool
	launched []string // sessions, in launch order
	running  map[string]string
	tries    int
}

func (f *fakeRunner) Launch(ctx context.Context, sessionID, launchID string, env map[string]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries++
	if f.refuse {
		return "", status.Error(codes.ResourceExhausted, "quota")
	}
	f.launched = append(f.launched, sessionID)
	f.running["exec-"+sessionID] = sessionID
	return "exec-" + sessionID, nil
}

func (f *fakeRunner) LaunchPoolMember(ctx context.Context, memberID string, env map[string]string) (string, error) {
	return "", fmt.Errorf("no pool here")
}

func (f *fakeRunner) Cancel(ctx context.Context, execution string) error { return nil }

func (f *fakeRunner) Running(ctx context.Context) ([]jobrunner.Execution, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []jobrunner.Execution
	for id, s := range f.running {
		out = append(out, jobrunner.Execution{ID: id, SessionID: s, Running: true})
	}
	return out, nil
}

func (f *fakeRunner) end(sessionID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running, "exec-"+sessionID)
}

func (f *fakeRunner) launches() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.launched)
}

type env struct {
	store  *session.Store
	runner *fakeRunner
	l      *Launcher
}

func setup(t *testing.T, cfg Config) *env {
	t.Helper()
	s := emulatortest.Start(t, emulator.Config{Buckets: []string{"launch-test"}})
	ctx := context.Background()
	clients, err := gcp.Connect(ctx, s.Project, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clients.Close() })
	e := &env{store: session.NewStore(clients.Firestore, clients.Storage, session.Config{Bucket: "launch-test"}),
		runner: &fakeRunner{running: map[string]string{}}}
	cfg.Backoff = DefaultBackoff
	cfg.Backoff.Initial, cfg.Backoff.Max = 10*time.Millisecond, 50*time.Millisecond
	cfg.CountInterval = 20 * time.Millisecond
	e.l = New(cfg, e.store, e.runner, slog.New(slog.NewTextHandler(io.Discard, nil)))
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.l.Run(lctx) }()
	t.Cleanup(func() { stop(); <-done })
	return e
}

// request queues a command in a new session and hands its claimed launch
// to the launcher, as the dispatcher does.
func (e *env) request(t *testing.T, sessionID string) {
	t.Helper()
	req := &api.Request{RequestID: "r-" + sessionID, SessionID: sessionID, Op: api.OpExec, Command: "true"}
	raw, _ := json.Marshal(req)
	acc, err := e.store.Enqueue(context.Background(), req, raw, "")
	if err != nil {
		t.Fatal(err)
	}
	if acc.Launch == nil {
		t.Fatalf("no launch claimed for %s", sessionID)
	}
	e.l.Request(sessionID, acc.Launch, "")
}

// eventually waits, reading again every 10 ms, until cond holds. The
// launcher announces nothing a test could await.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) waiting(t *testing.T) []session.HostWait {
	t.Helper()
	ws, err := e.store.WaitingForHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// TestRefusedLaunchesWaitAndRunWhenAccepted: while Cloud Run refuses every
// launch, the sessions keep their claims and are shown waiting; none is
// given up; once launches are accepted each is launched, once.
func TestRefusedLaunchesWaitAndRunWhenAccepted(t *testing.T) {
	e := setup(t, Config{})
	e.runner.refuse = true
	ids := []string{"a", "b", "c", "d", "e"}
	for _, id := range ids {
		e.request(t, id)
	}
	eventually(t, "every session shown waiting for a refused launch", func() bool {
		ws := e.waiting(t)
		return len(ws) == len(ids) && !slices.ContainsFunc(ws, func(w session.HostWait) bool { return w.For != session.WaitRefused })
	})
	eventually(t, "retries", func() bool { e.runner.mu.Lock(); defer e.runner.mu.Unlock(); return e.runner.tries > 2*len(ids) })
	for _, id := range ids {
		d, err := e.store.Session(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Launch == nil || d.Launch.Execution != "" || d.LaunchAttempts != 1 {
			t.Fatalf("%s while refused: launch %+v, attempts %d; want its one claim kept", id, d.Launch, d.LaunchAttempts)
		}
	}

	e.runner.mu.Lock()
	e.runner.refuse = false
	e.runner.mu.Unlock()
	eventually(t, "every session launched", func() bool { return len(e.runner.launches()) == len(ids) })
	got := e.runner.launches()
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Fatalf("launched %v, want each of %v once", got, ids)
	}
	eventually(t, "launches recorded", func() bool { return e.l.Pending() == 0 && len(e.waiting(t)) == 0 })
}

// TestMaxHostsFirstComeFirstServed: with at most 2 hosts, the 3rd and 4th
// sessions wait in line, in order, and each starts when a host ends.
func TestMaxHostsFirstComeFirstServed(t *testing.T) {
	e := setup(t, Config{MaxHosts: 2})
	for _, id := range []string{"s1", "s2", "s3", "s4"} {
		e.request(t, id)
	}
	// The launcher may count a host it just started twice (never miss
	// one), so s2 can be in line for a moment before it is launched; the
	// line is read once every launch is recorded, which takes it out.
	eventually(t, "s1 and s2 launched, two others in line", func() bool {
		launched, ws := e.runner.launches(), e.waiting(t)
		if len(launched) > 2 {
			t.Fatalf("launched %v with at most 2 hosts, none ended", launched)
		}
		return len(launched) == 2 && len(ws) == 2 && !slices.ContainsFunc(ws, func(w session.HostWait) bool { return slices.Contains(launched, w.SessionID) })
	})
	if got := e.runner.launches(); !slices.Equal(got, []string{"s1", "s2"}) && !slices.Equal(got, []string{"s2", "s1"}) {
		t.Fatalf("launched %v first, want s1 and s2", got)
	}
	ws := e.waiting(t)
	if ws[0].SessionID != "s3" || ws[0].Place != 1 || ws[1].SessionID != "s4" || ws[1].Place != 2 || ws[0].For != session.WaitMaxHosts {
		t.Fatalf("waiting %+v, want s3 then s4, behind the most hosts", ws)
	}
	e.runner.end("s1")
	eventually(t, "s3 launched", func() bool { return len(e.runner.launches()) == 3 })
	if got := e.runner.launches()[2]; got != "s3" {
		t.Fatalf("launched %s when a host ended, want s3, first in line", got)
	}
	// s3's launch is recorded (which takes it out of the line) a moment
	// after it started.
	eventually(t, "s4 alone in line", func() bool { return len(e.waiting(t)) == 1 })
	if ws := e.waiting(t); ws[0].SessionID != "s4" || ws[0].Place != 1 {
		t.Fatalf("waiting %+v, want s4 first in line", ws)
	}
	e.runner.end("s2")
	eventually(t, "s4 launched", func() bool { return len(e.runner.launches()) == 4 })
}
