package cloudrun

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// defaultPath is the PATH a task gets when its environment sets none, as
// Docker gives a container whose image sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outputDrainTimeout bounds how long a task's output is still read after its
// processes were killed: a process that escaped the task's session could hold
// the pipe open forever.
const outputDrainTimeout = time.Second

// teardownTimeout bounds how long a task's killed processes are waited for.
// They die at once unless the kernel is stuck (uninterruptible sleep).
const teardownTimeout = 2 * time.Second

// runExecution is the life of one execution, top to bottom: wait out the
// cold start, run the tasks (at most parallelism at once, retrying failed
// attempts), then finish, which completes the operations that follow it.
func (s *Server) runExecution(e *execution) {
	defer s.wg.Done()
	if s.waitColdStart(e) {
		s.runTasks(e)
	}
	s.finish(e)
}

// waitColdStart waits out the start delay and marks the execution running.
// It reports false when the execution was cancelled first.
func (s *Server) waitColdStart(e *execution) bool {
	if d := e.plan.startDelay; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-e.cancel:
			return false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.cancelRequested {
		return false
	}
	now := time.Now()
	e.phase, e.started, e.updated = execRunning, now, now
	s.log.Info("execution started", "event", "cloudrun.execution.started", "execution", e.name.String(),
		"cold_start_seconds", now.Sub(e.created).Seconds())
	return true
}

// runTasks runs every task to its end: at most parallelism attempts at a
// time, a failed attempt retried first while retries remain, nothing new
// started once the execution is cancelled.
func (s *Server) runTasks(e *execution) {
	results := make(chan attemptResult)
	queue := slices.Clone(e.tasks) // tasks waiting for a slot
	running := 0
	cancel := e.cancel
	for len(queue) > 0 || running > 0 {
		for running < int(e.plan.parallelism) && len(queue) > 0 && !isClosed(e.cancel) {
			t := queue[0]
			queue = queue[1:]
			running++
			s.wg.Go(func() { results <- s.runAttempt(e, t) })
		}
		select {
		case r := <-results:
			running--
			if s.recordAttempt(e, r) {
				queue = slices.Insert(queue, 0, r.task)
			}
		case <-cancel:
			// The running attempts are stopping (they watch e.cancel too);
			// the waiting tasks never start and finish counts them cancelled.
			cancel, queue = nil, nil
		}
	}
}

// attemptResult is how one attempt of a task ended.
type attemptResult struct {
	task    *task
	phase   taskPhase // taskSucceeded, taskFailed or taskCancelled
	result  *runpb.TaskAttemptResult
	message string
	reason  runpb.Condition_ExecutionReason
}

// runAttempt runs one attempt of t as a local process in a fresh directory
// and returns how it ended.
func (s *Server) runAttempt(e *execution, t *task) attemptResult {
	s.mu.Lock()
	now := time.Now()
	attempt := t.attempt
	t.scheduled, t.updated = now, now
	t.logDir = filepath.Join(e.dir, fmt.Sprintf("task%d-attempt%d", t.index, attempt))
	dir := t.logDir
	s.mu.Unlock()

	env := mergeEnv(e.plan.env, []string{
		"CLOUD_RUN_JOB=" + e.name.job,
		"CLOUD_RUN_EXECUTION=" + e.name.execution,
		"CLOUD_RUN_TASK_INDEX=" + strconv.Itoa(int(t.index)),
		"CLOUD_RUN_TASK_COUNT=" + strconv.Itoa(int(e.plan.taskCount)),
		"CLOUD_RUN_TASK_ATTEMPT=" + strconv.Itoa(int(attempt)),
	})
	path, argv, err := s.resolveProgram(e.plan.container, env, filepath.Join(dir, "work"))
	if err != nil {
		return notStarted(t, err)
	}
	p, err := s.startProcess(path, argv, env, dir, fmt.Sprintf("%s/task%d: ", e.name.execution, t.index))
	if err != nil {
		return notStarted(t, err)
	}
	if s.cfg.OnTaskStart != nil {
		s.cfg.OnTaskStart(e.name.String())
	}

	s.mu.Lock()
	now = time.Now()
	t.proc, t.phase, t.started, t.updated, e.updated = p, taskRunning, now, now, now
	s.mu.Unlock()
	s.log.Debug("task started", "event", "cloudrun.task.started", "task", t.name.String(), "attempt", attempt, "pid", p.pid)

	cause := s.supervise(e, p)
	p.teardown()

	s.mu.Lock()
	t.proc = nil
	s.mu.Unlock()
	return exitResult(t, p.cmd.ProcessState, cause)
}

