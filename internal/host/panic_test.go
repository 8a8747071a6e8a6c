package host

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/internal/session"
)

// completions hands the test what the host publishes.
type completions chan api.Completion

func (c completions) PublishCompletion(ctx context.Context, data []byte, traceparent string) error {
	var v api.Completion
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	c <- v
	return nil
}

// A handler that panics answers its own request INTERNAL; the host goes on
// serving the session's next requests, with the same lease and shell.
func TestHandlerPanicAnswersInternalAndHostServesOn(t *testing.T) {
	const bucket = "host-test"
	suite := emulatortest.Start(t, emulator.Config{Buckets: []string{bucket}})
	ctx := context.Background()
	fs, gcs := emulatortest.Clients(t, suite)
	store := session.NewStore(fs, gcs, session.Config{Bucket: bucket})

	enqueue := func(req api.Request) {
		t.Helper()
		req.SessionID = "s1"
		raw, _ := json.Marshal(req)
		if _, err := store.Enqueue(ctx, &req, raw, ""); err != nil {
			t.Fatal(err)
		}
	}
	// One panic of each kind of handler: a command, a file operation, a
	// control request.
	panics := map[string]bool{"boom-exec": true, "boom-file": true, "boom-control": true}
	enqueue(api.Request{RequestID: "before", Op: api.OpExec, Command: "cd / && export MARK=kept"})
	enqueue(api.Request{RequestID: "boom-exec", Op: api.OpExec, Command: "echo never"})
	enqueue(api.Request{RequestID: "boom-file", Op: api.OpFileRead, Path: "x"})
	enqueue(api.Request{RequestID: "boom-control", Op: api.OpProcessList})
	enqueue(api.Request{RequestID: "after", Op: api.OpExec, Command: "echo $MARK; pwd"})

	out := make(completions, 16)
	cfg := Config{SessionID: "s1", Execution: "exec-test", Workspace: t.TempDir(), BaseEnv: map[string]string{"PATH": "/usr/bin:/bin"},
		IdleTimeout: time.Minute,
		beforeOp: func(req *api.Request) {
			if panics[req.RequestID] {
				panic("injected panic in the " + string(req.Op) + " handler")
			}
		}}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	// An *os.File takes the host's concurrent writes, one line each.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "host.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	go func() { done <- Run(hctx, cfg, store, out, slog.New(slog.NewJSONHandler(logFile, nil))) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("host: %v", err)
		}
	})

	got := map[string]api.Completion{}
	const requests = 5
	for len(got) < requests {
		select {
		case c := <-out:
			got[c.RequestID] = c
		case err := <-done:
			t.Fatalf("the host stopped (%v) with %d of %d requests answered: %+v", err, len(got), requests, got)
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d requests answered after a minute: %+v", len(got), requests, got)
		}
	}
	for id := range panics {
		c := got[id]
		if c.Status != api.StatusError || c.Error == nil || c.Error.Code != api.CodeInternal || c.ExecutionID != "exec-test" {
			t.Errorf("%s: %+v (error %+v), want INTERNAL from exec-test", id, c, c.Error)
		}
	}
	// Each panic is logged once, with the stack of the handler.
	logged, err := os.ReadFile(logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logged), `"event":"request.panic"`); n != 3 {
		t.Errorf("%d request.panic events logged, want 3", n)
	}
	if !strings.Contains(string(logged), "host.(*Host).handle") {
		t.Error("the panic's stack is not in the log")
	}
	// The shell state the first command left survived the panics.
	if c := got["after"]; c.Status != api.StatusOK || c.Stdout != "kept\n/\n" || c.ExecutionID != "exec-test" {
		t.Errorf("the request after the panics: %+v (error %+v), want ok with the session's variable and directory, from the same host", c, c.Error)
	}
}
