package procs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/sandrun/sandrun/internal/shell"
)

// Config configures a Manager. Zero values take the documented defaults.
type Config struct {
	// Dir holds the processes' log files and the shell's state files
	// (shell.Start's spoolDir). It is created if missing. The Manager owns
	// the files it puts there and removes them on Close.
	Dir string
	// Epoch is the host's lease epoch, used in each ProcessKey.
	Epoch int64
	// Registry, if set, is told about starts and ends.
	Registry Registry
	// Sink, if set, receives copies of the logs.
	Sink LogSink
	// ShipInterval is how often logs that changed are shipped; 0 means
	// DefaultShipInterval. It also paces the reaping of orphaned zombies
	// (see BecomeSubreaper).
	ShipInterval time.Duration
	// ShipLimit is how many of each stream's last bytes are shipped; 0
	// means DefaultShipLimit.
	ShipLimit int64
	// CloseGrace is how long Close gives processes between SIGTERM and
	// SIGKILL; 0 means DefaultCloseGrace.
	CloseGrace time.Duration
	// Logger receives the Manager's events; nil means slog.Default().
	Logger *slog.Logger
	// OwnsOrphans says that the calling process is a child subreaper
	// (BecomeSubreaper) and that this Manager is the only one in it, as in
	// the executor: every orphan that comes to the process is then a
	// session process, adopted even when nothing ties it to a command any
	// more (it left the command's process group and its parent died), and
	// Close ends every process below this one. Without it, only orphans
	// of the session's process groups are adopted. See escapes.go.
	OwnsOrphans bool
}

// Manager runs and tracks the processes of one session on one host. Its
// methods are safe for concurrent use.
type Manager struct {
	cfg        Config
	log        *slog.Logger
	createdDir bool

	// bg is the context of the processes (shell.Start), the sink and the
	// registry; it is canceled only when Close gives up waiting.
	bg       context.Context
	cancelBg context.CancelFunc

	// intake is held shared by Start while it starts a process and taken
	// exclusively by Close to stop intake.
	intake  sync.RWMutex
	closing atomic.Bool
	seq     atomic.Int64
	// liveMetric follows live (below) for the hosts' metrics.
	liveMetric metric.Int64UpDownCounter

	mu      sync.Mutex
	procs   map[int]*proc // background and adopted, by pid; the newest wins
	fg      *proc
	lastFg  *proc         // the latest foreground command, once it ended
	groups  map[int]*proc // process groups of the session's commands, by pgid
	files   []*logFiles   // released by Close
	live    int
	liveCh  chan struct{}
	closeOp *killOp // set when Close begins
	closed  bool    // Close released everything: nothing may start

	finals  fifo[*proc] // ended processes whose logs get a last ship
	events  fifo[regEvent]
	hkDone  chan struct{}
	regDone chan struct{}
	stop    chan struct{} // closed when Close ends: escalations give up
	wg      sync.WaitGroup
	once    sync.Once
}

type kind int

const (
	kindBackground kind = iota
	kindAdopted
	kindForeground
)

// proc is one process. The fields above mu's line are set before the proc
// is shared and never change.
type proc struct {
	pid     int
	kind    kind
	started time.Time
	pgid    int
	logs    *logFiles
	run     *shell.Running // kindBackground
	sig     Signaler       // kindForeground
	pidfd   *os.File       // kindAdopted
	ticks   uint64         // start time in clock ticks after boot (0: unknown)
	// parent is the tracked process it was found under (the command that
	// started it, a subshell); nil for a command.
	parent *proc
	stdin  *os.File      // write end of the stdin pipe, if keepStdin
	done   chan struct{} // closed once the process ended

	stdinMu   sync.Mutex  // serializes writes and the closing of stdin
	stdinOpen atomic.Bool // guarded by stdinMu for writes

	// Guarded by Manager.mu.
	command  string // what it runs: read again for an adopted one (refreshCommands)
	status   Status
	exitCode *int
	signal   string
	reason   string
	finished time.Time
	kill     *killOp        // the latest kill that reached it
	lastSig  syscall.Signal // the last signal sent to it
	// signalledAs: kindAdopted, the program it ran (/proc/PID/comm)
	// when a kill's first signal was sent (resignalStarted).
	signalledAs string
	// logsShared: kindForeground, processes found below it at a kill
	// were adopted with its logs, which End must then keep.
	logsShared bool

	// Owned by the housekeeping goroutine.
	shipped [2]shipMark
}

