package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
)

// freePort returns a loopback port that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestBackgroundServerAnswersLaterRequests(t *testing.T) {
	w := start(t, options{idleTimeout: time.Second})
	const s = "server"
	port := freePort(t)
	// A foreground command that leaves a server behind answers when its
	// shell exits; the server lives on as a background process.
	started := w.exec(s, fmt.Sprintf("cd ~ && echo hello > index.html && python3 -m http.server %d --bind 127.0.0.1 > server.log 2>&1 &", port))
	if started.ExitCode != 0 {
		t.Fatalf("start: %+v", started)
	}
	got := w.exec(s, fmt.Sprintf("for i in $(seq 50); do curl -sf http://127.0.0.1:%d/index.html && exit 0; sleep 0.1; done; exit 1", port))
	if got.Stdout != "hello\n" {
		t.Fatalf("curl printed %q (exit %d, stderr %q)", got.Stdout, got.ExitCode, got.Stderr)
	}
	list := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpProcessList}))
	var server *api.ProcessInfo
	for i, p := range list.Processes {
		if strings.Contains(p.Command, "http.server") && p.Status == api.ProcessRunning {
			server = &list.Processes[i]
		}
	}
	if server == nil {
		t.Fatalf("the server is not listed: %+v", list.Processes)
	}
	// The exec named what it left running. For a backgrounded list,
	// `a && b &`, that is the subshell bash forked for the list; the server
	// is named itself only if the subshell had started it by the time the
	// exec answered. Otherwise it is listed under the subshell it was named
	// by.
	if !slices.Contains(started.BackgroundPIDs, server.PID) &&
		(server.ParentPID == 0 || !slices.Contains(started.BackgroundPIDs, server.ParentPID)) {
		t.Fatalf("the exec names background_pids %v: neither the server (pid %d) nor the process it runs under (%d); processes %+v",
			started.BackgroundPIDs, server.PID, server.ParentPID, list.Processes)
	}
	if done := w.exec(s, "true"); len(done.BackgroundPIDs) != 0 {
		t.Fatalf("a command that leaves nothing running names background_pids %v", done.BackgroundPIDs)
	}
	// The host stays while the server lives, though idle for longer than
	// its idle timeout: what is tested is that nothing happens, so time
	// must pass.
	time.Sleep(2 * time.Second)
	if got := w.exec(s, fmt.Sprintf("curl -sf http://127.0.0.1:%d/index.html", port)); got.Stdout != "hello\n" {
		t.Fatalf("after the idle timeout the server answered %q", got.Stdout)
	}
	killed := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpProcessKill, Pattern: `http\.server`}))
	if len(killed.Killed) == 0 {
		t.Fatalf("kill by pattern killed nothing")
	}
	if got := w.exec(s, fmt.Sprintf("curl -s http://127.0.0.1:%d/ || echo refused", port)); got.Stdout != "refused\n" {
		t.Fatalf("the killed server still answers: %q", got.Stdout)
	}
	// With nothing left running, the idle host leaves.
	w.waitNoHost(s)
}

