package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/logging"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/shell"
	"github.com/sandrun/sandrun/internal/telemetry"
)

// inboxRetry is how often the serve loop reads the inbox itself while its
// listener is down.
const inboxRetry = time.Second

// queueWindow is how many queued items the serve loop looks at at once: a
// request queued behind that many others waits until it is among them.
const queueWindow = 100

// finished is what a request's goroutine reports to the serve loop.
type finished struct {
	requestID  string
	foreground bool
	// state is the shell state a foreground command left, or nil to keep
	// the session's.
	state     *shell.State
	destroyed bool
	err       error
}

// flight is what the serve loop has started and not yet seen finish, and
// decides what may start next (mayStart).
type flight struct {
	// ops are the requests in flight, by request id.
	ops map[string]api.Op
	// fg is the foreground request, "" when none runs. overtakable says
	// that control requests may run beside it (it is a command, which
	// runs for as long as it likes); begun, until it is closed, that its
	// command is not yet where process.kill and process.list see it.
	fg          string
	overtakable bool
	begun       chan struct{}
	// kills counts the process.kill requests in flight; destroying is
	// set once a session.destroy started, destroyed once it destroyed the
	// session.
	kills                 int
	destroying, destroyed bool
}

// mayStart says whether a queued request of op may start now:
//   - a session.destroy starts at once, whatever runs or is queued (once a
//     command that runs has begun, so that ending the processes reaches it),
//     and then nothing else does: the destroy ends what runs and answers
//     every unfinished request ABORTED;
//   - a control request starts when nothing runs in the foreground, or
//     beside a foreground command once that command has begun, so that a
//     process.kill queued after a command sees it;
//   - any other request starts when nothing runs in the foreground and no
//     process.kill is being served, so that no command starts between a
//     kill's choice of its targets and its end: a kill never lands on a
//     command that starts after it.
func (f *flight) mayStart(op api.Op) bool {
	switch {
	case f.destroying:
		return false
	case op == api.OpSessionDestroy:
		return f.hasBegun()
	case api.ControlOp(op):
		return f.fg == "" || f.overtakable && f.hasBegun()
	default:
		return f.fg == "" && f.kills == 0
	}
}

// hasBegun reports whether the foreground command has begun; true when
// none runs.
func (f *flight) hasBegun() bool {
	select {
	case <-f.begun: // a nil channel never reads: see started
		f.begun = nil
		return true
	default:
		return f.begun == nil
	}
}

// started records a request the loop started; for a foreground command,
// it returns the channel its goroutine closes once the command has begun.
func (f *flight) started(it *session.Item) (begun chan struct{}) {
	op := api.Op(it.Op)
	f.ops[it.RequestID] = op
	switch {
	case op == api.OpSessionDestroy:
		f.destroying = true
	case op == api.OpProcessKill:
		f.kills++
	case !api.ControlOp(op):
		f.fg, f.overtakable = it.RequestID, overtakable(it)
		if f.overtakable {
			f.begun = make(chan struct{})
			return f.begun
		}
	}
	return nil
}

// ended records that a request finished.
func (f *flight) ended(fin finished) {
	if f.ops[fin.requestID] == api.OpProcessKill {
		f.kills--
	}
	delete(f.ops, fin.requestID)
	f.destroyed = f.destroyed || fin.destroyed && fin.err == nil
	if fin.foreground {
		f.fg, f.overtakable, f.begun = "", false, nil
	}
}

// candidates returns the queued items to consider starting, in inbox
// order, up to queueWindow of them: a session.destroy overtakes everything,
// so when the window holds one it is the only candidate.
func candidates(items []session.Item) []session.Item {
	items = items[:min(len(items), queueWindow)]
	for i := range items {
		if api.Op(items[i].Op) == api.OpSessionDestroy {
			return items[i : i+1]
		}
	}
	return items
}

