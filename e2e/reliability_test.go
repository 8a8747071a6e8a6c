package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
)

func TestSameRequestIDRunsOnce(t *testing.T) {
	w := start(t, options{})
	completions := w.subscribe(w.sys.Names.Completions)
	const s = "dedupe"
	req := api.Request{RequestID: "append-once", SessionID: s, Op: api.OpExec, Command: "echo mark >> ~/marks"}
	data, _ := json.Marshal(req)
	for range 3 {
		w.publishRaw(data, req.Attributes(), s)
	}
	msgs := completions.waitFor(t, "the completion of append-once", time.Minute, func(ms []*pubsub.Message) bool {
		return len(byRequest(ms)["append-once"]) > 0
	})
	got := w.exec(s, "wc -l < ~/marks")
	if strings.TrimSpace(got.Stdout) != "1" {
		t.Fatalf("the command ran %s times, want 1", strings.TrimSpace(got.Stdout))
	}
	// Every completion published for the request says the same.
	msgs = byRequest(completionsSoFar(completions))["append-once"]
	for _, m := range msgs[1:] {
		if string(m.Data) != string(msgs[0].Data) {
			t.Fatalf("two completions of one request differ:\n%s\n%s", msgs[0].Data, m.Data)
		}
	}
}

func completionsSoFar(tp *tap) []*pubsub.Message {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]*pubsub.Message(nil), tp.msgs...)
}

func TestManySessionsKeepOrderAndLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("50 sessions × 20 commands")
	}
	w := start(t, options{})
	completions := w.subscribe(w.sys.Names.Completions)
	const sessions, commands = 50, 20
	p := w.ps.Publisher(w.sys.Names.Requests)
	p.EnableMessageOrdering = true
	defer p.Stop()

	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sid := fmt.Sprintf("many-%02d", s)
			var results []*pubsub.PublishResult
			for c := range commands {
				req := api.Request{RequestID: fmt.Sprintf("%s-%02d", sid, c), SessionID: sid, Op: api.OpExec, Command: fmt.Sprintf("echo %d >> ~/order", c)}
				data, _ := json.Marshal(req)
				results = append(results, p.Publish(context.Background(), &pubsub.Message{Data: data, Attributes: req.Attributes(), OrderingKey: sid}))
			}
			for _, r := range results {
				if _, err := r.Get(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	msgs := completions.waitFor(t, "1000 completions", 5*time.Minute, func(ms []*pubsub.Message) bool {
		return len(byRequest(ms)) >= sessions*commands
	})
	per := byRequest(msgs)
	if len(per) != sessions*commands {
		t.Fatalf("completions for %d distinct requests, want %d", len(per), sessions*commands)
	}
	for id, ms := range per {
		var c api.Completion
		json.Unmarshal(ms[0].Data, &c)
		if c.Status != api.StatusOK || c.ExitCode != 0 {
			t.Errorf("request %s: %s %+v", id, c.Status, c.Error)
		}
	}
	var want strings.Builder
	for c := range commands {
		fmt.Fprintf(&want, "%d\n", c)
	}
	for s := range sessions {
		sid := fmt.Sprintf("many-%02d", s)
		if got := w.exec(sid, "cat ~/order"); got.Stdout != want.String() {
			t.Errorf("session %s ran its commands in the order %q", sid, strings.ReplaceAll(got.Stdout, "\n", " "))
		}
	}
	// A request may be answered more than once, always with the same bytes.
	for id, ms := range byRequest(completionsSoFar(completions)) {
		for _, m := range ms[1:] {
			if !bytes.Equal(m.Data, ms[0].Data) {
				t.Errorf("request %s got two different completions:\n%s\n%s", id, ms[0].Data, m.Data)
			}
		}
	}
}

func TestKilledHostAnswersHostLostAndSessionGoesOn(t *testing.T) {
	w := start(t, options{idleTimeout: time.Second, leaseTTL: 2 * time.Second})
	const s = "crash"
	w.exec(s, "cd /tmp && export KEPT=yes && echo saved > ~/before")
	w.waitNoHost(s) // idle exit: the checkpoint holds the file
	host := w.exec(s, "true").ExecutionID

	// A command that will not finish; its host dies under it.
	reqID := uuid.NewString()
	result := make(chan *api.Completion, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done, err := w.client.Do(ctx, &api.Request{RequestID: reqID, SessionID: s, Op: api.OpExec, Command: "echo started > ~/during; sleep 600"})
		if err != nil {
			t.Errorf("await the killed request: %v", err)
		}
		result <- done
	}()
	// Kill the session's host once the command is running. Not any running
	// execution: the first host, gone idle, may still be on its way out.
	w.waitRunning(s, reqID)
	killed := time.Now()
	execution, err := w.suite.KillExecution(w.sys.JobName() + "/executions/" + host)
	if err != nil {
		t.Fatal(err)
	}
	done := <-result
	if done == nil {
		return
	}
	if done.Status != api.StatusError || done.Error.Code != api.CodeHostLost {
		t.Fatalf("killed request completed %s %+v, want HOST_LOST", done.Status, done.Error)
	}
	t.Logf("HOST_LOST %v after the kill", time.Since(killed))

	got := w.exec(s, "pwd; echo $KEPT; cat ~/before")
	if got.Stdout != "/tmp\nyes\nsaved\n" {
		t.Fatalf("after the crash the session shows %q", got.Stdout)
	}
	if got.ExecutionID == "" || got.ExecutionID == path.Base(execution) {
		t.Errorf("after the crash the session ran on execution %q, want a new one (%s was killed)", got.ExecutionID, path.Base(execution))
	}
}

func TestBadInputIsAnsweredOrDeadLettered(t *testing.T) {
	w := start(t, options{})
	completions := w.subscribe(w.sys.Names.Completions)
	dead := w.subscribe(w.sys.Names.DeadLetters)

	w.publishRaw([]byte("not json"), nil, "")
	w.publishRaw([]byte(`{"session_id":"s","op":"exec","command":"true"}`), nil, "")
	w.publishRaw([]byte("{\"request_id\":\"bad-utf8\",\"session_id\":\"s\",\"op\":\"exec\",\"command\":\"echo \xff\"}"), nil, "")
	for _, tc := range []struct{ id, body string }{
		{"unsafe-session", `{"request_id":"unsafe-session","session_id":"../x","op":"exec","command":"true"}`},
		{"missing-op", `{"request_id":"missing-op","session_id":"s"}`},
		{"unknown-op", `{"request_id":"unknown-op","session_id":"s","op":"frobnicate"}`},
		{"browser", `{"request_id":"browser","session_id":"s","op":"browser.open"}`},
		{"huge-command", fmt.Sprintf(`{"request_id":"huge-command","session_id":"s","op":"exec","command":%q}`, strings.Repeat("x", api.MaxCommandBytes+1))},
	} {
		w.publishRaw([]byte(tc.body), nil, "")
	}
	want := map[string]api.ErrorCode{
		"bad-utf8": api.CodeInvalidArgument, "unsafe-session": api.CodeInvalidArgument, "missing-op": api.CodeInvalidArgument,
		"unknown-op": api.CodeInvalidArgument, "browser": api.CodeNotSupported, "huge-command": api.CodeInvalidArgument,
	}
	msgs := completions.waitFor(t, "error completions", time.Minute, func(ms []*pubsub.Message) bool { return len(byRequest(ms)) >= len(want) })
	for _, c := range decodeCompletions(t, msgs) {
		code, ok := want[c.RequestID]
		if !ok {
			t.Errorf("unexpected completion %+v", c)
			continue
		}
		if c.Status != api.StatusError || c.Error.Code != code || c.Error.Message == "" {
			t.Errorf("request %s: %s %+v, want %s", c.RequestID, c.Status, c.Error, code)
		}
	}
	letters := dead.waitFor(t, "dead letters", time.Minute, func(ms []*pubsub.Message) bool { return len(ms) >= 2 })
	reasons := map[string]bool{}
	for _, m := range letters {
		reasons[m.Attributes["reason"]] = true
	}
	if !reasons["not_a_request"] || !reasons["invalid_request_id"] {
		t.Errorf("dead-letter reasons %v, want not_a_request and invalid_request_id", reasons)
	}
	// The dispatcher keeps serving.
	if got := w.exec("after-bad-input", "echo fine"); got.Stdout != "fine\n" {
		t.Fatalf("after bad input: %q", got.Stdout)
	}
}

// TestDispatcherStopsWithoutLosingRequests stops the dispatcher (as SIGTERM
// does) while requests flow, starts another, and every request runs exactly
// once, in order.
func TestDispatcherStopsWithoutLosingRequests(t *testing.T) {
	w := start(t, options{ownDispatcher: true})
	completions := w.subscribe(w.sys.Names.Completions)
	stopFirst := w.runDispatcher()
	const sessions, commands = 10, 30
	p := w.ps.Publisher(w.sys.Names.Requests)
	p.EnableMessageOrdering = true
	defer p.Stop()
	var results []*pubsub.PublishResult
	for c := range commands {
		for s := range sessions {
			sid := fmt.Sprintf("restart-%02d", s)
			req := api.Request{RequestID: fmt.Sprintf("%s-%02d", sid, c), SessionID: sid, Op: api.OpExec, Command: fmt.Sprintf("echo %d >> ~/order", c)}
			data, _ := json.Marshal(req)
			results = append(results, p.Publish(context.Background(), &pubsub.Message{Data: data, Attributes: req.Attributes(), OrderingKey: sid}))
		}
	}
	for _, r := range results {
		if _, err := r.Get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	completions.waitFor(t, "a third of the completions", time.Minute, func(ms []*pubsub.Message) bool {
		return len(byRequest(ms)) >= sessions*commands/3
	})
	stopFirst()
	w.runDispatcher()
	msgs := completions.waitFor(t, "every completion", 3*time.Minute, func(ms []*pubsub.Message) bool {
		return len(byRequest(ms)) >= sessions*commands
	})
	for id, ms := range byRequest(msgs) {
		for _, c := range decodeCompletions(t, ms) {
			if c.Status != api.StatusOK {
				t.Errorf("request %s: %s %+v", id, c.Status, c.Error)
			}
		}
	}
	var want strings.Builder
	for c := range commands {
		fmt.Fprintf(&want, "%d\n", c)
	}
	for s := range sessions {
		sid := fmt.Sprintf("restart-%02d", s)
		if got := w.exec(sid, "cat ~/order"); got.Stdout != want.String() {
			t.Errorf("session %s ran %q", sid, strings.ReplaceAll(got.Stdout, "\n", " "))
		}
	}
}
