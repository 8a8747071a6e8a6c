package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Command is one request to run a script in a session.
type Command struct {
	// Script is bash source, run as is in the session's shell state.
	Script string
	// Env is added for this command only. After the command, each of these
	// variables goes back to its session value (or absence) unless the
	// command gave it a different value or unset it.
	Env map[string]string
	// Dir is where this command starts, for this command only; a relative
	// Dir resolves against the session cwd. It must exist. The session cwd
	// after the command is unchanged by Dir, unless the command cd'ed
	// somewhere else.
	Dir string
	// Timeout bounds the command; 0 means none. When it expires the whole
	// process group gets SIGTERM, then SIGKILL after KillGrace.
	Timeout time.Duration
	// KillGrace is how long a terminated group has between SIGTERM and
	// SIGKILL; 0 means DefaultKillGrace.
	KillGrace time.Duration
	// Stdin is the command's standard input; nil means /dev/null. An
	// *os.File is handed to the process as is: to keep writing to a
	// command (or to a background process it leaves), pass the read end of
	// an os.Pipe and keep the write end. Any other reader is copied by a
	// goroutine that is cut off StdinWaitDelay after bash exits.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output; nil means /dev/null.
	// They are files, so that the caller can read the output so far while
	// the command runs, and may be the same file. The command writes to a
	// pipe that the package copies to the end of the file (see
	// Result.StdoutBytes): a command that reopens its output
	// (/dev/stdout) reopens the pipe and loses nothing.
	Stdout, Stderr *os.File
	// MaxOutput, when above 0, bounds what each of Stdout and Stderr
	// receives: past it, the command's output is still read and counted
	// (Result.StdoutBytes, StderrBytes), so the command neither blocks nor
	// fails, but dropped.
	MaxOutput int64
	// Credential, if set, runs the command as this user and group. Its
	// state file is then one in spoolDir chowned to it (it may not open
	// this process's memfd), and spoolDir must be searchable by it.
	Credential *syscall.Credential
}

// Result tells how a command ended and the session state it left.
type Result struct {
	// ExitCode is bash's exit status: 128+n when a signal n killed it (as
	// a shell reports it in $?), TimeoutExitCode when the Timeout or the
	// context's deadline ended it.
	ExitCode int
	// Signal names the signal that killed bash ("SIGKILL"), if one did.
	Signal string
	// TimedOut is set when Timeout or the context's deadline ended the
	// command; Canceled when the context was canceled otherwise.
	TimedOut bool
	Canceled bool
	// Duration is from start to bash's exit.
	Duration time.Duration
	// State is the session state after the command. When StateSaved is
	// false it is the state the command started from.
	State State
	// StateSaved reports whether the command's shell saved its state. It
	// does not when the shell could not run its EXIT trap: the command
	// exec'd another program, bash was killed by SIGKILL, or the command
	// replaced the EXIT trap and then left with exit or an error. Also when
	// the command exported more environment than the next command's bash
	// could be started with (StateError says so).
	StateSaved bool
	// StateError says why the shell failed to save its state when it
	// tried (StateSaved is then false): it wraps ErrStateTooLarge when
	// the command exported more than the next command's bash could be
	// started with.
	// The command ran; its state change is not kept.
	StateError error
	// CwdFallback reports that the session cwd no longer existed and the
	// command started in the fallback directory instead.
	CwdFallback bool
	// StdoutBytes and StderrBytes are how much of Stdout and Stderr is the
	// command's output: every byte written until bash exited. Leftovers
	// that write later append to the same file, after them; they never
	// change those bytes. When Stdout and Stderr are the same file, both
	// count that file. Past Command.MaxOutput they count what the command
	// wrote, of which the file holds the first MaxOutput bytes.
	StdoutBytes, StderrBytes int64
	// Leftovers are the pids of the command's process group still alive
	// after bash exited (`server &`), in increasing order. Run does not kill
	// them, except on timeout or cancellation, where the whole group is
	// ended before Wait returns.
	Leftovers []int
}

