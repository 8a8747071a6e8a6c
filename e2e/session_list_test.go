package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
)

// TestSessionListShowsActiveSessionsNewestFirst runs `sandrun session list`
// as a user would, against the world's local cloud: two sessions live, one
// destroyed, one with requests waiting behind a running command.
func TestSessionListShowsActiveSessionsNewestFirst(t *testing.T) {
	w := start(t, options{})
	ok(t, w.do(&api.Request{SessionID: "list-gone", Op: api.OpSessionCreate}))
	older := w.exec("list-older", "true")
	newer := w.exec("list-newer", "true")
	ok(t, w.do(&api.Request{SessionID: "list-gone", Op: api.OpSessionDestroy}))
	w.waitDoc("sessions/list-gone", "be destroyed", time.Minute, func(d map[string]any) bool { return d["status"] == session.StatusDestroyed })

	// list-newer runs a long command; two more requests wait behind it.
	ctx := context.Background()
	send := func(command string) string {
		req := &api.Request{RequestID: uuid.NewString(), SessionID: "list-newer", Op: api.OpExec, Command: command}
		if err := w.client.Send(ctx, req); err != nil {
			t.Fatal(err)
		}
		return req.RequestID
	}
	running := send("sleep 120")
	w.waitRunning("list-newer", running)
	for range 2 {
		id := send("true")
		w.waitDoc("sessions/list-newer/inbox/"+id, "be queued", time.Minute, func(d map[string]any) bool { return d["status"] == session.ItemQueued })
	}
	// Sending made list-newer the most recently active session of all.

	type row struct{ id, status, host, queued string }
	table := func(args ...string) []row {
		t.Helper()
		out := runSessionList(t, w, args...)
		lines := trimLines(out)
		if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "SESSION STATUS LAST ACTIVE HOST QUEUED" {
			t.Fatalf("session list %v: no header:\n%s", args, out)
		}
		var rows []row
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) != 5 {
				t.Fatalf("session list %v: line %q has %d columns, want 5:\n%s", args, l, len(f), out)
			}
			if _, err := time.Parse(time.RFC3339, f[2]); err != nil {
				t.Errorf("session list %v: last active %q: %v", args, f[2], err)
			}
			rows = append(rows, row{f[0], f[1], f[3], f[4]})
		}
		return rows
	}
	want := []row{
		{"list-newer", "active", newer.ExecutionID, "2"},
		{"list-older", "active", older.ExecutionID, "0"},
	}
	if got := table(); !slices.Equal(got, want) {
		t.Errorf("session list:\n got %v\nwant %v", got, want)
	}
	// The destroyed session was active after list-older, before list-newer.
	want = []row{want[0], {"list-gone", "destroyed", "-", "-"}, want[1]}
	if got := table("--all"); !slices.Equal(got, want) {
		t.Errorf("session list --all:\n got %v\nwant %v", got, want)
	}
	if got := table("--all", "--limit", "1"); !slices.Equal(got, want[:1]) {
		t.Errorf("session list --all --limit 1:\n got %v\nwant %v", got, want[:1])
	}

	var list []session.SessionSummary
	out := runSessionList(t, w, "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("session list --json: %v\n%s", err, out)
	}
	if len(list) != 2 || list[0].SessionID != "list-newer" || list[0].Queued != 2 || list[0].Host != newer.ExecutionID ||
		list[1].SessionID != "list-older" || list[1].Status != session.StatusActive || list[1].CreatedAt.IsZero() ||
		!list[0].LastActiveAt.After(list[1].LastActiveAt) {
		t.Errorf("session list --json:\n%s", out)
	}
}

// runSessionList runs `sandrun session list ARGS...` against the world and
// returns its stdout; it fails the test unless the command succeeds.
func runSessionList(t *testing.T, w *world, args ...string) string {
	t.Helper()
	return runSandrun(t, w, append([]string{"session", "list"}, args...)...)
}

// runSandrun runs the sandrun program with args against the world, as a
// user would, and returns what it printed; it fails the test unless the
// program succeeded.
func runSandrun(t *testing.T, w *world, args ...string) string {
	t.Helper()
	cmd := exec.Command(sandrunBin, args...)
	// The local cloud's variables are in this process's environment
	// (t.Setenv), so no dev.env is read.
	cmd.Env = append(os.Environ(), w.local.Env()...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("sandrun %v: exit %d: %s", args, exit.ExitCode(), errOut.String())
		}
		t.Fatal(err)
	}
	return out.String()
}
