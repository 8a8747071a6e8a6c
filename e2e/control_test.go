package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
)

// overtakeBound is how soon a control request or a destroy must be
// answered while a 120 s command runs with five requests queued behind
// it. It is a bound of the behaviour, not a speed: a request that waited
// its turn would be answered after 120 s.
const overtakeBound = 2 * time.Second

// backlog is a session with a long command running and five execs queued
// behind it.
type backlog struct {
	w  *world
	tp *tap
	s  string
	// long is the running command's request id; queued the execs', in
	// order: the i-th (from 1) appends i to order.txt and prints it.
	long   string
	queued []string
}

// newBacklog starts `sleep 120` in session s and queues five execs behind
// it.
func newBacklog(t *testing.T, w *world, s string) *backlog {
	t.Helper()
	w.exec(s, "rm -f order.txt") // the host is up: no launch in what follows
	b := &backlog{w: w, tp: w.subscribe(w.sys.Names.Completions), s: s, long: uuid.NewString()}
	b.send(t, &api.Request{RequestID: b.long, Op: api.OpExec, Command: "echo started; sleep 120"})
	w.waitRunning(s, b.long)
	for i := 1; i <= 5; i++ {
		id := uuid.NewString()
		b.queued = append(b.queued, id)
		b.send(t, &api.Request{RequestID: id, Op: api.OpExec, Command: fmt.Sprintf("echo %d >> order.txt && cat order.txt", i)})
	}
	// Queued in the inbox before anything is sent after them.
	last := b.queued[len(b.queued)-1]
	w.waitDoc("sessions/"+s+"/inbox/"+last, "be queued", time.Minute, func(d map[string]any) bool { return d["status"] == "queued" })
	return b
}

func (b *backlog) send(t *testing.T, req *api.Request) {
	t.Helper()
	req.SessionID = b.s
	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.w.client.Send(ctx, req); err != nil {
		t.Fatalf("send %s: %v", req.Op, err)
	}
}

// await waits up to timeout for the completion of request id.
func (b *backlog) await(t *testing.T, id string, timeout time.Duration) *api.Completion {
	t.Helper()
	msgs := b.tp.waitFor(t, "the completion of "+id, timeout, func(msgs []*pubsub.Message) bool { return len(byRequest(msgs)[id]) > 0 })
	c := decodeCompletions(t, byRequest(msgs)[id][:1])[0]
	return &c
}

// overtake sends a request and waits for its completion no longer than
// overtakeBound.
func (b *backlog) overtake(t *testing.T, req api.Request) *api.Completion {
	t.Helper()
	req.RequestID = uuid.NewString()
	sent := time.Now()
	b.send(t, &req)
	c := b.await(t, req.RequestID, overtakeBound-time.Since(sent))
	t.Logf("%s answered %v after it was sent", req.Op, time.Since(sent).Round(time.Millisecond))
	return c
}

func TestControlOvertakesQueuedRequests(t *testing.T) {
	w := start(t, options{})
	b := newBacklog(t, w, "overtake-kill")

	list := ok(t, b.overtake(t, api.Request{Op: api.OpProcessList}))
	var fg *api.ProcessInfo
	for i, p := range list.Processes {
		if p.Foreground && p.Status == api.ProcessRunning {
			fg = &list.Processes[i]
		}
	}
	if fg == nil || !strings.Contains(fg.Command, "sleep 120") {
		t.Fatalf("process.list does not show the running command: %+v", list.Processes)
	}
	if view := ok(t, b.overtake(t, api.Request{Op: api.OpShellView})); view.Running == nil || view.Running.PID != fg.PID {
		t.Fatalf("shell.view shows %+v, want pid %d", view.Running, fg.PID)
	}
	if logs := ok(t, b.overtake(t, api.Request{Op: api.OpProcessLogs, PID: fg.PID})); logs.Stdout != "started\n" {
		t.Fatalf("process.logs of the running command: %q", logs.Stdout)
	}

	kill := api.Request{Op: api.OpProcessKill, All: true}
	killed := ok(t, b.overtake(t, kill))
	if len(killed.Killed) != 1 || killed.Killed[0] != fg.PID {
		t.Fatalf("kill --all killed %v, want the running command %d alone", killed.Killed, fg.PID)
	}
	long := b.await(t, b.long, 30*time.Second)
	failed(t, long, api.CodeAborted)
	if !strings.Contains(long.Error.Message, killed.RequestID) {
		t.Fatalf("the killed command's error does not name the kill %s: %q", killed.RequestID, long.Error.Message)
	}
	// The kill landed on the command that ran when it was served, not on
	// those queued: they run, in order.
	want := ""
	for i, id := range b.queued {
		want += fmt.Sprintf("%d\n", i+1)
		c := ok(t, b.await(t, id, 30*time.Second))
		if c.Stdout != want {
			t.Fatalf("queued exec %d printed %q, want %q", i+1, c.Stdout, want)
		}
	}
}

func TestDestroyOvertakesQueuedRequests(t *testing.T) {
	w := start(t, options{})
	const s = "overtake-destroy"
	b := newBacklog(t, w, s)

	ok(t, b.overtake(t, api.Request{Op: api.OpSessionDestroy}))
	// The running command and every request queued behind it end ABORTED.
	for _, id := range append([]string{b.long}, b.queued...) {
		c := b.await(t, id, 30*time.Second)
		failed(t, c, api.CodeAborted)
		if !strings.Contains(c.Error.Message, "destroyed") {
			t.Fatalf("request %s: %q does not say that the session was destroyed", id, c.Error.Message)
		}
	}
	failed(t, w.do(&api.Request{SessionID: s, Op: api.OpSessionGet}), api.CodeNotFound)
	// None of the queued execs ran, and the session that the next request
	// creates is new.
	if got := w.exec(s, "cat order.txt 2>/dev/null || echo none"); got.Stdout != "none\n" {
		t.Fatalf("after the destroy, order.txt holds %q", got.Stdout)
	}
}