const (
	// TimeoutExitCode is the ExitCode of a command that timed out, as
	// coreutils timeout reports it.
	TimeoutExitCode = 124
	// DefaultKillGrace is the grace between SIGTERM and SIGKILL.
	DefaultKillGrace = 2 * time.Second
	// StdinWaitDelay bounds how long a non-file Stdin is still copied
	// after bash exits.
	StdinWaitDelay = 100 * time.Millisecond
	// killWait bounds how long Wait waits for a SIGKILLed group to vanish
	// (a process stuck in uninterruptible sleep does not die at once).
	killWait = 5 * time.Second
)

// Running is a command that has started. Its methods are safe for
// concurrent use.
type Running struct {
	cmd     *exec.Cmd
	pgid    int
	started time.Time
	grace   time.Duration
	state   *stateFile
	// stdout and stderr carry the output (nil: /dev/null); they are the
	// same pipe when Command's Stdout and Stderr are the same file.
	stdout, stderr *outputPipe
	session        State // the state the command started from
	command        Command
	startDir       string
	fallback       bool

	// outputClosed is closed once every output pipe's copy ended;
	// draining counts the copies still going.
	outputClosed chan struct{}
	draining     atomic.Int32

	exited   chan struct{} // closed once bash has been reaped
	exitedAt time.Time
	waitErr  error

	// reason is written and read by the supervise goroutine only.
	reason stopReason
	// killed is set once Signal sent SIGKILL: the group is then awaited
	// before Leftovers are listed, so that processes already dying are
	// not reported as left running.
	killed atomic.Bool

	done chan struct{} // closed once res and err are final
	res  Result
	err  error
}

type stopReason int

const (
	notStopped stopReason = iota
	stoppedTimeout
	stoppedCanceled
)

// Run runs cmd in the session state st and waits for it. See Start.
func Run(ctx context.Context, spoolDir string, st State, cmd Command) (Result, error) {
	r, err := Start(ctx, spoolDir, st, cmd)
	if err != nil {
		return Result{}, err
	}
	return r.Wait()
}

// Start runs cmd in a fresh bash that begins in the session state st: its
// cwd, and exactly st.Env as environment (nothing of the caller's
// environment). The command runs in a process group of its own, led by
// bash, so that Signal, a timeout or ctx reach everything it started
// without leaving the group.
//
// If st.Cwd is empty or no longer a directory, the command starts in the
// fallback directory: st.Env["HOME"] if that is a directory, else "/".
//
// spoolDir holds the command's state file for as long as it runs, where
// the state file is not a memfd (see stateFile): with a Credential, where
// memfds are missing, and in a process that is not dumpable, as the
// executor is in production; Wait removes it. Canceling ctx (or its
// deadline) ends the command as a timeout does.
//
// Start returns an error wrapping ErrInvalid for a State or Command it
// refuses, one wrapping fs.ErrNotExist for a Dir that does not exist, and
// others when bash cannot be started.
func Start(ctx context.Context, spoolDir string, st State, cmd Command) (*Running, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if st.Cwd != "" && !filepath.IsAbs(st.Cwd) {
		return nil, fmt.Errorf("session cwd %q is not absolute: %w", st.Cwd, ErrInvalid)
	}
	if err := validateEnv("session env", st.Env); err != nil {
		return nil, err
	}
	if err := validateEnv("command env", cmd.Env); err != nil {
		return nil, err
	}
	bash, err := findBash()
	if err != nil {
		return nil, err
	}

	fallback := fallbackDir(st)
	startDir, cwdFallback := st.Cwd, false
	if !isDir(st.Cwd) {
		startDir, cwdFallback = fallback, st.Cwd != ""
	}
	if cmd.Dir != "" {
		dir := cmd.Dir
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(startDir, dir)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("command dir: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("command dir %s: %w", dir, syscall.ENOTDIR)
		}
		startDir = filepath.Clean(dir)
	}

	state, err := newStateFile(spoolDir, cmd.Credential)
	if err != nil {
		return nil, err
	}
	cleanup := state.close
	stdout, stderr, err := outputPipes(cmd.Stdout, cmd.Stderr, cmd.MaxOutput)
	if err != nil {
		cleanup()
		return nil, err
	}
	cleanup = func() {
		state.close()
		for _, p := range uniquePipes(stdout, stderr) {
			p.abandon()
		}
	}

	c := &exec.Cmd{
		Path: bash,
		Args: wrapperArgs(state.path, startDir, fallback, cmd.Script),
		// Never nil: a nil Env would make os/exec pass the caller's own
		// environment, credentials included.
		Env: commandEnv(st.Env, cmd.Env),
		// The wrapper cd's to the start directory itself; starting in /
		// keeps bash from complaining about a cwd its user cannot read.
		Dir:         "/",
		Stdout:      pipeWriter(stdout),
		Stderr:      pipeWriter(stderr),
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: cmd.Credential},
	}
	if cmd.Stdin != nil {
		c.Stdin = cmd.Stdin
		if _, isFile := cmd.Stdin.(*os.File); !isFile {
			c.WaitDelay = StdinWaitDelay
		}
	}
	grace := cmd.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	r := &Running{
		cmd:          c,
		grace:        grace,
		state:        state,
		stdout:       stdout,
		stderr:       stderr,
		session:      st.Clone(),
		command:      cmd,
		startDir:     startDir,
		fallback:     cwdFallback,
		exited:       make(chan struct{}),
		done:         make(chan struct{}),
		outputClosed: make(chan struct{}),
	}
	r.started = time.Now()
	bashes.Lock()
	bashes.starting++
	bashes.Unlock()
	err = startNiced(c)
	bashes.Lock()
	bashes.starting--
	if err == nil {
		bashes.pids[c.Process.Pid] = true
	}
	bashes.Unlock()
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("start bash: %w", err)
	}
	r.pgid = c.Process.Pid
	// bash and its children hold the write ends now; once they are all
	// gone, the drains see the end of their pipes.
	pipes := uniquePipes(stdout, stderr)
	r.draining.Store(int32(len(pipes)))
	if len(pipes) == 0 {
		close(r.outputClosed)
	}
	for _, p := range pipes {
		p.w.Close()
		go func() {
			p.drain()
			if r.draining.Add(-1) == 0 {
				close(r.outputClosed)
			}
		}()
	}
	go r.reap()
	go r.supervise(ctx, cmd.Timeout)
	return r, nil
}

