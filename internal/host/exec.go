package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/procs"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/shell"
)

// exec runs a command in the session's shell and fills the completion. It
// returns the shell state to keep, or nil to keep the current one. A
// command with Background starts as a background process instead. begun is
// called once the process manager shows the command.
func (h *Host) exec(ctx context.Context, req *api.Request, c *api.Completion, begun func()) *shell.State {
	if req.Background {
		h.startBackground(req, c)
		return nil
	}
	out, err := h.takeOutput(req.RequestID)
	if err != nil {
		c.Fail(api.CodeInternal, "create output file: "+err.Error())
		return nil
	}
	stdout, stderr := out.stdout, out.stderr
	running, err := shell.Start(ctx, h.spool, h.state.Clone(), shell.Command{
		Script: req.Command, Env: req.Env, Dir: req.Cwd, Timeout: req.Timeout(),
		Stdout: stdout, Stderr: stderr, MaxOutput: api.MaxOutputBytes,
	})
	if err != nil {
		out.drop()
		failStart(c, req, err)
		return nil
	}
	// The process manager shows the command to process.list and shell.view
	// and lets process.kill end it; it adopts what the command leaves
	// running as background processes.
	fg, fgErr := h.procs.BeginForeground(procs.ForegroundSpec{Process: running, Command: req.Command, Stdout: stdout, Stderr: stderr})
	begun()
	res, err := running.Wait()
	var end procs.ForegroundEnd
	if fgErr == nil {
		end = fg.End(res)
	} else {
		h.logger.Warn("foreground command not tracked", "event", "procs.foreground_untracked", "request_id", req.RequestID, "error", fgErr.Error())
	}
	if err != nil {
		// The command ran; only its saved state was unreadable.
		h.logger.Warn("shell state unreadable; keeping the previous state", "event", "shell.state_unreadable", "request_id", req.RequestID, "error", err.Error())
	}

	c.ExitCode = res.ExitCode
	// What the command left running (`server &`) is named in the
	// completion, so that a caller can follow it without a process.list.
	c.BackgroundPIDs = end.Adopted
	if err := h.attachOutput(ctx, c, req.RequestID, "stdout", stdout, res.StdoutBytes); err != nil {
		c.Fail(api.CodeInternal, err.Error())
	}
	if err := h.attachOutput(ctx, c, req.RequestID, "stderr", stderr, res.StderrBytes); err != nil {
		c.Fail(api.CodeInternal, err.Error())
	}
	// Large outputs are not kept around (a host's files are in memory on
	// Cloud Run) until the next command empties them.
	small := res.StdoutBytes+res.StderrBytes <= api.InlineOutputBytes
	h.keepOutput(out, running.OutputClosed(), fgErr == nil && len(end.Adopted) == 0 && small)
	switch {
	case end.Killed:
		c.Fail(api.CodeAborted, fmt.Sprintf("the command was ended by SIG%s (%s)", end.Signal, end.Reason))
	case res.TimedOut:
		c.Fail(api.CodeTimeout, fmt.Sprintf("the command ran longer than its timeout of %v and was killed", req.Timeout()))
	case res.Canceled:
		c.Fail(api.CodeHostLost, "the host was stopped while the command ran")
	case errors.Is(res.StateError, shell.ErrStateTooLarge):
		c.Fail(api.CodeResourceExhausted, "the command exported more environment than a program can be given (Linux takes at most 131072 bytes for one variable), so its working directory and variables are not kept; the session keeps those it started with")
	case res.StateError != nil:
		c.Fail(api.CodeInternal, "the command's working directory and variables could not be saved ("+res.StateError.Error()+"); the session keeps those it started with")
	}
	c.Cwd = res.State.Cwd
	if !res.StateSaved {
		return nil
	}
	return &res.State
}

// outputFiles are the files a foreground command's stdout and stderr go
// to. Files created and removed for every command cost about a twentieth
// of the host's CPU per trivial request on the development machine's ext4
// (which searches longer for an inode the faster files come and go), so a
// command's files serve the next one, emptied, when nothing else can
// write to them or read them any more: the process manager adopted
// nothing of the command (it keeps the files of what it adopts, as their
// logs) and the command's output copies have ended (closed).
type outputFiles struct {
	stdout, stderr *os.File
	closed         <-chan struct{}
}

