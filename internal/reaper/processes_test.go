package reaper

import (
	"context"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/session"
)

// TestReaperSettlesProcessesOfHostsThatAreGone registers background
// processes for hosts in every state a reaper pass meets, and checks that
// the pass marks lost exactly those whose host is gone, once.
func TestReaperSettlesProcessesOfHostsThatAreGone(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	record := func(lease *session.Lease, pid int, status string) {
		t.Helper()
		p := session.ProcessDoc{Pid: pid, Command: "sleep 600", Status: status, StartedAt: e.now}
		if status != session.ProcessRunning {
			code := 143
			p.ExitCode, p.Signal, p.FinishedAt = &code, "TERM", e.now
		}
		if err := e.store.RecordProcess(ctx, lease, p); err != nil {
			t.Fatal(err)
		}
	}
	acquire := func(sessionID, execution string, ttl time.Duration) *session.Lease {
		t.Helper()
		lease, err := e.store.Acquire(ctx, sessionID, execution, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return lease
	}

	// dead: its host's lease lapses; one process ran, one was killed.
	e.enqueue(t, "dead", "r1", "true")
	deadHost := acquire("dead", "exec-dead", 10*time.Second)
	record(deadHost, 101, session.ProcessRunning)
	record(deadHost, 102, session.ProcessKilled)
	// live: its host renews its lease and still runs its process.
	e.enqueue(t, "live", "r2", "true")
	liveHost := acquire("live", "exec-live", time.Hour)
	record(liveHost, 201, session.ProcessRunning)
	// never: its host's lease was never live (it lapsed as it was taken).
	e.enqueue(t, "never", "r4", "true")
	neverHost := acquire("never", "exec-never", 0)
	record(neverHost, 401, session.ProcessRunning)
	// replaced: an earlier host's lease lapsed and a new host took the
	// session; each registered a process with the same pid.
	e.enqueue(t, "replaced", "r3", "true")
	oldHost := acquire("replaced", "exec-old", 10*time.Second)
	record(oldHost, 301, session.ProcessRunning)

	e.now = e.now.Add(11 * time.Second) // the 10-second leases lapse
	// The old host is recovered (as a reaper pass does once its execution
	// ended) before a new host may take the session.
	if _, _, err := e.store.RecoverHost(ctx, "replaced"); err != nil {
		t.Fatal(err)
	}
	newHost := acquire("replaced", "exec-new", time.Hour)
	record(newHost, 301, session.ProcessRunning)

	rep, err := e.once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ProcessesLost != 3 {
		t.Errorf("report: %d processes lost, want 3 (dead's 101, never's 401 and replaced's first 301)", rep.ProcessesLost)
	}
	status := func(sessionID string) map[string]session.ProcessDoc {
		t.Helper()
		docs, err := e.store.Processes(ctx, sessionID)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]session.ProcessDoc{}
		for _, d := range docs {
			out[session.ProcessKey(d.Epoch, d.Pid)] = d
		}
		return out
	}
	want := func(sessionID string, lease *session.Lease, pid int, st string) {
		t.Helper()
		d, ok := status(sessionID)[session.ProcessKey(lease.Epoch, pid)]
		switch {
		case !ok:
			t.Errorf("%s: process %d of %s is gone from the registry", sessionID, pid, lease.Execution)
		case d.Status != st:
			t.Errorf("%s: process %d of %s is %s, want %s", sessionID, pid, lease.Execution, d.Status, st)
		case st == session.ProcessLost && (d.FinishedAt.IsZero() || d.Reason == "" || d.ExitCode != nil):
			t.Errorf("%s: lost process %d: finished_at %v, reason %q, exit_code %v; want a time and a reason, no exit code",
				sessionID, pid, d.FinishedAt, d.Reason, d.ExitCode)
		case st == session.ProcessRunning && !d.FinishedAt.IsZero():
			t.Errorf("%s: running process %d has finished_at %v", sessionID, pid, d.FinishedAt)
		}
	}
	want("dead", deadHost, 101, session.ProcessLost)
	want("dead", deadHost, 102, session.ProcessKilled) // how it ended is known: kept
	want("never", neverHost, 401, session.ProcessLost)
	want("live", liveHost, 201, session.ProcessRunning)
	want("replaced", oldHost, 301, session.ProcessLost)
	want("replaced", newHost, 301, session.ProcessRunning)
	if d := status("dead")[session.ProcessKey(deadHost.Epoch, 102)]; d.ExitCode == nil || *d.ExitCode != 143 || d.Signal != "TERM" {
		t.Errorf("dead: killed process 102 changed: %+v", d)
	}

	// Settled entries stay settled; the live host's process is left alone
	// for as long as its lease is live.
	e.now = e.now.Add(time.Minute)
	rep, err = e.once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ProcessesLost != 0 {
		t.Errorf("second pass: %d processes lost, want 0", rep.ProcessesLost)
	}
	want("live", liveHost, 201, session.ProcessRunning)
	want("replaced", newHost, 301, session.ProcessRunning)
}