// bashes knows the bash processes of this process's commands: the pids of
// those started and not reaped yet, and how many Starts are under way,
// whose pid is not known until the fork returns.
var bashes = struct {
	sync.Mutex
	pids     map[int]bool
	starting int
}{pids: map[int]bool{}}

// MayBeCommandBash reports whether pid, a process that runs a command's
// command line (CommandScript), may be the bash of a command that Start
// started or is starting in this process. A subshell or job that such a
// bash forked runs the same command line until it execs, and after the
// bash exited it is a child of this process too (an orphan given to a
// subreaper): it is the one that MayBeCommandBash answers false for,
// unless a Start is under way, as the pid of its bash is not known yet.
func MayBeCommandBash(pid int) bool {
	bashes.Lock()
	defer bashes.Unlock()
	return bashes.pids[pid] || bashes.starting > 0
}

// Pid returns bash's pid, which is also the command's process group id.
func (r *Running) Pid() int { return r.pgid }

// Done is closed when the result is final; Wait then returns at once.
func (r *Running) Done() <-chan struct{} { return r.done }

// OutputClosed is closed once the copies of the command's output into
// Stdout and Stderr have ended: no process holds the output pipes any
// more, and everything written to them is in the files. Until then the
// command's leftovers may append to the files (see Result.StdoutBytes).
func (r *Running) OutputClosed() <-chan struct{} { return r.outputClosed }