// stopCause says why the emulator stopped a task's process, if it did.
type stopCause int

const (
	stopNone    stopCause = iota // the process ended by itself (or was killed as a crash)
	stopTimeout                  // the task's timeout passed
	stopCancel                   // the execution was cancelled
)

// supervise waits for p to exit, stopping it (SIGTERM, then SIGKILL after
// StopGrace) when the timeout passes or the execution is cancelled.
func (s *Server) supervise(e *execution, p *taskProc) stopCause {
	timeout := time.NewTimer(e.plan.timeout)
	defer timeout.Stop()
	var cause stopCause
	select {
	case <-p.exited:
		return stopNone
	case <-timeout.C:
		cause = stopTimeout
	case <-e.cancel:
		cause = stopCancel
	}
	if isClosed(p.exited) {
		return stopNone
	}
	signalTask(p.pid, syscall.SIGTERM)
	grace := time.NewTimer(s.cfg.StopGrace)
	defer grace.Stop()
	select {
	case <-p.exited:
	case <-grace.C:
		signalTask(p.pid, syscall.SIGKILL)
		<-p.exited
	}
	return cause
}

// recordAttempt records how an attempt ended and reports whether the task
// runs again.
func (s *Server) recordAttempt(e *execution, r attemptResult) (retry bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, now := r.task, time.Now()
	t.last, t.message, t.reason, t.updated, e.updated = r.result, r.message, r.reason, now, now
	if r.phase == taskFailed && t.retried < e.plan.maxRetries && !e.cancelRequested {
		s.log.Info("task retrying", "event", "cloudrun.task.retrying", "task", t.name.String(), "attempt", t.attempt, "message", r.message)
		t.phase = taskPending
		t.retried++
		t.attempt++
		return true
	}
	t.phase, t.completed = r.phase, now
	if r.phase == taskFailed && e.failed == nil {
		e.failed = t
	}
	s.log.Debug("task ended", "event", "cloudrun.task.ended", "task", t.name.String(), "attempt", t.attempt, "message", r.message)
	return false
}

// finish ends the execution: tasks that never started count as cancelled,
// the outcome is decided, and the operations that follow it complete.
func (s *Server) finish(e *execution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	failed, cancelled := 0, 0
	for _, t := range e.tasks {
		if t.phase == taskPending {
			t.phase, t.completed, t.updated = taskCancelled, now, now
		}
		switch t.phase {
		case taskFailed:
			failed++
		case taskCancelled:
			cancelled++
		}
	}
	switch {
	case cancelled > 0:
		e.outcome = runpb.ExecutionReference_EXECUTION_CANCELLED
	case failed > 0:
		e.outcome = runpb.ExecutionReference_EXECUTION_FAILED
	default:
		e.outcome = runpb.ExecutionReference_EXECUTION_SUCCEEDED
	}
	e.phase, e.completed, e.updated = execFinished, now, now
	snap := e.snapshotLocked()
	for _, op := range e.ops {
		op.completeLocked(snap)
	}
	delete(s.active, e)
	close(e.done)
	s.log.Info("execution finished", "event", "cloudrun.execution.finished", "execution", e.name.String(),
		"outcome", e.outcome.String(), "succeeded", snap.SucceededCount, "failed", snap.FailedCount,
		"cancelled", snap.CancelledCount, "duration_seconds", now.Sub(e.created).Seconds())
}

// notStarted is the result of an attempt whose process could not start.
func notStarted(t *task, err error) attemptResult {
	msg := "Application failed to start: " + err.Error()
	return attemptResult{
		task:    t,
		phase:   taskFailed,
		message: msg,
		result:  &runpb.TaskAttemptResult{Status: &spb.Status{Code: int32(codes.FailedPrecondition), Message: msg}},
	}
}