// New returns a Manager that runs processes with logs in cfg.Dir. Close
// releases it.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("process manager: no directory: %w", ErrInvalid)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("process manager directory: %w", err)
	}
	cfg.Dir = dir
	created := false
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create process manager directory: %w", err)
		}
		created = true
	}
	if cfg.ShipInterval <= 0 {
		cfg.ShipInterval = DefaultShipInterval
	}
	if cfg.ShipLimit <= 0 {
		cfg.ShipLimit = DefaultShipLimit
	}
	if cfg.CloseGrace <= 0 {
		cfg.CloseGrace = DefaultCloseGrace
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	m := &Manager{
		cfg:        cfg,
		log:        logger,
		createdDir: created,
		procs:      map[int]*proc{},
		groups:     map[int]*proc{},
		liveCh:     make(chan struct{}),
		hkDone:     make(chan struct{}),
		regDone:    make(chan struct{}),
		stop:       make(chan struct{}),
	}
	// A failing meter provider leaves a no-op instrument: metrics off.
	m.liveMetric, _ = otel.GetMeterProvider().Meter("github.com/sandrun/sandrun/internal/procs").Int64UpDownCounter("sandrun.processes.live",
		metric.WithUnit("{process}"), metric.WithDescription("background processes running in session hosts (adopted leftovers included)"))
	m.finals.init()
	m.events.init()
	m.bg, m.cancelBg = context.WithCancel(context.Background())
	go m.housekeep()
	go m.record()
	return m, nil
}

// Start runs cmd as a background process in the session state st through
// shell.Start, and returns at once. Its stdout and stderr go to log files
// the Manager owns; its stdin is a pipe the Manager keeps open for Write
// when keepStdin, else /dev/null. cmd.Stdin, Stdout and Stderr must be nil;
// cmd.Timeout, if set, ends it (status killed, ReasonTimeout). The state
// the command leaves is dropped. When bash exits, what it left running in
// its process group is adopted, sharing its logs.
//
// Errors from shell.Start are wrapped as they are (ErrInvalid,
// fs.ErrNotExist for a missing cmd.Dir); after Close, ErrClosed.
func (m *Manager) Start(st shell.State, cmd shell.Command, keepStdin bool) (ProcessInfo, error) {
	if cmd.Stdin != nil || cmd.Stdout != nil || cmd.Stderr != nil {
		return ProcessInfo{}, fmt.Errorf("start background process: its stdin and output are the manager's: %w", ErrInvalid)
	}
	m.intake.RLock()
	defer m.intake.RUnlock()
	if m.closing.Load() {
		return ProcessInfo{}, fmt.Errorf("start background process: %w", ErrClosed)
	}
	logs, err := m.createLogs(fmt.Sprintf("bg-%d", m.seq.Add(1)))
	if err != nil {
		return ProcessInfo{}, fmt.Errorf("start background process: %w", err)
	}
	var stdinR, stdinW *os.File
	if keepStdin {
		if stdinR, stdinW, err = os.Pipe(); err != nil {
			logs.release()
			return ProcessInfo{}, fmt.Errorf("start background process: stdin pipe: %w", err)
		}
		cmd.Stdin = stdinR
	}
	cmd.Stdout, cmd.Stderr = logs.out, logs.err
	started := time.Now()
	run, err := shell.Start(m.bg, m.cfg.Dir, st, cmd)
	if stdinR != nil {
		stdinR.Close() // the process has its own copy
	}
	if err != nil {
		logs.release()
		if stdinW != nil {
			stdinW.Close()
		}
		return ProcessInfo{}, fmt.Errorf("start background process: %w", err)
	}
	p := &proc{
		pid: run.Pid(), kind: kindBackground, command: cmd.Script, started: started,
		pgid: run.Pid(), logs: logs, run: run, stdin: stdinW, ticks: startTicks(run.Pid()),
		done: make(chan struct{}), status: StatusRunning,
	}
	p.stdinOpen.Store(stdinW != nil)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups[p.pgid] = p
	m.files = append(m.files, logs)
	m.registerLocked(p)
	m.wg.Add(1) // Close waits for intake, so it cannot be waiting on wg yet
	go m.awaitBackground(p)
	return m.infoLocked(p), nil
}

// registerLocked makes p a tracked background process: listed, counted
// live, announced to the registry. During Close it is SIGKILLed at once.
func (m *Manager) registerLocked(p *proc) {
	m.procs[p.pid] = p
	m.live++
	m.liveMetric.Add(context.Background(), 1)
	m.notifyLocked()
	m.events.push(regEvent{info: m.infoLocked(p)})
	if op := m.closeOp; op != nil {
		m.killLocked(p, op, syscall.SIGKILL)
	}
}

