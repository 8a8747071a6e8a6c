package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
)

func TestShellStatePersistsAcrossRequestsAndHosts(t *testing.T) {
	w := start(t, options{idleTimeout: time.Second})
	const s = "state"

	first := w.exec(s, "cd /tmp && export A=1 && echo kept > ~/note.txt")
	if !first.ColdStart {
		t.Errorf("first request of a new session: cold_start false")
	}
	got := w.exec(s, "pwd; echo $A")
	if got.Stdout != "/tmp\n1\n" || got.Cwd != "/tmp" {
		t.Fatalf("second request printed %q with cwd %q, want /tmp and 1", got.Stdout, got.Cwd)
	}
	if got.ColdStart {
		t.Errorf("request to a hosted session: cold_start true")
	}
	host := got.ExecutionID

	// The host goes idle, checkpoints and exits; the next request gets a new
	// host that restores the checkpoint.
	w.waitNoHost(s)
	got = w.exec(s, "pwd; echo $A; cat ~/note.txt")
	if got.Stdout != "/tmp\n1\nkept\n" {
		t.Fatalf("after a new host restored the session: %q, want /tmp, 1 and kept", got.Stdout)
	}
	if got.ExecutionID == host || !got.ColdStart {
		t.Errorf("expected a new host with a cold start, got execution %s (was %s), cold_start %v", got.ExecutionID, host, got.ColdStart)
	}
	w.exec(s, "unset A; cd ~")
	got = w.exec(s, `echo "[$A]"; pwd; echo $HOME`)
	if lines := trimLines(got.Stdout); len(lines) != 3 || lines[0] != "[]" || lines[1] != lines[2] {
		t.Fatalf("unset and cd ~ did not persist: %q", got.Stdout)
	}
}

func TestExecOutputsAndExitCodes(t *testing.T) {
	w := start(t, options{})
	const s = "outputs"
	got := w.exec(s, `printf 'out'; printf 'err\n' >&2; exit 3`)
	if got.Stdout != "out" || got.Stderr != "err\n" || got.ExitCode != 3 || got.Status != api.StatusOK {
		t.Fatalf("got stdout %q stderr %q exit %d status %s", got.Stdout, got.Stderr, got.ExitCode, got.Status)
	}
	got = w.exec(s, `printf '\xff\xfe'`)
	if b, _ := got.StdoutData(); string(b) != "\xff\xfe" || got.StdoutEncoding != api.EncodingBase64 {
		t.Fatalf("binary stdout came back as %q (%s)", got.Stdout, got.StdoutEncoding)
	}
	// Output above the inline limit is cut here and whole in an object.
	got = w.exec(s, fmt.Sprintf("head -c %d /dev/zero | tr '\\0' 'x'", api.InlineOutputBytes+1000))
	if got.StdoutBytes != api.InlineOutputBytes+1000 || len(got.Stdout) != api.InlineOutputBytes || got.StdoutObject == "" {
		t.Fatalf("large output: %d bytes inline, %d total, object %q", len(got.Stdout), got.StdoutBytes, got.StdoutObject)
	}
	got = w.do(&api.Request{SessionID: s, Op: api.OpExec, Command: "sleep 30 & sleep 60", TimeoutSeconds: 0.5})
	if got.Status != api.StatusError || got.Error.Code != api.CodeTimeout || got.ExitCode != 124 {
		t.Fatalf("timeout: status %s error %+v exit %d", got.Status, got.Error, got.ExitCode)
	}
	got = w.do(&api.Request{SessionID: s, Op: api.OpExec, Command: "echo $X; pwd", Env: map[string]string{"X": "only-here"}, Cwd: "/"})
	if got.Stdout != "only-here\n/\n" {
		t.Fatalf("per-command env and cwd: %q", got.Stdout)
	}
	got = w.exec(s, "echo [$X]")
	if got.Stdout != "[]\n" || got.Cwd == "/" {
		t.Fatalf("per-command env or cwd leaked: %q in %q", got.Stdout, got.Cwd)
	}
}

func TestSessionOps(t *testing.T) {
	w := start(t, options{})
	got := w.do(&api.Request{SessionID: "nobody", Op: api.OpSessionGet})
	if got.Status != api.StatusError || got.Error.Code != api.CodeNotFound {
		t.Fatalf("get of an unknown session: %+v", got)
	}
	got = w.do(&api.Request{SessionID: "ops", Op: api.OpSessionCreate})
	if got.Status != api.StatusOK || got.Session == nil || got.Session.Status != "active" {
		t.Fatalf("create: %+v", got)
	}
	w.exec("ops", "echo hi > ~/f")
	got = w.do(&api.Request{SessionID: "ops", Op: api.OpSessionDestroy})
	if got.Status != api.StatusOK {
		t.Fatalf("destroy: %+v", got.Error)
	}
	got = w.do(&api.Request{SessionID: "ops", Op: api.OpSessionGet})
	if got.Status != api.StatusError || got.Error.Code != api.CodeNotFound {
		t.Fatalf("get after destroy: %+v", got)
	}
	// The name can be used again, for a new, empty session.
	got = w.do(&api.Request{SessionID: "ops", Op: api.OpExec, Command: "cat ~/f"})
	if got.ExitCode == 0 {
		t.Fatalf("a destroyed session's file survived: %q", got.Stdout)
	}
}