// exitResult classifies how a task's process ended, in Cloud Run's words.
func exitResult(t *task, state *os.ProcessState, cause stopCause) attemptResult {
	r := attemptResult{task: t, phase: taskFailed, result: &runpb.TaskAttemptResult{}}
	var ws syscall.WaitStatus
	ok := false
	if state != nil {
		ws, ok = state.Sys().(syscall.WaitStatus)
	}
	if !ok {
		r.message = "The emulator lost track of the container's process."
		r.result.Status = &spb.Status{Code: int32(codes.Internal), Message: r.message}
		return r
	}
	if ws.Signaled() {
		r.result.TermSignal = int32(ws.Signal())
		r.result.ExitCode = 128 + int32(ws.Signal())
	} else {
		r.result.ExitCode = int32(ws.ExitStatus())
	}
	code := codes.Unknown
	switch {
	case cause == stopCancel:
		r.phase, r.message, code = taskCancelled, "The task was cancelled.", codes.Canceled
	case cause == stopTimeout:
		r.message, code = "The configured timeout was reached.", codes.DeadlineExceeded
	case ws.Signaled():
		r.message = fmt.Sprintf("Container terminated on signal %d.", ws.Signal())
	case ws.ExitStatus() == 0:
		r.phase, code = taskSucceeded, codes.OK
	default:
		r.message = fmt.Sprintf("The container exited with an error (exit code %d).", ws.ExitStatus())
		r.reason = runpb.Condition_NON_ZERO_EXIT_CODE
	}
	r.result.Status = &spb.Status{Code: int32(code), Message: r.message}
	return r
}

// resolveProgram finds what a task runs: the container's command (looked up
// in the task's PATH, as Docker does; a relative path is relative to the
// task's working directory work) replaces the image's entrypoint, which is
// the local program Config.Images maps the image to; the container's args
// follow. It returns the executable and the whole argv.
func (s *Server) resolveProgram(c *runpb.Container, env []string, work string) (string, []string, error) {
	entrypoint := c.GetCommand()
	if len(entrypoint) == 0 {
		prog := s.cfg.Images[c.GetImage()]
		if prog == "" {
			return "", nil, fmt.Errorf("image %q has no local program (Config.Images) and the container sets no command", c.GetImage())
		}
		entrypoint = []string{prog}
	}
	path, err := lookPath(entrypoint[0], envValue(env, "PATH"), work)
	if err != nil {
		return "", nil, err
	}
	argv := append(slices.Clone(entrypoint), c.GetArgs()...)
	return path, argv, nil
}

// lookPath finds an executable as a container runtime does: a name with a
// slash is a path (relative ones from dir), any other is searched in the PATH
// directories.
func lookPath(file, path, dir string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("executable %q: %w", file, err)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		if p := filepath.Join(dir, file); checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in $PATH (%s)", file, path)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case fi.IsDir():
		return errors.New("is a directory")
	case fi.Mode()&0o111 == 0:
		return errors.New("is not executable")
	}
	return nil
}

// taskProc is a running task process with the plumbing of its output.
type taskProc struct {
	cmd     *exec.Cmd
	pid     int            // also its process group and session ID
	exited  chan struct{}  // closed once the process is reaped
	readers []*os.File     // our ends of its stdout and stderr pipes
	logs    []*os.File     // stdout.log and stderr.log
	copying sync.WaitGroup // the copying of stdout and stderr
}