func TestBackgroundProcessControl(t *testing.T) {
	w := start(t, options{})
	const s = "control"
	do := func(r api.Request) *api.Completion { r.SessionID = s; return w.do(&r) }

	bg := ok(t, do(api.Request{Op: api.OpExec, Command: "while read line; do echo got:$line; done; echo bye >&2", Background: true, KeepStdin: true}))
	if bg.PID == 0 {
		t.Fatalf("background exec: no pid: %+v", bg)
	}
	ok(t, do(api.Request{Op: api.OpProcessWrite, PID: bg.PID, EncodedContent: "one\ntwo\n", CloseStdin: true}))
	waited := ok(t, do(api.Request{Op: api.OpProcessWait, PID: bg.PID, TimeoutSeconds: 30}))
	if waited.ExitCode != 0 {
		t.Fatalf("wait: exit %d", waited.ExitCode)
	}
	logs := ok(t, do(api.Request{Op: api.OpProcessLogs, PID: bg.PID}))
	if logs.Stdout != "got:one\ngot:two\n" || logs.Stderr != "bye\n" {
		t.Fatalf("logs: %q %q", logs.Stdout, logs.Stderr)
	}
	tail := ok(t, do(api.Request{Op: api.OpProcessLogs, PID: bg.PID, TailBytes: 8}))
	if tail.Stdout != "got:two\n" {
		t.Fatalf("tail: %q", tail.Stdout)
	}

	sleeper := ok(t, do(api.Request{Op: api.OpExec, Command: "sleep 600", Background: true}))
	failed(t, do(api.Request{Op: api.OpProcessWait, PID: sleeper.PID, TimeoutSeconds: 0.2}), api.CodeTimeout)
	failed(t, do(api.Request{Op: api.OpProcessWrite, PID: sleeper.PID, EncodedContent: "x"}), api.CodeFailedPrecondition)
	killed := ok(t, do(api.Request{Op: api.OpProcessKill, All: true, Signal: "KILL"}))
	if len(killed.Killed) != 1 || killed.Killed[0] != sleeper.PID {
		t.Fatalf("kill all: %v, want [%d]", killed.Killed, sleeper.PID)
	}
	failed(t, do(api.Request{Op: api.OpProcessKill, PID: 999999}), api.CodeNotFound)
	failed(t, do(api.Request{Op: api.OpExec, Command: "vim", TTY: true}), api.CodeNotSupported)
}

func TestKillForegroundCommand(t *testing.T) {
	w := start(t, options{})
	const s = "fg"
	reqID := uuid.NewString()
	result := make(chan *api.Completion, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done, err := w.client.Do(ctx, &api.Request{RequestID: reqID, SessionID: s, Op: api.OpExec, Command: "echo started; sleep 600"})
		if err != nil {
			t.Errorf("await the foreground command: %v", err)
		}
		result <- done
	}()
	w.waitRunning(s, reqID)

	// Control requests do not queue behind the running command. The lease
	// marks it running as the host starts the command, a moment before its
	// process manager shows it, and bash prints a moment later still: the
	// kill waits for its output, which the command must have printed.
	var view *api.Completion
	for deadline := time.Now().Add(10 * time.Second); ; {
		view = ok(t, w.do(&api.Request{SessionID: s, Op: api.OpShellView}))
		if view.Running != nil && strings.Contains(view.Running.Command, "sleep 600") && view.Stdout == "started\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shell.view: %+v", view.Running)
		}
		time.Sleep(20 * time.Millisecond)
	}
	killed := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpProcessKill, Pattern: "sleep 600"}))
	if len(killed.Killed) != 1 || killed.Killed[0] != view.Running.PID {
		t.Fatalf("killed %v, want the foreground %d", killed.Killed, view.Running.PID)
	}
	done := <-result
	if done == nil {
		return
	}
	failed(t, done, api.CodeAborted)
	if done.Stdout != "started\n" || done.ExitCode != 143 {
		t.Fatalf("the killed command: stdout %q exit %d", done.Stdout, done.ExitCode)
	}
	// The session goes on.
	if got := w.exec(s, "echo after"); got.Stdout != "after\n" {
		t.Fatalf("after the kill: %q", got.Stdout)
	}
}

func TestProcessLogsOutliveTheHost(t *testing.T) {
	w := start(t, options{idleTimeout: time.Second})
	const s = "logs"
	bg := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpExec, Command: "echo line one; echo err one >&2", Background: true}))
	ok(t, w.do(&api.Request{SessionID: s, Op: api.OpProcessWait, PID: bg.PID}))
	w.waitNoHost(s)
	// A new host serves the session; the process ran on the old one.
	logs := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpProcessLogs, PID: bg.PID}))
	if logs.Stdout != "line one\n" || logs.Stderr != "err one\n" {
		t.Fatalf("logs from the replaced host: %q %q", logs.Stdout, logs.Stderr)
	}
	list := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpProcessList}))
	if len(list.Processes) != 1 || list.Processes[0].PID != bg.PID || list.Processes[0].Status != api.ProcessExited {
		t.Fatalf("list after the host changed: %+v", list.Processes)
	}
}