// Signal sends sig to the command's whole process group. It returns
// os.ErrProcessDone once bash has exited: what remains of the group then
// belongs to the caller as Leftovers.
func (r *Running) Signal(sig syscall.Signal) error {
	select {
	case <-r.exited:
		return os.ErrProcessDone
	default:
	}
	// bash is not reaped yet, so the group id cannot have been reused.
	if sig == syscall.SIGKILL {
		r.killed.Store(true)
	}
	var before map[int]string
	if sig != syscall.SIGKILL {
		before = groupPrograms(r.pgid)
	}
	if err := syscall.Kill(-r.pgid, sig); err != nil {
		return fmt.Errorf("signal process group %d: %w", r.pgid, err)
	}
	if sig != syscall.SIGKILL {
		// As in stop: a command caught starting may miss the signal
		// (procs' TestKill saw a background `sleep 600` outlive SIGTERM
		// until SIGKILL). The caller may hold a lock: resend apart.
		go func() {
			t := time.NewTimer(lateSignalDelay)
			defer t.Stop()
			select {
			case <-r.exited:
			case <-t.C:
				r.signalLate(before, sig)
			}
		}()
	}
	return nil
}

// Wait waits for the command to end and returns its Result. A non-nil
// error (a malformed state file) comes with a Result that still tells how
// the command ended, with the State it started from.
func (r *Running) Wait() (Result, error) {
	<-r.done
	return r.res, r.err
}

func (r *Running) reap() {
	// Wait alone would block a thread in waitid for as long as the
	// command runs, and while a thread is in a system call the Go
	// runtime's monitor thread wakes every few tens of microseconds: about
	// half a millisecond of CPU for a 10 ms command on the development
	// machine. Parked on bash's pidfd instead, the goroutine costs nothing
	// until bash exits, and Wait then returns at once.
	awaitChildExit(r.cmd.Process.Pid)
	r.waitErr = r.cmd.Wait()
	bashes.Lock()
	delete(bashes.pids, r.cmd.Process.Pid)
	bashes.Unlock()
	r.exitedAt = time.Now()
	close(r.exited)
}

// supervise ends the command on timeout or cancellation, then builds the
// result once bash is gone.
func (r *Running) supervise(ctx context.Context, timeout time.Duration) {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-r.exited:
	case <-expired:
		r.stopUnlessExited(stoppedTimeout)
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.stopUnlessExited(stoppedTimeout)
		} else {
			r.stopUnlessExited(stoppedCanceled)
		}
	}
	<-r.exited
	if r.killed.Load() {
		awaitGroupExit(r.pgid, time.Now().Add(killWait))
	}
	r.res, r.err = r.result()
	if err := r.cutOutput(); err != nil && r.err == nil {
		r.err = err
	}
	r.state.close()
	close(r.done)
}

// stopUnlessExited stops the command unless bash exited at the same time:
// a finished command's leftovers are the caller's, not the timeout's.
func (r *Running) stopUnlessExited(reason stopReason) {
	select {
	case <-r.exited:
	default:
		r.stop(reason)
	}
}

// stop ends the whole group: SIGTERM, then up to the grace period for
// bash and everything in its group to exit (bash runs its EXIT trap on
// SIGTERM, so the state is usually saved), then SIGKILL for what is left.
// It returns once the group is gone or killWait has passed.
func (r *Running) stop(reason stopReason) {
	r.reason = reason
	deadline := time.Now().Add(r.grace)
	before := groupPrograms(r.pgid)
	_ = syscall.Kill(-r.pgid, syscall.SIGTERM)
	t := time.NewTimer(r.grace)
	late := time.NewTimer(min(lateSignalDelay, r.grace))
	select {
	case <-r.exited:
	case <-late.C:
		r.signalLate(before, syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-t.C:
		}
	}
	t.Stop()
	late.Stop()
	awaitGroupExit(r.pgid, deadline)

	select {
	case <-r.exited:
		// bash is reaped: the group id stays reserved only while members
		// remain, so kill only if there are some.
		if members, _ := groupMembers(r.pgid); len(members) == 0 {
			return
		}
	default:
	}
	_ = syscall.Kill(-r.pgid, syscall.SIGKILL)
	<-r.exited
	awaitGroupExit(r.pgid, time.Now().Add(killWait))
}

// lateSignalDelay is how long after SIGTERM stop looks for members of the
// group that missed it.
const lateSignalDelay = 100 * time.Millisecond