// untaken returns the items of a new view of the inbox's queued requests
// (a listener's Queue, a read) that are not in taken, and forgets the ids
// of taken that the view no longer holds: a request that left the queue
// never comes back to it. (A view older than the one that made it forget
// an id may list that id again: its Start then answers ok=false.)
func untaken(items []session.Item, taken map[string]bool) []session.Item {
	in := make(map[string]bool, len(items))
	var out []session.Item
	for _, it := range items {
		in[it.RequestID] = true
		if !taken[it.RequestID] {
			out = append(out, it)
		}
	}
	for id := range taken {
		if !in[id] {
			delete(taken, id)
		}
	}
	return out
}

// serve runs the session's inbox until the host is idle and may leave, or
// ctx ends. parent is the execution's own context: it ends when Cloud Run
// cancels the execution.
//
// Requests run one at a time in inbox order (the foreground), except that
// control requests (process.*, shell.view) and session.destroy overtake
// the queued ones: a process.kill, process.list or session.destroy must
// not wait for the command it would stop, nor for what is queued behind
// that command. mayStart has the rules.
//
// The loop starts requests from what the inbox listener sends (the queued
// items with their versions), with no read of its own: Start is then one
// conditioned commit. Only while the listener is down does it read the
// inbox itself, every inboxRetry and after each request.
func (h *Host) serve(ctx, parent context.Context) error {
	queue := h.store.WatchQueued(ctx, h.cfg.SessionID)
	done := make(chan finished)
	f := &flight{ops: map[string]api.Op{}}
	defer func() { h.destroyed = f.destroyed }()
	idleSince := time.Now()
	// items are the queued requests the loop has not taken, in inbox order;
	// taken holds the ids it started, or found started already, until the
	// inbox is seen without them: a Queue sent before a Start landed still
	// lists its request.
	var items []session.Item
	taken := map[string]bool{}
	listenerDown := false

	// drain waits for every request in flight; ctx's end has told them to
	// stop.
	drain := func() {
		for len(f.ops) > 0 {
			f.ended(<-done)
		}
	}
	for {
		if ctx.Err() != nil {
			drain()
			if h.isLost() {
				return nil
			}
			return h.leave(parent, true)
		}
		live := h.procs.LiveChanged()
		// The inbox listener wakes the loop for each change; nothing
		// polls while it is up.
		var retryC <-chan time.Time
		if listenerDown {
			read, err := h.store.Queued(ctx, h.cfg.SessionID, queueWindow)
			switch {
			case err == nil:
				items = untaken(read, taken)
			case ctx.Err() == nil:
				h.logger.Warn("reading the inbox failed", "event", "host.inbox_failed", "error", err.Error())
			}
			retryC = time.After(inboxRetry)
		}
		for _, it := range candidates(items) {
			if !f.mayStart(api.Op(it.Op)) {
				continue
			}
			started, ok, err := h.store.Start(ctx, h.lease, it)
			if err != nil {
				drain()
				return err
			}
			taken[it.RequestID] = true
			if !ok {
				continue
			}
			begun := f.started(started)
			foreground := f.fg == started.RequestID
			first := h.served == 0
			h.served++
			go func() { done <- h.serveRequest(ctx, started, foreground, first, begun) }()
		}
		items = slices.DeleteFunc(items, func(it session.Item) bool { return taken[it.RequestID] })

		h.noteWork(len(f.ops) > 0 || len(items) > 0)

		// A host with live background processes stays, so that a later
		// request reaches them, up to its maximum lifetime.
		quiet := f.fg == "" && len(f.ops) == 0 && len(items) == 0
		var lifetimeC <-chan time.Time
		if quiet && h.procs.Live() > 0 {
			lifetimeC = time.After(h.cfg.MaxLifetime - time.Since(h.lease.Acquired))
		}
		if quiet && h.procs.Live() > 0 && time.Since(h.lease.Acquired) > h.cfg.MaxLifetime {
			h.logger.Info("host reached its maximum lifetime; its processes end", "event", "host.max_lifetime", "processes", h.procs.Live())
			h.closeProcs(ctx)
			// A fresh manager serves what comes until the host leaves.
			if err := h.newProcs(); err != nil {
				drain()
				return err
			}
			continue
		}
		idle := quiet && h.procs.Live() == 0
		var idleC <-chan time.Time
		var idleTimer *time.Timer
		if idle {
			left := h.cfg.IdleTimeout - time.Since(idleSince)
			if left <= 0 {
				err := h.leave(ctx, false)
				if errors.Is(err, session.ErrWorkPending) {
					idleSince = time.Now()
					continue
				}
				return err
			}
			idleTimer = time.NewTimer(left)
			idleC = idleTimer.C
		}
		select {
		case fin := <-done:
			f.ended(fin)
			if f.destroying && errors.Is(fin.err, session.ErrLeaseLost) {
				// The destroy fenced this host off, and answered the
				// request.
				fin.err = nil
			}
			if fin.foreground && fin.state != nil {
				h.state, h.dirty = *fin.state, true
			}
			if fin.err != nil || fin.destroyed {
				drain()
				return fin.err
			}
			idleSince = time.Now()
			if f.fg == "" && len(f.ops) == 0 && h.dirty && time.Since(h.lastCheckpoint) > h.cfg.CheckpointInterval {
				if err := h.checkpoint(ctx); err != nil {
					h.logger.Warn("checkpoint failed", "event", "checkpoint.failed", "error", err.Error())
				}
			}
		case <-f.begun:
			// The foreground command began: control requests queued
			// behind it may start.
			f.begun = nil
		case q := <-queue:
			if q.Err != nil {
				if !listenerDown && ctx.Err() == nil {
					h.logger.Warn("inbox listener failed; reading the inbox until it is back", "event", "host.inbox_listener_failed", "error", q.Err.Error())
				}
				listenerDown = true
				break
			}
			listenerDown, items = false, untaken(q.Items, taken)
		case <-retryC:
		case <-lifetimeC:
		case <-live:
			// A background process ended (or began): the host may be idle.
			idleSince = time.Now()
		case <-idleC:
		case <-ctx.Done():
		}
		if idleTimer != nil {
			idleTimer.Stop()
		}
	}
}

