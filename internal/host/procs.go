package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/procs"
	"github.com/sandrun/sandrun/internal/session"
)

// processOp runs a process.* request or shell.view.
func (h *Host) processOp(ctx context.Context, req *api.Request, c *api.Completion) {
	if err := h.runProcessOp(ctx, req, c); err != nil {
		c.Fail(processErrorCode(err), err.Error())
		return
	}
	if c.ExitCode == -1 {
		c.ExitCode = 0
	}
}

func (h *Host) runProcessOp(ctx context.Context, req *api.Request, c *api.Completion) error {
	switch req.Op {
	case api.OpProcessList:
		list, err := h.allProcesses(ctx)
		c.Processes = list
		return err
	case api.OpProcessKill:
		killed, err := h.procs.Kill(ctx, procs.KillRequest{Pid: req.PID, Pattern: req.Pattern, All: req.All,
			Signal: req.KillSignal(), Grace: req.KillGrace(), Reason: "killed by request " + req.RequestID})
		if errors.Is(err, procs.ErrNotFound) && req.PID != 0 {
			if p, ok := h.earlierProcess(ctx, req.PID); ok {
				return fmt.Errorf("%w: process %d ran on an earlier host of the session and ended with it (%s)", procs.ErrNotFound, req.PID, p.Status)
			}
		}
		c.Killed = killed
		if c.Killed == nil {
			c.Killed = []int{}
		}
		return err
	case api.OpProcessLogs:
		return h.processLogs(ctx, req, c)
	case api.OpProcessWait:
		info, err := h.procs.Wait(ctx, req.PID, req.Timeout())
		if err != nil {
			return err
		}
		p := h.processInfo(info)
		c.PID, c.Processes = info.Pid, []api.ProcessInfo{p}
		c.ExitCode = -1
		if p.ExitCode != nil {
			c.ExitCode = *p.ExitCode
		}
		return nil
	case api.OpProcessWrite:
		data, err := req.Content()
		if err != nil {
			return fmt.Errorf("%w: %v", procs.ErrInvalid, err)
		}
		_, err = h.procs.Write(ctx, req.PID, data, req.CloseStdin)
		return err
	case api.OpShellView:
		info, out, ok := h.procs.View(api.InlineOutputBytes)
		if ok {
			p := h.processInfo(info)
			c.Running = &p
		}
		setOutput(c, out)
		return nil
	}
	return fmt.Errorf("%w: op %s is not a process operation", procs.ErrInvalid, req.Op)
}

// processLogs answers process.logs from the local log files while the
// process's host is this one, else from the copies earlier hosts shipped.
func (h *Host) processLogs(ctx context.Context, req *api.Request, c *api.Completion) error {
	out, err := h.procs.Logs(req.PID, procs.LogRange{Offset: req.Offset, Tail: req.TailBytes, Max: api.InlineOutputBytes})
	if !errors.Is(err, procs.ErrNotFound) {
		if err == nil {
			setOutput(c, out)
		}
		return err
	}
	p, ok := h.earlierProcess(ctx, req.PID)
	if !ok {
		return err
	}
	for _, stream := range []string{"stdout", "stderr"} {
		name := session.ProcessLogObject(h.cfg.SessionID, p.Epoch, p.Pid, stream)
		data, size, err := h.readLogObject(ctx, name, req.Offset, req.TailBytes)
		if err != nil {
			return err
		}
		if stream == "stdout" {
			out.Stdout, out.StdoutBytes = data, size
		} else {
			out.Stderr, out.StderrBytes = data, size
		}
	}
	setOutput(c, out)
	return nil
}

// readLogObject reads a slice of a shipped log: from offset, or its last
// tail bytes, at most InlineOutputBytes. A log never shipped is empty.
func (h *Host) readLogObject(ctx context.Context, name string, offset, tail int64) ([]byte, int64, error) {
	r, err := h.store.OpenObject(ctx, name)
	if errors.Is(err, session.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	size := r.Size
	start := offset
	if tail > 0 {
		start = max(size-tail, 0)
	}
	if start > size {
		start = size
	}
	if _, err := io.CopyN(io.Discard, r, start); err != nil {
		return nil, 0, fmt.Errorf("read log %s: %w", name, err)
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, api.InlineOutputBytes); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("read log %s: %w", name, err)
	}
	return buf.Bytes(), size, nil
}

// earlierProcess finds, in the session's registry, the latest process with
// pid that ran on an earlier host.
func (h *Host) earlierProcess(ctx context.Context, pid int) (session.ProcessDoc, bool) {
	docs, err := h.store.Processes(ctx, h.cfg.SessionID)
	if err != nil {
		h.logger.Warn("reading the process registry failed", "event", "procs.registry_failed", "error", err.Error())
		return session.ProcessDoc{}, false
	}
	for _, d := range docs {
		if d.Pid == pid && d.Epoch != h.lease.Epoch {
			return d, true
		}
	}
	return session.ProcessDoc{}, false
}

