package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
)

// sigterm sends the process SIGTERM and waits up to wait for it to exit on
// its own. It reports the exit code, how long the exit took, and whether it
// exited at all. It never fails the test, so that any goroutine may call it.
func (p *program) sigterm(wait time.Duration) (code int, took time.Duration, exited bool) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	begin := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, 0, false
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), time.Since(begin), true
	case <-time.After(wait):
		return -1, wait, false
	}
}

// TestDispatcherBinaryStopsOnSIGTERM sends the dispatcher program SIGTERM
// in the middle of a burst of requests: it stops pulling, finishes what it
// holds and exits 0 within its shutdown timeout; the next dispatcher takes
// the rest, and every request completes once and runs once.
func TestDispatcherBinaryStopsOnSIGTERM(t *testing.T) {
	w := start(t, options{ownDispatcher: true})
	tp := w.subscribe(w.sys.Names.Completions)
	const shutdown = 10 * time.Second
	// At info level, so that the requests a dispatcher gets again show.
	d := w.program("dispatcher", "--shutdown-timeout", shutdown.String(), "--log-level", "info")
	wl := newWorkload(t, "term", 120, 4, "")

	type stopped struct {
		code          int
		took          time.Duration
		exited        bool
		seen          int
		publishedAll  bool
		noProgressYet bool
	}
	var published atomic.Bool
	res := make(chan stopped, 1)
	go func() {
		// SIGTERM once the dispatcher has a quarter of the burst done,
		// while the rest is still being published.
		timeout := time.After(time.Minute)
		for {
			n := len(byRequest(completionsSoFar(tp)))
			if n >= len(wl.reqs)/4 {
				all := published.Load()
				code, took, exited := d.sigterm(shutdown + 10*time.Second)
				res <- stopped{code: code, took: took, exited: exited, seen: n, publishedAll: all}
				return
			}
			select {
			case <-tp.cond:
			case <-timeout:
				res <- stopped{noProgressYet: true}
				return
			}
		}
	}()
	started := time.Now()
	wl.publish(t, w, 3*time.Second)
	published.Store(true)
	r := <-res
	switch {
	case r.noProgressYet:
		t.Fatal("the dispatcher completed no quarter of the burst within a minute")
	case !r.exited:
		t.Fatalf("the dispatcher had not exited %v after SIGTERM", shutdown+10*time.Second)
	case r.code != 0:
		t.Errorf("the dispatcher exited %d after SIGTERM, want 0", r.code)
	}
	// Its shutdown timeout bounds the wait for messages in hand; a little
	// more goes to closing its clients.
	if r.took > shutdown+3*time.Second {
		t.Errorf("the dispatcher took %v to stop, beyond its %v shutdown timeout", r.took, shutdown)
	}
	if r.publishedAll {
		t.Errorf("SIGTERM came after the whole burst was published (%d completions then): not mid-burst", r.seen)
	}
	t.Logf("SIGTERM after %d of %d completions; the dispatcher exited %d in %v", r.seen, len(wl.reqs), r.code, r.took.Round(time.Millisecond))

	mark := len(w.logs.String())
	d.start()
	restarted := time.Now()
	o := wl.await(t, tp, "dispatcher SIGTERMed mid-burst and started again", 3*time.Minute, started)
	// Messages Pub/Sub had sent on the stopped dispatcher's stream that it
	// never read come again only after their ack deadline (60s), and hold
	// up their sessions till then: that can happen, and takes long.
	t.Logf("the rest completed %v after the second dispatcher started", time.Since(restarted).Round(time.Millisecond))
	// But what the stopped dispatcher handled, it acked before it exited:
	// the next one gets none of it again.
	if dups := strings.Count(w.logs.String()[mark:], `"event":"request.duplicate"`); dups > 0 {
		t.Errorf("the second dispatcher got %d requests again that the first had handled: the first exited without sending their acks", dups)
	}
	if o.Outcomes["ok"] != o.Requests {
		t.Errorf("outcomes %v: every request should succeed", o.Outcomes)
	}
	for id, ms := range byRequest(completionsSoFar(tp)) {
		if len(ms) != 1 {
			t.Errorf("request %s: %d completions, want 1", id, len(ms))
		}
	}
}

// sandrunEnv is the environment in which the sandrun program talks to the
// world's local cloud.
func sandrunEnv(w *world) []string {
	return append(os.Environ(), w.local.Env()...)
}