// takeOutput returns the files for the next foreground command: the last
// command's, emptied, when they may be, or new ones named after the
// request.
func (h *Host) takeOutput(requestID string) (*outputFiles, error) {
	if out := h.spareOutput; out != nil {
		h.spareOutput = nil
		select {
		case <-out.closed:
			if empty(out.stdout) == nil && empty(out.stderr) == nil {
				return out, nil
			}
		default:
		}
		out.drop()
	}
	stdout, err := os.Create(filepath.Join(h.spool, requestID+".stdout"))
	if err != nil {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(h.spool, requestID+".stderr"))
	if err != nil {
		stdout.Close()
		os.Remove(stdout.Name())
		return nil, err
	}
	return &outputFiles{stdout: stdout, stderr: stderr}, nil
}

// keepOutput keeps a command's files for the next command when reusable
// (the process manager did not take them, and they hold little) and they
// still have their names; closed is closed once the command's output
// copies ended. Others are dropped.
func (h *Host) keepOutput(out *outputFiles, closed <-chan struct{}, reusable bool) {
	if !reusable || !named(out.stdout) || !named(out.stderr) {
		out.drop()
		return
	}
	out.closed = closed
	h.spareOutput = out
}

// drop closes the files and removes their names. What still writes to
// them (a leftover's output) goes on into the unnamed files.
func (out *outputFiles) drop() {
	for _, f := range []*os.File{out.stdout, out.stderr} {
		f.Close()
		os.Remove(f.Name())
	}
}

// empty truncates f and moves its offset, which its writers share, back
// to the start.
func empty(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// named reports whether f is still the file its name names: the process
// manager moves the files it keeps.
func named(f *os.File) bool {
	byName, err := os.Stat(f.Name())
	if err != nil {
		return false
	}
	open, err := f.Stat()
	return err == nil && os.SameFile(byName, open)
}

// failStart answers a command that could not be started.
func failStart(c *api.Completion, req *api.Request, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Fail(api.CodeNotFound, fmt.Sprintf("cwd %q does not exist", req.Cwd))
	case errors.Is(err, shell.ErrInvalid):
		c.Fail(api.CodeInvalidArgument, err.Error())
	default:
		c.Fail(api.CodeInternal, "start command: "+err.Error())
	}
}

// startBackground starts an exec with Background as a background process
// and answers with its pid at once.
func (h *Host) startBackground(req *api.Request, c *api.Completion) {
	info, err := h.procs.Start(h.state.Clone(), shell.Command{Script: req.Command, Env: req.Env, Dir: req.Cwd}, req.KeepStdin)
	if err != nil {
		failStart(c, req, err)
		return
	}
	c.ExitCode, c.PID = 0, info.Pid
	c.Processes = []api.ProcessInfo{h.processInfo(info)}
}

// attachOutput puts the start of the command's output in the completion
// and, when it does not fit, all of it that was kept (the first
// api.MaxOutputBytes of the size bytes printed, the file's start) in an
// object that the completion names. What the command's leftovers write to
// f later is theirs, not the request's.
func (h *Host) attachOutput(ctx context.Context, c *api.Completion, requestID, stream string, f *os.File, size int64) error {
	kept := min(size, api.MaxOutputBytes)
	head := make([]byte, min(kept, api.InlineOutputBytes))
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	if size > api.InlineOutputBytes {
		head = trimPartialRune(head)
	}
	text, enc := api.InlineOutput(head)
	var object string
	if size > api.InlineOutputBytes {
		name := session.OutputObject(h.cfg.SessionID, requestID, stream)
		if _, err := h.store.WriteNewObject(ctx, name, "application/octet-stream", io.NewSectionReader(f, 0, kept)); err != nil {
			return fmt.Errorf("keep whole %s: %w", stream, err)
		}
		object = h.store.ObjectURI(name)
	}
	cut := size > kept
	if stream == "stdout" {
		c.Stdout, c.StdoutEncoding, c.StdoutBytes, c.StdoutObject, c.StdoutCut = text, enc, size, object, cut
	} else {
		c.Stderr, c.StderrEncoding, c.StderrBytes, c.StderrObject, c.StderrCut = text, enc, size, object, cut
	}
	return nil
}

// trimPartialRune drops an incomplete UTF-8 sequence that a cut left at the
// end of b, so that text output cut short stays text.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}
