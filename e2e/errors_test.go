package e2e

import (
	"strings"
	"testing"

	"github.com/sandrun/sandrun/api"
)

// TestOperationErrors sends, through the client, one request per case and
// checks its answer against docs/protocol.md: the documented error code
// and a message that says what was wrong. Between them the cases give
// every error code that page documents for file.write, file.list,
// file.find, process.logs, process.wait, process.kill and session.get.
func TestOperationErrors(t *testing.T) {
	w := start(t, options{})
	const s = "errors"
	setup := w.exec(s, "mkdir -p ~/work/adir && cd ~/work")
	sleeper := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpExec, Command: "sleep 600", Background: true}))
	const unknownPID = 999999

	for _, tc := range []struct {
		name string
		req  api.Request
		// code is the error expected, with a substring of its message;
		// "" expects ok and check.
		code  api.ErrorCode
		msg   string
		check func(t *testing.T, c *api.Completion)
	}{
		{name: "file.write over the inline limit",
			req:  api.Request{Op: api.OpFileWrite, Path: "big.txt", EncodedContent: strings.Repeat("x", api.MaxInlineFileBytes+1)},
			code: api.CodeResourceExhausted, msg: "file.upload"},
		{name: "file.write onto a directory",
			req:  api.Request{Op: api.OpFileWrite, Path: "adir", EncodedContent: "x"},
			code: api.CodeFailedPrecondition, msg: "is a directory"},
		{name: "file.read of the host's own /proc entry",
			req:  api.Request{Op: api.OpFileRead, Path: "/proc/self/environ"},
			code: api.CodeFailedPrecondition, msg: "host's own /proc entries are not served"},
		{name: "file.download of the host's own /proc entry",
			req:  api.Request{Op: api.OpFileDownload, Path: "/proc/self/mem"},
			code: api.CodeFailedPrecondition, msg: "host's own /proc entries are not served"},
		{name: "file.write with a bad mode",
			req:  api.Request{Op: api.OpFileWrite, Path: "f.txt", Mode: "0999"},
			code: api.CodeInvalidArgument, msg: `mode "0999"`},
		{name: "file.list of a missing directory",
			req:  api.Request{Op: api.OpFileList, Path: "nodir"},
			code: api.CodeNotFound, msg: "nodir: no such file or directory"},
		{name: "file.find in a missing directory",
			req:  api.Request{Op: api.OpFileFind, Path: "nodir", Pattern: "*"},
			code: api.CodeNotFound, msg: "nodir: no such file or directory"},
		{name: "file.find with a malformed glob",
			req:  api.Request{Op: api.OpFileFind, Pattern: "[a-"},
			code: api.CodeInvalidArgument, msg: "not a well-formed glob"},
		{name: "process.logs of an unknown pid",
			req:  api.Request{Op: api.OpProcessLogs, PID: unknownPID},
			code: api.CodeNotFound, msg: "process 999999: no such process"},
		{name: "process.logs with offset and tail_bytes",
			req:  api.Request{Op: api.OpProcessLogs, PID: sleeper.PID, Offset: 1, TailBytes: 1},
			code: api.CodeInvalidArgument, msg: "offset or tail_bytes, not both"},
		{name: "process.wait of an unknown pid",
			req:  api.Request{Op: api.OpProcessWait, PID: unknownPID, TimeoutSeconds: 1},
			code: api.CodeNotFound, msg: "process 999999: no such process"},
		{name: "process.wait past its timeout",
			req:  api.Request{Op: api.OpProcessWait, PID: sleeper.PID, TimeoutSeconds: 0.2},
			code: api.CodeTimeout, msg: "still running"},
		{name: "process.kill of an unknown pid",
			req:  api.Request{Op: api.OpProcessKill, PID: unknownPID},
			code: api.CodeNotFound, msg: "process 999999: no such process"},
		{name: "process.kill by pid and all",
			req:  api.Request{Op: api.OpProcessKill, PID: sleeper.PID, All: true},
			code: api.CodeInvalidArgument, msg: "only one of pid, pattern and all"},
		{name: "process.kill with an unknown signal",
			req:  api.Request{Op: api.OpProcessKill, PID: sleeper.PID, Signal: "STOP"},
			code: api.CodeInvalidArgument, msg: `"STOP"`},
		{name: "session.get of a session that does not exist",
			req:  api.Request{SessionID: "errors-nobody", Op: api.OpSessionGet},
			code: api.CodeNotFound, msg: "errors-nobody"},
		{name: "session.get of an existing session",
			req: api.Request{Op: api.OpSessionGet},
			check: func(t *testing.T, c *api.Completion) {
				si := c.Session
				if si == nil || si.SessionID != s || si.Status != "active" || si.Cwd != setup.Cwd ||
					si.Host != setup.ExecutionID || si.Queued != 0 || si.CreatedAt.IsZero() || si.LastActiveAt.Before(si.CreatedAt) {
					t.Errorf("session: %+v, want %s active in %s on %s with nothing queued", si, s, setup.Cwd, setup.ExecutionID)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			if req.SessionID == "" {
				req.SessionID = s
			}
			got := w.do(&req)
			if tc.code == "" {
				tc.check(t, ok(t, got))
				return
			}
			if got.Status != api.StatusError || got.Error == nil || got.Error.Code != tc.code {
				t.Fatalf("%s %+v, want error %s", got.Status, got.Error, tc.code)
			}
			if !strings.Contains(got.Error.Message, tc.msg) {
				t.Errorf("message %q does not say %q", got.Error.Message, tc.msg)
			}
			if got.ExitCode != -1 {
				t.Errorf("exit_code %d, want -1: no command ran", got.ExitCode)
			}
		})
	}
	// The sleeper outlived every request aimed at it.
	if got := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpProcessList})); len(got.Processes) != 1 || got.Processes[0].Status != api.ProcessRunning {
		t.Errorf("processes after the errors: %+v", got.Processes)
	}
}