// runSandrunExit runs the sandrun program with args against the world and
// returns its stdout, stderr and exit code, whatever the code.
func runSandrunExit(t *testing.T, w *world, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sandrunBin, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("sandrun %v did not exit within 2 minutes: %s", args, errOut.String())
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run sandrun %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// TestReaperOnceMakesOnePass: `sandrun reaper --once` answers the request
// that was running on a dead host HOST_LOST, in one pass, and exits 0.
func TestReaperOnceMakesOnePass(t *testing.T) {
	w := start(t, options{ownReaper: true, leaseTTL: 2 * time.Second})
	tp := w.subscribe(w.sys.Names.Completions)
	const s = "reap-once"
	host := w.exec(s, "true").ExecutionID
	req := &api.Request{RequestID: uuid.NewString(), SessionID: s, Op: api.OpExec, Command: "sleep 120"}
	if err := w.client.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	item := "sessions/" + s + "/inbox/" + req.RequestID
	w.waitRunning(s, req.RequestID)
	if _, err := w.suite.KillExecution(w.sys.JobName() + "/executions/" + host); err != nil {
		t.Fatal(err)
	}
	// The reaper acts on leases that lapsed, and a lease lapses at a
	// time, not at an event: wait until the dead host's lease expired (a
	// renewal already on its way when the host died moves the time on).
	lease := w.fs.Doc("sessions/" + s + "/runtime/lease")
	for {
		snap, err := lease.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var l session.LeaseDoc
		if err := snap.DataTo(&l); err != nil {
			t.Fatal(err)
		}
		if l.Execution != host {
			t.Fatalf("the lease names %q, not the killed host %s", l.Execution, host)
		}
		if time.Now().After(l.LeaseExpires.Add(100 * time.Millisecond)) {
			break
		}
		time.Sleep(time.Until(l.LeaseExpires.Add(200 * time.Millisecond)))
	}
	if n := len(byRequest(completionsSoFar(tp))[req.RequestID]); n != 0 {
		t.Fatalf("request %s completed before the reaper ran", req.RequestID)
	}

	env := append(sandrunEnv(w), "SANDRUN_LOG_LEVEL=info")
	began := time.Now()
	_, stderr, code := runSandrunExit(t, w, env, "reaper", "--once")
	if code != 0 {
		t.Fatalf("sandrun reaper --once exited %d:\n%s", code, stderr)
	}
	if passes := strings.Count(stderr, `"event":"reaper.pass","outcome":"ok"`); passes != 1 {
		t.Errorf("sandrun reaper --once made %d passes with outcome ok, want 1 (the reaper-failures alert counts outcome):\n%s", passes, stderr)
	}
	if !strings.Contains(stderr, `"event":"host.lost"`) {
		t.Errorf("sandrun reaper --once logged no host.lost:\n%s", stderr)
	}
	t.Logf("sandrun reaper --once took %v", time.Since(began).Round(time.Millisecond))

	// The pass published the completion before it exited.
	msgs := tp.waitFor(t, "the HOST_LOST completion", 30*time.Second, func(ms []*pubsub.Message) bool {
		return len(byRequest(ms)[req.RequestID]) > 0
	})
	for _, c := range decodeCompletions(t, byRequest(msgs)[req.RequestID]) {
		if c.Status != api.StatusError || c.Error == nil || c.Error.Code != api.CodeHostLost {
			t.Errorf("request %s: %s %+v, want HOST_LOST", req.RequestID, c.Status, c.Error)
		}
	}
	w.waitDoc(item, "be done", 10*time.Second, func(d map[string]any) bool { return d["status"] == session.ItemDone })
}

// TestExecCLITimeoutAndJSON runs `sandrun exec` as a user would: a command
// past its --timeout is killed, says TIMEOUT and exits 124, as timeout(1)
// does; --json prints the completion as one JSON document.
func TestExecCLITimeoutAndJSON(t *testing.T) {
	w := start(t, options{})
	env := sandrunEnv(w)

	began := time.Now()
	stdout, stderr, code := runSandrunExit(t, w, env, "exec", "--session", "cli-timeout", "--timeout", "1s", "--", "sleep", "30")
	took := time.Since(began)
	if code != 124 || !strings.Contains(stderr, "sandrun exec: TIMEOUT") {
		t.Errorf("sandrun exec --timeout 1s -- sleep 30: exit %d, stdout %q, stderr %q; want exit 124 and TIMEOUT", code, stdout, stderr)
	}
	if took > 20*time.Second {
		t.Errorf("sandrun exec --timeout 1s -- sleep 30 took %v", took)
	}

	stdout, stderr, code = runSandrunExit(t, w, env, "exec", "--session", "cli-json", "--json", "--", "echo", "hi")
	if code != 0 {
		t.Fatalf("sandrun exec --json -- echo hi: exit %d: %s", code, stderr)
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	var c api.Completion
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("sandrun exec --json printed no completion: %v\n%s", err, stdout)
	}
	if err := dec.Decode(&json.RawMessage{}); err != io.EOF {
		t.Errorf("sandrun exec --json printed more than one JSON document (%v):\n%s", err, stdout)
	}
	if c.Status != api.StatusOK || c.Stdout != "hi\n" || c.ExitCode != 0 || c.SessionID != "cli-json" || c.RequestID == "" || c.Op != api.OpExec {
		t.Errorf("sandrun exec --json -- echo hi: %s", stdout)
	}
	if stderr != "" {
		t.Errorf("sandrun exec --json wrote to stderr: %q", stderr)
	}
}