// startProcess starts a task process in its own session and process group,
// in a fresh directory dir/work, with its output going to dir/stdout.log and
// dir/stderr.log (and to Config.Output, each line after prefix).
func (s *Server) startProcess(path string, argv, env []string, dir, prefix string) (_ *taskProc, err error) {
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("create the task directory: %w", err)
	}
	attr := sysProcAttr()
	if u := s.cfg.User; u != nil {
		if err := os.Chown(work, int(u.Uid), int(u.Gid)); err != nil {
			return nil, fmt.Errorf("hand the task directory to uid %d: %w", u.Uid, err)
		}
		if s.cfg.Workspace != "" {
			own := filepath.Join(dir, "workspace")
			if err := os.Mkdir(own, 0o755); err != nil {
				return nil, fmt.Errorf("create the task's workspace: %w", err)
			}
			if err := os.Chown(own, int(u.Uid), int(u.Gid)); err != nil {
				return nil, fmt.Errorf("hand the task's workspace to uid %d: %w", u.Uid, err)
			}
			// The wrapper execs the task: its pid stays the task's.
			path, argv = workspaceWrapper(s.cfg.Workspace, own, u, path, argv)
		} else {
			attr.Credential = u
		}
	}
	p := &taskProc{exited: make(chan struct{})}
	var writers []*os.File
	defer func() {
		for _, w := range writers {
			w.Close() // the child has its own copies
		}
		if err != nil {
			p.closeFiles()
		}
	}()
	for _, stream := range []string{"stdout", "stderr"} {
		log, err := os.Create(filepath.Join(dir, stream+".log"))
		if err != nil {
			return nil, fmt.Errorf("create the %s log: %w", stream, err)
		}
		p.logs = append(p.logs, log)
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("create the %s pipe: %w", stream, err)
		}
		p.readers, writers = append(p.readers, r), append(writers, w)
	}
	p.cmd = &exec.Cmd{
		Path:        path,
		Args:        argv,
		Env:         env,
		Dir:         work,
		Stdout:      writers[0],
		Stderr:      writers[1],
		SysProcAttr: attr,
	}
	if err := s.spawn(p.cmd); err != nil {
		return nil, err
	}
	p.pid = p.cmd.Process.Pid
	s.wg.Go(func() {
		_ = p.cmd.Wait() // the exit status is in ProcessState
		close(p.exited)
	})
	for i := range p.readers {
		p.copying.Add(1)
		s.wg.Go(func() {
			defer p.copying.Done()
			s.copyOutput(p.readers[i], p.logs[i], prefix)
		})
	}
	return p, nil
}

// teardown ends what is left of a task once its main process has exited, as
// Cloud Run tears down a container: every process of its group and session
// is killed and waited for (briefly: they are not our children), the output
// drained, the files closed. So once a task has ended, so have its processes.
func (p *taskProc) teardown() {
	signalTask(p.pid, syscall.SIGKILL)
	for wait := time.Now().Add(teardownTimeout); taskAlive(p.pid) && time.Now().Before(wait); {
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(outputDrainTimeout)
	for _, r := range p.readers {
		_ = r.SetReadDeadline(deadline)
	}
	p.copying.Wait()
	p.closeFiles()
}

func (p *taskProc) closeFiles() {
	for _, f := range append(p.readers, p.logs...) {
		f.Close()
	}
}

// copyOutput copies one output stream of a task to its log file and, when
// Config.Output is set, to it line by line after prefix. It returns at end of
// file or when the read deadline passes.
func (s *Server) copyOutput(r io.Reader, log io.Writer, prefix string) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			_, _ = log.Write(line)
			if s.cfg.Output != nil {
				s.writeOutput(prefix, line)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// writeOutput writes one line to Config.Output. Its errors are ignored: the
// console must never stall or fail a task.
func (s *Server) writeOutput(prefix string, line []byte) {
	b := make([]byte, 0, len(prefix)+len(line)+1)
	b = append(append(b, prefix...), line...)
	if b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	_, _ = s.cfg.Output.Write(b)
}

// mergeEnv merges KEY=VALUE lists: a later list wins by name, and each name
// keeps the place where it first appeared.
func mergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := at[k]; ok {
				out[i] = kv
				continue
			}
			at[k] = len(out)
			out = append(out, kv)
		}
	}
	if _, ok := at["PATH"]; !ok {
		out = append(out, "PATH="+defaultPath)
	}
	return out
}

// mergeEnvVars is mergeEnv for a container's env vars.
func mergeEnvVars(base, over []*runpb.EnvVar) []*runpb.EnvVar {
	out := slices.Clone(base)
	for _, v := range over {
		if i := slices.IndexFunc(out, func(b *runpb.EnvVar) bool { return b.GetName() == v.GetName() }); i >= 0 {
			out[i] = v
		} else {
			out = append(out, v)
		}
	}
	return out
}

func envStrings(vars []*runpb.EnvVar) []string {
	out := make([]string, 0, len(vars))
	for _, v := range vars {
		out = append(out, v.GetName()+"="+v.GetValue())
	}
	return out
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
