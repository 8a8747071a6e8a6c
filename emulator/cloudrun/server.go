package cloudrun

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// StartDelayAnnotation, set on a job to a Go duration ("3s"), overrides
// Config.StartDelay for that job's executions.
const StartDelayAnnotation = "emulator.sandrun.dev/start-delay"

// DefaultStopGrace is Cloud Run's time between SIGTERM and SIGKILL.
const DefaultStopGrace = 10 * time.Second

// Config says how the server runs tasks. The zero value works: no image has a
// program (so only containers that set a command can run), tasks start at
// once and get Cloud Run's 10 s to stop.
type Config struct {
	// Images maps a container image reference to the local executable that
	// stands for it, as the image's entrypoint: a path (relative to the
	// emulator's working directory) or a name looked up in the task's PATH.
	Images map[string]string
	// Env is the environment every task process starts with (before the
	// job's env and the run's overrides), e.g. PATH, HOME and the emulator
	// hosts. A task gets nothing of the server's own environment.
	Env []string
	// WorkDir is where each task attempt gets its own fresh working
	// directory and log files (default: a temporary directory that the
	// server creates and Close removes).
	WorkDir string
	// StartDelay models Cloud Run's cold start: how long every execution
	// waits before its tasks start. A job overrides it with the annotation
	// StartDelayAnnotation.
	StartDelay time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL when a task is
	// cancelled or times out (default DefaultStopGrace).
	StopGrace time.Duration
	// Output, if set, receives each task's stdout and stderr lines, prefixed
	// with the execution and task, in addition to the task's log files.
	Output io.Writer
	// Logger receives the emulator's own events (default: discard).
	Logger *slog.Logger
	// OnTaskStart, if set, is called with the execution's full name each
	// time a task's process has started (after any simulated cold start),
	// so that the suite's call log can see a host come up.
	OnTaskStart func(execution string)
	// User, if set, is the user and group every task runs as, as a
	// container image's USER makes its entrypoint run (the executor's
	// image: uid 1000); the server must be root to set one. Each task's
	// working directory then belongs to it (a WorkDir given must be
	// searchable by it). Nil runs tasks as the server's own user.
	User *syscall.Credential
	// Workspace, if set with User, is a directory path (the executor's
	// image uses /workspace) that each task sees as an empty directory of
	// its own, owned by User and its working directory, as a container
	// sees its image's directory: the task runs in a mount namespace of
	// its own where the path is a bind mount of a directory beside its
	// work directory. The server must be root, and util-linux's unshare,
	// mount and setpriv must be installed (CheckWorkspace says whether
	// they are).
	Workspace string
}

// Server is the Cloud Run Admin API v2 fake: it serves the Jobs, Executions,
// Tasks and Operations services and runs each task as a local process. All
// its methods are safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger
	// spawn starts a task's process; the fuzz test replaces it so that no
	// fuzzed request can start one.
	spawn func(*exec.Cmd) error

	wg      sync.WaitGroup // execution runners, task attempts and job deletions
	closing chan struct{}  // closed by Close
	outMu   sync.Mutex     // serializes writes to cfg.Output

	// mu guards everything below and every job, execution, task and
	// operation reachable from it.
	mu          sync.Mutex
	closed      bool
	workDir     string // created on first use when cfg.WorkDir is empty
	ownsWorkDir bool
	jobs        map[string]*job       // by full name
	executions  map[string]*execution // by full name
	// active holds the executions whose runner has not finished, including
	// those of deleted jobs, which are no longer in executions.
	active map[*execution]struct{}
	ops    map[string]*operation // by full name
}

// New returns a server configured by cfg. It starts nothing until a job runs.
func New(cfg Config) *Server {
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.StartDelay < 0 {
		cfg.StartDelay = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Images = maps.Clone(cfg.Images)
	for image, prog := range cfg.Images {
		// A relative path names a program of this machine from here, not
		// from the task's working directory.
		if strings.Contains(prog, "/") && !filepath.IsAbs(prog) {
			if abs, err := filepath.Abs(prog); err == nil {
				cfg.Images[image] = abs
			}
		}
	}
	cfg.Env = slices.Clone(cfg.Env)
	return &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		spawn:      (*exec.Cmd).Start,
		closing:    make(chan struct{}),
		workDir:    cfg.WorkDir,
		jobs:       make(map[string]*job),
		executions: make(map[string]*execution),
		active:     make(map[*execution]struct{}),
		ops:        make(map[string]*operation),
	}
}

// Register registers the Jobs, Executions, Tasks and Operations services on r.
// Methods the emulator does not implement (IAM) answer Unimplemented.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	runpb.RegisterJobsServer(r, jobsAPI{s: s})
	runpb.RegisterExecutionsServer(r, executionsAPI{s: s})
	runpb.RegisterTasksServer(r, tasksAPI{s: s})
	longrunningpb.RegisterOperationsServer(r, operationsAPI{s: s})
}

// KillExecution sends SIGKILL to every running task of the named execution,
// to the whole process group and session, as a crash of its hosts would. The
// tasks fail ("Container terminated on signal 9.") and are retried if their
// job allows it. It fails when the execution does not exist or has no
// running task.
func (s *Server) KillExecution(name string) error {
	pids, err := s.runningTasks(name, "kill")
	if err != nil {
		return err
	}
	for _, pid := range pids {
		signalTask(pid, syscall.SIGKILL)
	}
	s.log.Info("killed execution", "event", "cloudrun.execution.killed", "execution", name, "processes", len(pids))
	return nil
}

