package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator/faults"
	"github.com/sandrun/sandrun/internal/session"
)

// TestLaunchFailuresAreIsolated: while Cloud Run refuses every launch, 1,000
// new sessions each queue a command; a warm session keeps being served all
// along; the sessions stay queued (none is answered LAUNCH_FAILED); 980 of
// them are destroyed, which answers the destroy and the queued command at
// once; and once launches succeed again the other 20 run. Every request
// ends in exactly one completion. (The warm session's latency under the
// burst is measured by `sandrun bench`, not here.)
func TestLaunchFailuresAreIsolated(t *testing.T) {
	const sessions, kept = 1000, 20
	// The warm host must outlive the whole test: a host it lost could not
	// be launched again while launches fail. Its lease is long, and the
	// reaper's passes spaced out, because the local cloud's Firestore, on
	// a loaded 2-core machine, has taken more than 10 s to commit a lease
	// renewal under this burst; losing a host is not what is tested here.
	w := start(t, options{idleTimeout: 10 * time.Minute, leaseTTL: time.Minute, reaperInterval: 2 * time.Second})
	tp := w.subscribe(w.sys.Names.Completions)
	w.exec("warm", "echo warm")
	if err := w.suite.Faults.Add(faults.Rule{Service: faults.CloudRun, Method: "RunJob", Rate: 1, Code: "RESOURCE_EXHAUSTED"}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := uuid.NewString()[:6]
	id := func(i int) string { return fmt.Sprintf("burst-%s-%04d", run, i) }
	execs := make([]string, sessions)
	sendAll(t, ctx, w, sessions, func(i int) *api.Request {
		execs[i] = "exec-" + id(i)
		return &api.Request{RequestID: execs[i], SessionID: id(i), Op: api.OpExec, Command: "echo " + id(i)}
	})
	// Every one of them waits for a host that Cloud Run refuses; none is
	// given up.
	waitWaiting(t, w, "all the burst's sessions to wait for a refused launch", 5*time.Minute, func(ws []session.HostWait) bool {
		n := 0
		for _, h := range ws {
			if strings.HasPrefix(h.SessionID, "burst-"+run) && h.For == session.WaitRefused {
				n++
			}
		}
		return n == sessions
	})
	// The warm session is served meanwhile, by its host.
	for i := range 5 {
		w.exec("warm", fmt.Sprintf("echo during %d", i))
	}
	if got := completionsOf(t, tp, execs); len(got) != 0 {
		t.Fatalf("%d of the refused sessions' requests were answered while launches failed: %v", len(got), got)
	}

	// Destroying a session that never had a host answers the destroy and
	// its queued command at once.
	destroys := make([]string, sessions-kept)
	sendAll(t, ctx, w, sessions-kept, func(i int) *api.Request {
		destroys[i] = "destroy-" + id(i)
		return &api.Request{RequestID: destroys[i], SessionID: id(i), Op: api.OpSessionDestroy}
	})
	tp.waitFor(t, "the destroys and their sessions' aborted commands", 5*time.Minute, func(msgs []*pubsub.Message) bool {
		seen := byRequest(msgs)
		for i := range sessions - kept {
			if len(seen[destroys[i]]) == 0 || len(seen[execs[i]]) == 0 {
				return false
			}
		}
		return true
	})

	// Launches succeed again: the sessions still queued run.
	w.suite.Faults.Clear(faults.CloudRun)
	all := append(append([]string{}, execs...), destroys...)
	tp.waitFor(t, "every request answered", 5*time.Minute, func(msgs []*pubsub.Message) bool {
		seen := byRequest(msgs)
		for _, r := range all {
			if len(seen[r]) == 0 {
				return false
			}
		}
		return true
	})
	got := completionsOf(t, tp, all)
	for i := range sessions {
		c := got[execs[i]]
		switch {
		case len(c) != 1:
			t.Errorf("%s: %d completions, want 1", execs[i], len(c))
		case i < sessions-kept && (c[0].Error == nil || c[0].Error.Code != api.CodeAborted):
			t.Errorf("%s (destroyed): %s %+v, want ABORTED", execs[i], c[0].Status, c[0].Error)
		case i >= sessions-kept && (c[0].Status != api.StatusOK || strings.TrimSpace(c[0].Stdout) != id(i)):
			t.Errorf("%s (kept): %s %+v stdout %q, want ok", execs[i], c[0].Status, c[0].Error, c[0].Stdout)
		}
	}
	for _, r := range destroys {
		if c := got[r]; len(c) != 1 || c[0].Status != api.StatusOK {
			t.Errorf("%s: %+v, want one ok", r, c)
		}
	}
	// No destroyed session got a host.
	ws, err := w.store.WaitingForHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 0 {
		t.Errorf("still waiting for a host: %+v", ws)
	}
}

// TestMaxHostsQueuesNewSessionsInOrder: with at most 2 running hosts, a 3rd
// and a 4th new session wait in line, shown by `sandrun status` with their
// places, and run in that order as the first two hosts leave.
func TestMaxHostsQueuesNewSessionsInOrder(t *testing.T) {
	w := start(t, options{maxHosts: 2, idleTimeout: 4 * time.Second})
	run := uuid.NewString()[:6]
	s := func(i int) string { return fmt.Sprintf("line-%s-%d", run, i) }
	// Session 1's host leaves about 4 s after its command, session 2's
	// about 10 s later: the line moves one place at a time.
	w.exec(s(1), "echo 1")
	tp := w.subscribe(w.sys.Names.Completions)
	ctx := context.Background()
	long := &api.Request{RequestID: "long-" + run, SessionID: s(2), Op: api.OpExec, Command: "sleep 10; echo 2"}
	if err := w.client.Send(ctx, long); err != nil {
		t.Fatal(err)
	}
	w.waitRunning(s(2), long.RequestID)
	third := &api.Request{RequestID: "third-" + run, SessionID: s(3), Op: api.OpExec, Command: "echo 3"}
	fourth := &api.Request{RequestID: "fourth-" + run, SessionID: s(4), Op: api.OpExec, Command: "echo 4"}
	for _, r := range []*api.Request{third, fourth} {
		if err := w.client.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
		// Each is in line before the next is sent: first come, first served.
		waitWaiting(t, w, r.SessionID+" in line", time.Minute, func(ws []session.HostWait) bool {
			return len(ws) > 0 && ws[len(ws)-1].SessionID == r.SessionID
		})
	}
	var rep struct {
		Waiting []session.HostWait `json:"waiting_for_host"`
	}
	out := runSandrun(t, w, "status", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(rep.Waiting) != 2 || rep.Waiting[0].SessionID != s(3) || rep.Waiting[0].Place != 1 || rep.Waiting[1].SessionID != s(4) ||
		rep.Waiting[1].Place != 2 || rep.Waiting[0].For != session.WaitMaxHosts {
		t.Fatalf("status shows waiting %+v; want %s 1st and %s 2nd, behind the most hosts", rep.Waiting, s(3), s(4))
	}
	table := runSandrun(t, w, "status")
	for _, want := range []string{"2 sessions wait for a host", "1. " + s(3), "2. " + s(4), "the most running hosts are running"} {
		if !strings.Contains(table, want) {
			t.Errorf("status does not say %q:\n%s", want, table)
		}
	}

	msgs := tp.waitFor(t, "the waiting sessions' commands", 2*time.Minute, func(msgs []*pubsub.Message) bool {
		seen := byRequest(msgs)
		return len(seen[third.RequestID]) > 0 && len(seen[fourth.RequestID]) > 0 && len(seen[long.RequestID]) > 0
	})
	got := map[string]api.Completion{}
	for _, c := range decodeCompletions(t, msgs) {
		got[c.RequestID] = c
	}
	c2, c3, c4 := got[long.RequestID], got[third.RequestID], got[fourth.RequestID]
	for _, c := range []api.Completion{c2, c3, c4} {
		if c.Status != api.StatusOK {
			t.Fatalf("%s: %s %+v", c.RequestID, c.Status, c.Error)
		}
	}
	// The 3rd ran on session 1's room, before session 2's host left; the
	// 4th only after it did, so never more than 2 hosts at once.
	if !c3.Timing.StartedAt.Before(c2.Timing.FinishedAt) {
		t.Errorf("the 3rd session started at %v, after session 2's long command ended at %v: it should have had the first free room", c3.Timing.StartedAt, c2.Timing.FinishedAt)
	}
	if !c4.Timing.StartedAt.After(c3.Timing.StartedAt) || !c4.Timing.StartedAt.After(c2.Timing.FinishedAt) {
		t.Errorf("the 4th session started at %v: want after the 3rd (%v) and after session 2's command ended (%v)", c4.Timing.StartedAt, c3.Timing.StartedAt, c2.Timing.FinishedAt)
	}
}

// sendAll publishes n requests, 16 at a time.
func sendAll(t *testing.T, ctx context.Context, w *world, n int, req func(i int) *api.Request) {
	t.Helper()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range n {
		r := req(i)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := w.client.Send(ctx, r); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests not sent; first: %v", len(errs), n, errs[0])
	}
}

// waitWaiting waits until the sessions waiting for a host, as `sandrun
// status` reads them, satisfy cond. Nothing announces a change to that
// list, so it is read again every second.
func waitWaiting(t *testing.T, w *world, what string, timeout time.Duration, cond func([]session.HostWait) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last []session.HostWait
	for {
		ws, err := w.store.WaitingForHost(ctx)
		if err == nil && cond(ws) {
			return
		}
		if err == nil {
			last = ws
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s; %d sessions wait (err %v)", timeout, what, len(last), err)
		}
	}
}

// completionsOf returns the completions the tap has of the given requests.
func completionsOf(t *testing.T, tp *tap, requestIDs []string) map[string][]api.Completion {
	t.Helper()
	want := map[string]bool{}
	for _, r := range requestIDs {
		want[r] = true
	}
	tp.mu.Lock()
	msgs := append([]*pubsub.Message(nil), tp.msgs...)
	tp.mu.Unlock()
	out := map[string][]api.Completion{}
	for _, c := range decodeCompletions(t, msgs) {
		if want[c.RequestID] {
			out[c.RequestID] = append(out[c.RequestID], c)
		}
	}
	return out
}