// awaitBackground waits for a background process's bash, adopts what it
// left running, and records its end.
func (m *Manager) awaitBackground(p *proc) {
	defer m.wg.Done()
	res, err := p.run.Wait()
	if err != nil {
		// Only the shell state is unreadable; a background process's
		// state is not kept anyway.
		m.log.Debug("background process state unreadable", "event", "procs.state_unreadable", "pid", p.pid, "error", err.Error())
	}
	m.closeStdin(p)
	// What escaped its group is found while p still counts as running,
	// after the leftovers are read (see endForeground).
	adoptees := m.prepareAdoptees(p, res.Leftovers)
	m.sweepAfterCommand(res.TimedOut)
	reason := ""
	if res.TimedOut {
		reason = ReasonTimeout
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Adopt first, so that Live never passes through 0 in between.
	m.adoptLocked(adoptees, p.logs, p.kill)
	if res.TimedOut {
		m.endDescendantsLocked(p, ReasonTimeout)
	}
	m.finishLocked(p, exit{code: res.ExitCode, signal: res.Signal}, true, reason)
}

// finishLocked records that p ended. known says whether e holds its exit
// status; reason, if set, makes it killed.
func (m *Manager) finishLocked(p *proc, e exit, known bool, reason string) {
	if p.status != StatusRunning {
		return
	}
	p.finished = time.Now()
	if known {
		code := e.code
		p.exitCode, p.signal = &code, shortSignal(e.signal)
	}
	switch {
	case p.kill != nil:
		p.status, p.reason = StatusKilled, p.kill.reason
		if p.signal == "" && !known {
			p.signal = signalName(p.lastSig)
		}
	case reason != "":
		p.status, p.reason = StatusKilled, reason
	default:
		p.status = StatusExited
	}
	close(p.done)
	if p.kind == kindForeground {
		return
	}
	m.live--
	m.liveMetric.Add(context.Background(), -1)
	m.notifyLocked()
	m.finals.push(p)
}

func (m *Manager) notifyLocked() {
	close(m.liveCh)
	m.liveCh = make(chan struct{})
}

// Live returns how many background processes (adopted ones included) are
// running. A host stays up while there are any.
func (m *Manager) Live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live
}

// LiveChanged returns a channel closed at the next change of Live. Take
// it before reading Live to miss no change.
func (m *Manager) LiveChanged() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.liveCh
}

// lookupLocked finds pid: the foreground command, else the newest process
// with that pid.
func (m *Manager) lookupLocked(pid int) (*proc, error) {
	if m.fg != nil && m.fg.pid == pid {
		return m.fg, nil
	}
	if p := m.procs[pid]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("process %d: %w", pid, ErrNotFound)
}

func (m *Manager) lookup(pid int) (*proc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lookupLocked(pid)
}

func (m *Manager) infoLocked(p *proc) ProcessInfo {
	info := ProcessInfo{
		Pid:        p.pid,
		Parent:     m.listedParentLocked(p),
		Command:    p.command,
		Status:     p.status,
		Signal:     p.signal,
		Reason:     p.reason,
		StartedAt:  p.started,
		FinishedAt: p.finished,
		Foreground: p.kind == kindForeground,
		Adopted:    p.kind == kindAdopted,
		Stdin:      p.stdinOpen.Load(),
	}
	if p.exitCode != nil {
		code := *p.exitCode
		info.ExitCode = &code
	}
	if p.logs != nil {
		info.StdoutBytes, info.StderrBytes = p.logs.sizes()
	}
	return info
}

// List returns every process this host knows, running and ended, sorted by
// start time: background processes, adopted leftovers and the foreground
// command while it runs (once it ended, its exec's result tells of it).
func (m *Manager) List() []ProcessInfo {
	m.sweep(false)
	m.refreshCommands()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ProcessInfo, 0, len(m.procs)+1)
	if m.fg != nil {
		out = append(out, m.infoLocked(m.fg))
	}
	for _, p := range m.procs {
		out = append(out, m.infoLocked(p))
	}
	sortInfos(out)
	return out
}

func sortInfos(infos []ProcessInfo) {
	slices.SortFunc(infos, func(a, b ProcessInfo) int {
		return cmp.Or(a.StartedAt.Compare(b.StartedAt), cmp.Compare(a.Pid, b.Pid))
	})
}

// Get returns one process, or ErrNotFound. An adopted process shows what
// it runs now, as List shows it.
func (m *Manager) Get(pid int) (ProcessInfo, error) {
	p, err := m.lookup(pid)
	if err != nil {
		return ProcessInfo{}, err
	}
	m.refreshCommand(p)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.infoLocked(p), nil
}