// signalLate sends sig (SIGTERM from stop) to the members of the group
// that missed the first one: a process bash forked as the signal came (it did not exist
// yet, or it was still bash between fork and exec, whose handler only
// noted the signal before the exec dropped it). bash itself noted the
// signal but acts on it only when its child ends, so without this a
// command canceled as it starts runs until SIGKILL (shell's
// TestContextCancelEndsCommand failed 7 times in 200). A member that
// received the first signal, and may be handling it, gets no second one;
// and only a command caught starting (nothing but bash in its group at
// the first signal) is looked at, so that what a started command's own
// TERM trap runs is left alone.
func (r *Running) signalLate(before map[int]string, sig syscall.Signal) {
	for _, program := range before {
		if program != "bash" {
			return
		}
	}
	for pid, program := range groupPrograms(r.pgid) {
		if was, ok := before[pid]; !ok || was != program {
			_ = syscall.Kill(pid, sig)
		}
	}
}

func (r *Running) result() (Result, error) {
	res := Result{
		Duration:    r.exitedAt.Sub(r.started),
		CwdFallback: r.fallback,
		State:       r.session.Clone(),
	}
	if r.cmd.ProcessState == nil {
		return res, fmt.Errorf("wait for bash: %w", r.waitErr)
	}
	ws, _ := r.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		res.ExitCode = 128 + int(ws.Signal())
		res.Signal = unix.SignalName(ws.Signal())
	default:
		res.ExitCode = ws.ExitStatus()
	}
	switch r.reason {
	case stoppedTimeout:
		res.TimedOut, res.ExitCode = true, TimeoutExitCode
	case stoppedCanceled:
		res.Canceled = true
	}

	members, err := groupMembers(r.pgid)
	if err != nil {
		return res, fmt.Errorf("list leftovers of process group %d: %w", r.pgid, err)
	}
	res.Leftovers = members

	data, err := io.ReadAll(io.NewSectionReader(r.state.f, 0, maxStateSize+1))
	if err != nil {
		return res, fmt.Errorf("read state file %s: %w", r.state.path, err)
	}
	if len(data) > maxStateSize {
		res.StateError = fmt.Errorf("save shell state: state file over %d bytes: %w", maxStateSize, ErrStateTooLarge)
		return res, nil
	}
	after, err := parseState(data)
	switch {
	case errors.Is(err, errIncomplete):
		return res, nil
	case err != nil:
		return res, fmt.Errorf("state file %s: %w", r.state.path, err)
	}
	after = r.forgetCommandOnly(after)
	// The shell wrote its variables with builtins, which no size limits:
	// the state is kept only if the next command's bash can be started
	// with it, given a script of its own that fits in what is left.
	next := wrapperArgs(r.state.longestNext(), after.Cwd, fallbackDir(after), "")
	if err := execFits(r.cmd.Path, next, commandEnv(after.Env, nil)); err != nil {
		res.StateError = fmt.Errorf("save shell state: %w", err)
		return res, nil
	}
	res.State, res.StateSaved = after, true
	return res, nil
}

// forgetCommandOnly takes out of the state a command left what only the
// Command asked for: its Env and Dir. A value the command itself changed
// stays.
func (r *Running) forgetCommandOnly(after State) State {
	for name, value := range r.command.Env {
		if got, ok := after.Env[name]; !ok || got != value {
			continue // unset or changed by the command: that persists
		}
		if orig, ok := r.session.Env[name]; ok {
			after.Env[name] = orig
		} else {
			delete(after.Env, name)
		}
	}
	if r.command.Dir != "" && after.Cwd == r.startDir {
		after.Cwd = r.session.Cwd
	}
	return after
}

// commandEnv is the environment bash starts with: the session's, then the
// command's on top, without the variables bash maintains itself.
func commandEnv(session, command map[string]string) []string {
	merged := maps.Clone(session)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, command)
	env := make([]string, 0, len(merged))
	for _, name := range slices.Sorted(maps.Keys(merged)) {
		if dropped[name] {
			continue
		}
		env = append(env, name+"="+merged[name])
	}
	return env
}