// allProcesses lists this host's processes, then those earlier hosts of the
// session ran, as the registry remembers them.
func (h *Host) allProcesses(ctx context.Context) ([]api.ProcessInfo, error) {
	out := []api.ProcessInfo{}
	for _, p := range h.procs.List() {
		out = append(out, h.processInfo(p))
	}
	docs, err := h.store.Processes(ctx, h.cfg.SessionID)
	if err != nil {
		return out, err
	}
	slices.Reverse(docs) // oldest first, as the host's own
	var earlier []api.ProcessInfo
	for _, d := range docs {
		if d.Epoch == h.lease.Epoch {
			continue
		}
		status := api.ProcessStatus(d.Status)
		if status == api.ProcessRunning {
			status = api.ProcessLost // its host is gone; the reaper will say so too
		}
		earlier = append(earlier, api.ProcessInfo{PID: d.Pid, Command: d.Command, Status: status, ExitCode: d.ExitCode,
			Signal: d.Signal, StartedAt: d.StartedAt, FinishedAt: d.FinishedAt, Host: d.Execution})
	}
	return append(earlier, out...), nil
}

func (h *Host) processInfo(p procs.ProcessInfo) api.ProcessInfo {
	return api.ProcessInfo{PID: p.Pid, ParentPID: p.Parent, Command: p.Command, Status: api.ProcessStatus(p.Status), ExitCode: p.ExitCode,
		Signal: p.Signal, StartedAt: p.StartedAt, FinishedAt: p.FinishedAt, Foreground: p.Foreground, Host: h.cfg.Execution}
}

func setOutput(c *api.Completion, out procs.Output) {
	c.Stdout, c.StdoutEncoding = api.InlineOutput(out.Stdout)
	c.Stderr, c.StderrEncoding = api.InlineOutput(out.Stderr)
	c.StdoutBytes, c.StderrBytes = out.StdoutBytes, out.StderrBytes
}

func processErrorCode(err error) api.ErrorCode {
	switch {
	case errors.Is(err, procs.ErrNotFound):
		return api.CodeNotFound
	case errors.Is(err, procs.ErrNoStdin):
		return api.CodeFailedPrecondition
	case errors.Is(err, procs.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return api.CodeTimeout
	case errors.Is(err, procs.ErrInvalid):
		return api.CodeInvalidArgument
	case errors.Is(err, procs.ErrClosed), errors.Is(err, context.Canceled):
		return api.CodeHostLost
	}
	return api.CodeInternal
}

// registry keeps the session's process registry for the process manager.
type registry struct{ h *Host }

func (r registry) Started(ctx context.Context, p procs.ProcessInfo) error { return r.record(ctx, p) }
func (r registry) Ended(ctx context.Context, p procs.ProcessInfo) error   { return r.record(ctx, p) }

func (r registry) record(ctx context.Context, p procs.ProcessInfo) error {
	sid, epoch := r.h.cfg.SessionID, r.h.lease.Epoch
	return r.h.store.RecordProcess(ctx, r.h.lease, session.ProcessDoc{
		Pid: p.Pid, Command: p.Command, Status: string(p.Status), ExitCode: p.ExitCode, Signal: p.Signal, Reason: p.Reason,
		StartedAt: p.StartedAt, FinishedAt: p.FinishedAt,
		StdoutObject: session.ProcessLogObject(sid, epoch, p.Pid, "stdout"),
		StderrObject: session.ProcessLogObject(sid, epoch, p.Pid, "stderr"),
	})
}

// logSink ships background processes' logs to Cloud Storage, so that they
// outlive the host.
type logSink struct{ h *Host }

func (s logSink) Ship(ctx context.Context, key procs.ProcessKey, stream string, r io.Reader, size int64) error {
	name := session.ProcessLogObject(s.h.cfg.SessionID, key.Epoch, key.Pid, stream)
	return s.h.store.ReplaceObject(ctx, name, "text/plain; charset=utf-8", io.LimitReader(r, size))
}

// newProcs starts the session's process manager for this host.
func (h *Host) newProcs() error {
	m, err := procs.New(procs.Config{Dir: h.spool + "/procs", Epoch: h.lease.Epoch, Registry: registry{h}, Sink: logSink{h}, Logger: h.logger,
		OwnsOrphans: h.cfg.OwnsOrphans})
	if err != nil {
		return fmt.Errorf("start the process manager: %w", err)
	}
	h.procsMu.Lock()
	h.procs = m
	h.procsMu.Unlock()
	return nil
}

// closeProcs ends the session's processes with the host.
func (h *Host) closeProcs(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := h.procs.Close(ctx); err != nil {
		h.logger.Warn("closing the process manager", "event", "procs.close_failed", "error", err.Error())
	}
}