// Wait waits until process pid ends and returns how. After timeout (0:
// none) it returns an error wrapping ErrTimeout, and the process keeps
// running; when ctx ends, ctx's error.
func (m *Manager) Wait(ctx context.Context, pid int, timeout time.Duration) (ProcessInfo, error) {
	p, err := m.lookup(pid)
	if err != nil {
		return ProcessInfo{}, err
	}
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-p.done:
	case <-expired:
		return ProcessInfo{}, fmt.Errorf("wait for process %d: still running after %v: %w", pid, timeout, ErrTimeout)
	case <-ctx.Done():
		return ProcessInfo{}, fmt.Errorf("wait for process %d: %w", pid, ctx.Err())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.infoLocked(p), nil
}

// longAgo is a deadline in the past: it cuts a blocked pipe write short.
var longAgo = time.Unix(1, 0)

// Write writes data to the stdin of process pid, then closes its stdin if
// closeStdin. It returns how many bytes were written. A process that was
// not started with keepStdin, whose stdin was closed, or that ended gets an
// error wrapping ErrNoStdin. A process that does not read blocks Write
// until ctx ends (the pipe holds 64 KiB); Write then returns ctx's error
// and what was written.
func (m *Manager) Write(ctx context.Context, pid int, data []byte, closeStdin bool) (int, error) {
	p, err := m.lookup(pid)
	if err != nil {
		return 0, err
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if !p.stdinOpen.Load() {
		return 0, fmt.Errorf("write to process %d: %w", pid, ErrNoStdin)
	}
	n := 0
	if len(data) > 0 {
		var mu sync.Mutex
		active := true
		stop := context.AfterFunc(ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if active {
				p.stdin.SetWriteDeadline(longAgo)
			}
		})
		n, err = p.stdin.Write(data)
		mu.Lock()
		active = false
		mu.Unlock()
		stop()
		p.stdin.SetWriteDeadline(time.Time{})
		switch {
		case err != nil && ctx.Err() != nil:
			return n, fmt.Errorf("write to process %d: %w", pid, ctx.Err())
		case errors.Is(err, syscall.EPIPE), errors.Is(err, os.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded):
			// Nobody reads the pipe any more: the process closed its
			// stdin, or it ended (closeStdin cut the write short).
			p.stdin.Close()
			p.stdinOpen.Store(false)
			return n, fmt.Errorf("write to process %d: it closed its stdin: %w", pid, ErrNoStdin)
		case err != nil:
			return n, fmt.Errorf("write to process %d: %w", pid, err)
		}
	}
	if closeStdin {
		p.stdin.Close()
		p.stdinOpen.Store(false)
	}
	return n, nil
}

// closeStdin closes p's stdin, cutting a blocked Write short.
func (m *Manager) closeStdin(p *proc) {
	if p.stdin == nil {
		return
	}
	p.stdin.SetWriteDeadline(longAgo)
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdinOpen.Load() {
		p.stdin.Close()
		p.stdinOpen.Store(false)
	}
}

// Logs returns a slice of process pid's stdout and stderr, read from the
// local log files, and each stream's whole size.
func (m *Manager) Logs(pid int, r LogRange) (Output, error) {
	if r.Offset < 0 || r.Tail < 0 || r.Max < 0 || (r.Offset > 0 && r.Tail > 0) {
		return Output{}, fmt.Errorf("logs of process %d: bad range %+v: %w", pid, r, ErrInvalid)
	}
	p, err := m.lookup(pid)
	if err != nil {
		return Output{}, err
	}
	out, err := p.logs.read(r)
	if err != nil {
		return Output{}, fmt.Errorf("logs of process %d: %w", pid, err)
	}
	return out, nil
}

// View returns the foreground command and the last max bytes (0:
// DefaultReadBytes) of its stdout and stderr so far; ok is false when no
// foreground command runs.
func (m *Manager) View(max int) (info ProcessInfo, out Output, ok bool) {
	m.mu.Lock()
	p := m.fg
	if p != nil {
		info = m.infoLocked(p)
	}
	m.mu.Unlock()
	if p == nil {
		return ProcessInfo{}, Output{}, false
	}
	if max <= 0 {
		max = DefaultReadBytes
	}
	out, err := p.logs.read(LogRange{Tail: int64(max), Max: max})
	if err != nil {
		// End released the files meanwhile: the command just ended.
		m.log.Debug("foreground output unreadable", "event", "procs.view_unreadable", "pid", p.pid, "error", err.Error())
	}
	return info, out, true
}