// shellRefresh is how often a host records the session's shell state
// even when no command changed it: far within the state document's TTL
// (session.DefaultTTL, 7 days).
const shellRefresh = time.Hour

// sameShell reports whether two shell states are the same.
func sameShell(a, b *shell.State) bool {
	return a.Cwd == b.Cwd && maps.Equal(a.Env, b.Env)
}

// overtakable reports whether control requests may run beside a foreground
// item: a command that runs for as long as it likes. Anything else is
// quick, and later requests wait for it.
func overtakable(it *session.Item) bool {
	if api.Op(it.Op) != api.OpExec {
		return false
	}
	var req api.Request
	return json.Unmarshal(it.Request, &req) == nil && !req.Background
}

// serveRequest serves one started request: runs it, records its completion
// and publishes it. begun, when not nil, is closed once a foreground
// command has begun, or will not.
func (h *Host) serveRequest(ctx context.Context, item *session.Item, foreground, first bool, begun chan struct{}) finished {
	markBegun := sync.OnceFunc(func() {
		if begun != nil {
			close(begun)
		}
	})
	defer markBegun()
	f := finished{requestID: item.RequestID, foreground: foreground}
	// The request's span is a child of the dispatcher's, whose context the
	// inbox item kept.
	ctx, span := telemetry.Start(telemetry.WithTraceparent(ctx, item.Traceparent), "sandrun.request", trace.SpanKindServer,
		attribute.String("sandrun.session_id", item.SessionID), attribute.String("sandrun.request_id", item.RequestID),
		attribute.String("sandrun.op", item.Op), attribute.String("sandrun.execution_id", h.cfg.Execution))
	defer span.End()
	var req api.Request
	// Until a command runs to an end, nothing has an exit code.
	c := &api.Completion{RequestID: item.RequestID, SessionID: item.SessionID, Op: api.Op(item.Op), Status: api.StatusOK, ExecutionID: h.cfg.Execution, ExitCode: -1}
	if err := json.Unmarshal(item.Request, &req); err != nil {
		c.Fail(api.CodeInternal, "the recorded request could not be decoded: "+err.Error())
	}
	waited := item.AcceptedAt.Before(h.lease.Acquired)
	c.ColdStart, c.PoolHit = waited && !h.cfg.Pooled, waited && h.cfg.Pooled
	if waited && !h.lease.LaunchRequestedAt.IsZero() {
		c.Timing.LaunchSeconds = h.lease.Acquired.Sub(h.lease.LaunchRequestedAt).Seconds()
		h.metrics.started(ctx, c.Timing.LaunchSeconds, h.cfg.Pooled)
	}
	if first {
		c.Timing.RestoreSeconds = h.restoreSeconds
	}

	started := time.Now()
	if c.Error == nil {
		xctx, xspan := telemetry.Start(ctx, "sandrun.run", trace.SpanKindInternal, attribute.String("sandrun.op", item.Op))
		f.state, f.destroyed = h.handle(xctx, &req, c, markBegun)
		xspan.SetAttributes(attribute.Int("sandrun.exit_code", c.ExitCode))
		xspan.End()
	}
	end := time.Now()
	c.DurationSeconds = end.Sub(started).Seconds()
	c.Timing.AcceptedAt, c.Timing.StartedAt, c.Timing.FinishedAt = item.AcceptedAt, item.StartedAt, end
	c.Timing.QueueSeconds = item.StartedAt.Sub(item.AcceptedAt).Seconds()
	c.Timing.RunSeconds = c.DurationSeconds
	c.Timing.TotalSeconds = end.Sub(item.AcceptedAt).Seconds()
	if foreground && c.Cwd == "" {
		c.Cwd = h.state.Cwd
		if f.state != nil {
			c.Cwd = f.state.Cwd
		}
	}
	if f.state != nil && stateSize(f.state) > maxStateBytes {
		c.Fail(api.CodeResourceExhausted, fmt.Sprintf("the command left %d bytes of working directory and exported environment; a session keeps at most %d, so the state it started with is kept", stateSize(f.state), maxStateBytes))
		f.state, c.Cwd = nil, h.state.Cwd
	}
	var pending *pendingCheckpoint
	if foreground && !f.destroyed && changesWorkspace(req.Op) {
		pending = h.requestSnapshot(ctx, c)
	}
	// The shell state is recorded when the command changed it: a write
	// less for most commands. It is recorded unchanged too once in a while
	// (shellRefresh), so that the state document's TTL never runs out
	// under a live session.
	var keep *session.Shell
	if f.state != nil && (!sameShell(f.state, &h.state) || time.Since(h.shellSaved) > shellRefresh) {
		sh := session.NewShell(f.state.Cwd, f.state.Env)
		keep = &sh
	}
	// The answer is recorded even when the execution is being stopped:
	// fencing, not the context, keeps a host that lost its lease from
	// writing.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	span.SetAttributes(attribute.String("sandrun.status", string(c.Status)), attribute.Bool("sandrun.cold_start", c.ColdStart), attribute.Bool("sandrun.pool_hit", c.PoolHit))
	if c.Error != nil {
		span.SetStatus(codes.Error, string(c.Error.Code))
	}
	fctx, fspan := telemetry.Start(rctx, "sandrun.record", trace.SpanKindInternal)
	replaced := h.lease.Checkpoint
	data, err := h.store.Finish(fctx, h.lease, item.Version, c, keep, pending.checkpoint())
	telemetry.End(fspan, err)
	if err != nil {
		f.err = err
		return f
	}
	if keep != nil {
		h.shellSaved = time.Now()
	}
	collect := func() {}
	if pending != nil && h.lease.Checkpoint == &pending.cp {
		collect = h.committed(rctx, pending, replaced)
	}
	h.metrics.served(ctx, c)
	var aborted []session.Unpublished
	if f.destroyed {
		// Recorded first (the destroy answers every request still
		// unfinished, and must not answer itself), published once the
		// session is destroyed: a request sent after the answer finds it
		// so. The host is fenced off by then, and its heartbeat stops it:
		// rctx outlives that.
		if aborted, f.err = h.destroy(rctx); f.err != nil {
			return f
		}
	}
	// The completion carries its publish span's context out, to the
	// backend that receives it.
	pctx, pspan := telemetry.Start(rctx, "sandrun.publish completion", trace.SpanKindProducer)
	h.publish(pctx, item.SessionID, item.RequestID, data, telemetry.Traceparent(pctx))
	pspan.End()
	collect()
	h.logger.InfoContext(ctx, "request served", "event", "request.done", "request_id", item.RequestID, "op", item.Op,
		"command", logging.Command(req.Command), "status", string(c.Status), "exit_code", c.ExitCode,
		"duration_seconds", c.DurationSeconds, "total_seconds", c.Timing.TotalSeconds, "cold_start", c.ColdStart)
	if f.destroyed {
		h.cleanUp(rctx, aborted)
	}
	return f
}