// stateFile is the file a command's shell writes its state to (see
// wrapper.go), which Wait reads once bash has exited.
//
// It is a memfd, memory that no file system sees, which bash opens by the
// path that /proc gives to this process's descriptor of it: it costs
// nothing to make or remove. A file in the spool directory, named at
// random and removed by Wait, cost about 100 µs more CPU per command on
// the development machine's ext4 (in this process and in bash together).
// It is still what a command that runs as another user gets, as that user
// may not open this process's descriptors, and where a bash of this
// process's own could not open one (checked once, see memStateFilesWork):
// no memfds, no /proc, or a process that others of its user may not look
// into (not dumpable, or with capabilities that bash would not have).
//
// That last case is production's: the executor makes itself not dumpable
// before its first command, to keep its token from its commands, and runs
// as uid 1000, so its commands get spool files. Only a bash that runs as
// root (a host run as root, the benchmarks, most tests) may open a memfd
// of a process that is not dumpable. TestAsTheImagesUser runs this
// package's tests as uid 1000, dumpable and not, to check both paths.
type stateFile struct {
	f    *os.File
	path string // what bash opens
	// spoolDir is where the file was made, if in the spool directory;
	// empty for a memfd.
	spoolDir string
}

// stateFilePattern names the state files in the spool directory: os.CreateTemp
// puts a random number of at most 10 digits (a uint32) in place of the *.
const stateFilePattern = "state-*"

func newStateFile(spoolDir string, cred *syscall.Credential) (*stateFile, error) {
	if cred == nil && memStateFilesWork() {
		if f, path, err := memStateFile(); err == nil {
			return &stateFile{f: f, path: path}, nil
		}
	}
	f, err := os.CreateTemp(spoolDir, stateFilePattern)
	if err != nil {
		return nil, fmt.Errorf("create state file: %w", err)
	}
	s := &stateFile{f: f, path: f.Name(), spoolDir: spoolDir}
	if cred != nil {
		if err := f.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			s.close()
			return nil, fmt.Errorf("hand state file to uid %d: %w", cred.Uid, err)
		}
	}
	return s, nil
}

// memStateFilesWork reports whether a bash started as Start starts one
// (without a Credential) can write a memfd state file: tried once, as the
// rules that decide it (ptrace access to this process) are many. Where
// one rule alone already says no, as in production's executor (not
// dumpable, not root), no bash is started to try: the try would sit on
// the first command's path, a new session's.
var memStateFilesWork = sync.OnceValue(func() bool {
	if !othersMayOpenOwnFds() {
		return false
	}
	bash, err := findBash()
	if err != nil {
		return false
	}
	f, path, err := memStateFile()
	if err != nil {
		return false
	}
	defer f.Close()
	c := &exec.Cmd{
		Path: bash, Args: []string{"bash", "-c", `builtin printf ok >"$1"`, "bash", path},
		Env: []string{}, Dir: "/", SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := c.Run(); err != nil {
		return false
	}
	got, err := io.ReadAll(io.NewSectionReader(f, 0, 3))
	return err == nil && string(got) == "ok"
})

func (s *stateFile) close() {
	s.f.Close()
	if s.spoolDir != "" {
		os.Remove(s.path)
	}
}

// longestNext is the longest path the next command's state file can have
// where this one's is: the next command's bash gets it in its argv.
func (s *stateFile) longestNext() string {
	const maxDigits = "4294967295" // a uint32: the pid, the descriptor, CreateTemp's number
	if s.spoolDir == "" {
		return memStatePath(maxDigits, maxDigits)
	}
	return filepath.Join(s.spoolDir, strings.Replace(stateFilePattern, "*", maxDigits, 1))
}

func fallbackDir(st State) string {
	if home := st.Env["HOME"]; filepath.IsAbs(home) && isDir(home) {
		return filepath.Clean(home)
	}
	return "/"
}

func isDir(path string) bool {
	if path == "" {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// findBash locates bash in the system directories once. The session's
// PATH is not used: it is the command's to change, and the caller's is not
// the sandbox's.
var findBash = sync.OnceValues(func() (string, error) {
	bash, err := firstExecutable("/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash")
	if err != nil {
		return "", fmt.Errorf("find bash: %w", err)
	}
	return bash, nil
})

func firstExecutable(paths ...string) (string, error) {
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("none of %v is executable: %w", paths, os.ErrNotExist)
}