// MigrateExecution puts every running task of the named execution through
// a maintenance event, as Cloud Run does when it moves a task to another
// machine: SIGTSTP to the task's main process (the container's
// entrypoint), notice later every process of the task paused (SIGSTOP) for
// pause, then every process it paused continued and SIGCONT to the main
// process. Processes stopped already stay stopped. It returns when the
// tasks run again, or when ctx ends, which resumes them at once. Cloud Run
// gives a 10 s notice and a pause it calls brief; the caller chooses both.
// The wall clock goes on during the pause, here as there. Not reproduced:
// the move itself (the outbound connections it breaks).
func (s *Server) MigrateExecution(ctx context.Context, name string, notice, pause time.Duration) error {
	pids, err := s.runningTasks(name, "migrate")
	if err != nil {
		return err
	}
	wait := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	s.log.Info("maintenance event: task will be migrated", "event", "cloudrun.execution.migrating", "execution", name,
		"notice_seconds", notice.Seconds(), "pause_seconds", pause.Seconds())
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTSTP)
	}
	wait(notice)
	var paused []int
	for _, pid := range pids {
		paused = append(paused, freezeTask(pid)...)
	}
	wait(pause)
	thawTask(paused)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	s.log.Info("maintenance event: task migrated", "event", "cloudrun.execution.migrated", "execution", name, "processes_paused", len(paused))
	return ctx.Err()
}

// runningTasks returns the main processes of the named execution's running
// tasks, for an action (verb) on them: an error when the name is not an
// execution's, or it has none.
func (s *Server) runningTasks(name, verb string) ([]int, error) {
	if _, err := parseExecution(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	e := s.executions[name]
	pids := e.taskPIDs()
	s.mu.Unlock()
	switch {
	case e == nil:
		return nil, status.Errorf(codes.NotFound, "execution %s not found", name)
	case len(pids) == 0:
		return nil, status.Errorf(codes.FailedPrecondition, "execution %s has no running task to %s", name, verb)
	}
	return pids, nil
}

// TaskPIDs returns the process ids of the named execution's running tasks:
// each task's main process, the container's entrypoint. Tests and
// benchmarks measure an execution's processes with it.
func (s *Server) TaskPIDs(name string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.executions[name].taskPIDs()
}

// taskPIDs are the pids of e's running tasks, none for a nil e. The
// server's lock must be held.
func (e *execution) taskPIDs() []int {
	if e == nil {
		return nil
	}
	var pids []int
	for _, t := range e.tasks {
		if t.proc != nil {
			pids = append(pids, t.proc.pid)
		}
	}
	return pids
}

// RunningExecutions returns the names of the executions that have at least
// one task process running, sorted.
func (s *Server) RunningExecutions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name, e := range s.executions {
		if slices.ContainsFunc(e.tasks, func(t *task) bool { return t.proc != nil }) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Close cancels every execution, which ends every task process (whole process
// groups and sessions: SIGTERM, then SIGKILL after StopGrace), waits for them
// and for every goroutine of the server, and removes the work directory if
// the server created it. If ctx ends first, the remaining processes are
// killed at once and Close still waits for them (which takes moments), then
// reports ctx's error. After Close, requests that would change anything
// fail with Unavailable; reads still answer.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	for e := range s.active {
		s.requestCancelLocked(e, "the emulator shut down")
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		n := s.killAll()
		<-done
		err = fmt.Errorf("close cloud run emulator: %w (killed %d task processes without grace)", ctx.Err(), n)
	}

	s.mu.Lock()
	dir, owned := s.workDir, s.ownsWorkDir
	s.ownsWorkDir = false
	s.mu.Unlock()
	if owned {
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove work dir: %w", rmErr))
		}
	}
	s.log.Info("cloud run emulator closed", "event", "cloudrun.closed")
	return err
}

// killAll sends SIGKILL to every running task and returns how many it hit.
func (s *Server) killAll() int {
	s.mu.Lock()
	var pids []int
	for e := range s.active {
		for _, t := range e.tasks {
			if t.proc != nil {
				pids = append(pids, t.proc.pid)
			}
		}
	}
	s.mu.Unlock()
	for _, pid := range pids {
		signalTask(pid, syscall.SIGKILL)
	}
	return len(pids)
}

// checkOpenLocked fails once the server is closed: nothing new may start.
func (s *Server) checkOpenLocked() error {
	if s.closed {
		return status.Error(codes.Unavailable, "the Cloud Run emulator is shut down")
	}
	return nil
}

// workDirLocked returns the root of the task directories, creating a
// temporary one on first use when Config.WorkDir is empty.
func (s *Server) workDirLocked() (string, error) {
	if s.workDir != "" {
		// Absolute, so that log URIs are valid file:// URIs.
		dir, err := filepath.Abs(s.workDir)
		if err != nil {
			return "", fmt.Errorf("work dir %s: %w", s.workDir, err)
		}
		s.workDir = dir
		return dir, nil
	}
	dir, err := os.MkdirTemp("", "sandrun-cloudrun-")
	if err != nil {
		return "", fmt.Errorf("create work dir: %w", err)
	}
	if s.cfg.User != nil {
		// The tasks' user must reach its working directory below.
		if err := os.Chmod(dir, 0o755); err != nil {
			return "", fmt.Errorf("open work dir %s to uid %d: %w", dir, s.cfg.User.Uid, err)
		}
	}
	s.workDir, s.ownsWorkDir = dir, true
	return dir, nil
}

func newUID() string { return uuid.NewString() }

// etagOf is a fingerprint of m: any change to m changes it.
func etagOf(m proto.Message) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("\"%016x\"", h.Sum64())
}

// checkEtag fails when the caller sent an etag that is not current.
func checkEtag(what, name, sent, current string) error {
	if sent != "" && sent != current {
		return status.Errorf(codes.Aborted, "etag %s does not match the current etag of %s %s; read it again", sent, what, name)
	}
	return nil
}