// handle runs the operation of a request into its completion, as execute
// does, and turns a panic of its handler into an INTERNAL completion of
// that request alone: the host serves on, the session's shell state is
// kept as it was, and the stack goes to the log.
func (h *Host) handle(ctx context.Context, req *api.Request, c *api.Completion, begun func()) (state *shell.State, destroyed bool) {
	before := *c
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		h.logger.ErrorContext(ctx, "request handler panicked; the request is answered INTERNAL and the host serves on", "event", "request.panic",
			"request_id", req.RequestID, "op", string(req.Op), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		// Whatever the handler filled in before it panicked is dropped.
		*c = before
		c.Fail(api.CodeInternal, fmt.Sprintf("the host failed while serving this %s request; the session goes on", req.Op))
		state, destroyed = nil, false
	}()
	if h.cfg.beforeOp != nil {
		h.cfg.beforeOp(req)
	}
	return h.execute(ctx, req, c, begun)
}

// execute runs the operation of a request into its completion. It returns
// the shell state an exec left, and whether the request destroyed the
// session. A foreground command calls begun once process.kill and
// process.list see it.
func (h *Host) execute(ctx context.Context, req *api.Request, c *api.Completion, begun func()) (state *shell.State, destroyed bool) {
	switch req.Op {
	case api.OpExec:
		return h.exec(ctx, req, c, begun), false
	case api.OpSessionDestroy:
		c.ExitCode = 0
		return nil, true
	case api.OpFileRead, api.OpFileWrite, api.OpFileDelete, api.OpFileExists, api.OpFileList,
		api.OpFileFind, api.OpFileSearch, api.OpFileReplace, api.OpFileUpload, api.OpFileDownload:
		h.fileOp(ctx, req, c)
		return nil, false
	case api.OpProcessList, api.OpProcessKill, api.OpProcessLogs, api.OpProcessWait, api.OpProcessWrite, api.OpShellView:
		h.processOp(ctx, req, c)
		return nil, false
	case api.OpSessionGet, api.OpSessionCreate:
		c.ExitCode = 0
		c.Session = &api.SessionInfo{SessionID: h.cfg.SessionID, Status: session.StatusActive, Host: h.cfg.Execution, Cwd: h.state.Cwd}
		return nil, false
	default:
		c.Fail(api.CodeNotSupported, fmt.Sprintf("op %s is not served by this host", req.Op))
		return nil, false
	}
}
