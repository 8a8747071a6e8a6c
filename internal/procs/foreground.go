package procs

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sandrun/sandrun/internal/shell"
)

// ForegroundSpec describes the foreground command the host just started.
type ForegroundSpec struct {
	// Process is the running command, usually the *shell.Running.
	Process Signaler
	// Command is its script, matched by kill patterns and shown by List.
	Command string
	// Stdout and Stderr are the files its output goes to (nil: none).
	// The Manager keeps descriptors of its own, so the host may close
	// them and, once End returned, remove them.
	Stdout, Stderr *os.File
	// StartedAt is when it started; zero means now.
	StartedAt time.Time
}

// Foreground is the foreground command as the Manager tracks it. End must
// be called once it ended.
type Foreground struct {
	m    *Manager
	p    *proc
	once sync.Once
	end  ForegroundEnd
}

// ForegroundEnd tells the host what the Manager did to the foreground
// command and with what it left running.
type ForegroundEnd struct {
	// Killed reports that Kill (or Close) signalled it; Reason is the
	// KillRequest's, Signal the last signal sent ("TERM"). The host answers
	// its exec ABORTED then.
	Killed bool
	Reason string
	Signal string
	// Adopted are the pids of its leftovers that are now background
	// processes, and of what it started outside its group, in order.
	Adopted []int
}

// BeginForeground makes a started command the foreground one, so that
// List, Kill, Logs, Wait and View see it. It fails with ErrBusy while
// another runs, ErrClosed after Close began.
func (m *Manager) BeginForeground(spec ForegroundSpec) (*Foreground, error) {
	if spec.Process == nil {
		return nil, fmt.Errorf("begin foreground command: no process: %w", ErrInvalid)
	}
	m.intake.RLock()
	defer m.intake.RUnlock()
	if m.closing.Load() {
		return nil, fmt.Errorf("begin foreground command: %w", ErrClosed)
	}
	logs, err := adoptLogs(spec.Stdout, spec.Stderr)
	if err != nil {
		return nil, fmt.Errorf("begin foreground command: %w", err)
	}
	started := spec.StartedAt
	if started.IsZero() {
		started = time.Now()
	}
	p := &proc{
		pid: spec.Process.Pid(), kind: kindForeground, command: spec.Command, started: started,
		pgid: spec.Process.Pid(), logs: logs, sig: spec.Process, ticks: startTicks(spec.Process.Pid()),
		done: make(chan struct{}), status: StatusRunning,
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fg != nil {
		logs.release()
		return nil, fmt.Errorf("begin foreground command %d: %w", p.pid, ErrBusy)
	}
	m.fg = p
	m.groups[p.pgid] = p
	return &Foreground{m: m, p: p}, nil
}

// End records that the foreground command ended with res (its
// shell.Result) and adopts res.Leftovers as background processes: their
// logs are the command's output files, which the Manager moves into its
// directory when it can (see Config.Dir). Only the first call counts.
func (f *Foreground) End(res shell.Result) ForegroundEnd {
	f.once.Do(func() { f.end = f.m.endForeground(f.p, res) })
	return f.end
}

func (m *Manager) endForeground(p *proc, res shell.Result) ForegroundEnd {
	// What escaped its group is found while p is still the foreground
	// command, before its logs are settled: it may share them. The sweep
	// comes after the leftovers are read, so that one that left the group
	// since bash exited (`setsid -f`, between its fork and its setsid) is
	// found by the sweep, not missed by both.
	adoptees := m.prepareAdoptees(p, res.Leftovers)
	m.sweepAfterCommand(res.TimedOut)
	// Bash exited (End comes after), so no kill adopts more processes
	// sharing its logs: its signal, which such an adoption needs, fails.
	m.mu.Lock()
	shared := p.logsShared
	m.mu.Unlock()
	if len(adoptees) > 0 || shared {
		p.logs.moveInto(m.cfg.Dir, fmt.Sprintf("fg-%d", m.seq.Add(1)))
	}
	m.mu.Lock()
	adopted := m.adoptLocked(adoptees, p.logs, p.kill)
	// After Close released its files, nothing that shares them is tracked.
	keep := len(adopted) > 0 || (shared && !m.closed)
	if keep {
		m.files = append(m.files, p.logs)
	}
	reason := ""
	if res.TimedOut {
		reason = ReasonTimeout
		m.endDescendantsLocked(p, ReasonTimeout)
	} else {
		// What left its group runs on too (`setsid server &`).
		for _, q := range m.descendantsLocked(p) {
			if !slices.Contains(adopted, q.pid) {
				adopted = append(adopted, q.pid)
			}
		}
		slices.Sort(adopted)
	}
	m.finishLocked(p, exit{code: res.ExitCode, signal: res.Signal}, true, reason)
	if m.fg == p {
		m.fg, m.lastFg = nil, p
	}
	end := ForegroundEnd{Adopted: adopted}
	if p.kill != nil {
		end.Killed, end.Reason, end.Signal = true, p.kill.reason, signalName(p.lastSig)
	}
	m.mu.Unlock()
	if !keep {
		p.logs.release()
	}
	return end
}

// prepareAdoptees opens what adoption needs of the leftovers pids of
// command cmd (members of its process group), without the Manager's lock:
// a pidfd, which pins the process whatever becomes of its pid, then its
// group (to check the pid still names a member), command line and start
// time. Processes already gone are left out. Each is grouped under the
// leftover that is its parent (a subshell), else under cmd.
func (m *Manager) prepareAdoptees(cmd *proc, pids []int) []*proc {
	var ps []*proc
	ppids := map[*proc]int{}
	byPid := map[int]*proc{}
	for _, pid := range pids {
		pidfd, err := openPidfd(pid)
		if err != nil {
			if !isGone(err) {
				m.log.Warn("leftover not adopted", "event", "procs.adopt_failed", "pid", pid, "error", err.Error())
			}
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.pgrp != cmd.pgid {
			// Gone, or the pid now names another process.
			pidfd.Close()
			continue
		}
		p := &proc{
			pid: pid, kind: kindAdopted, command: readCommand(pid), started: startedAt(st.start), ticks: st.start,
			pgid: cmd.pgid, pidfd: pidfd, parent: cmd, done: make(chan struct{}), status: StatusRunning,
		}
		ps = append(ps, p)
		ppids[p], byPid[pid] = st.ppid, p
	}
	for _, p := range ps {
		if q := byPid[ppids[p]]; q != nil {
			p.parent = q
		}
	}
	return ps
}

// adoptLocked makes adoptees background processes sharing logs, members of
// from (the kill their command is under), if any. After Close they are
// SIGKILLed and not tracked. It returns the pids adopted.
func (m *Manager) adoptLocked(adoptees []*proc, logs *logFiles, from *killOp) []int {
	var pids []int
	for _, p := range adoptees {
		admit, tracked := m.admitLocked(p)
		if tracked {
			pids = append(pids, p.pid) // a sweep found it first
		}
		if !admit {
			continue
		}
		p.logs = logs
		m.registerLocked(p)
		if from != nil && p.kill == nil {
			m.inheritLocked(p, from)
		}
		m.wg.Add(1) // under mu while not closed: Close waits on wg later
		go m.watch(p)
		pids = append(pids, p.pid)
	}
	return pids
}

// watch waits for an adopted process to exit, through its pidfd. Its exit
// status is known only if it is this process's child (a subreaper's
// orphan), which it then reaps.
func (m *Manager) watch(p *proc) {
	defer m.wg.Done()
	if err := awaitPidfd(p.pidfd); err != nil {
		return // Close released the pidfd
	}
	e, known := reapPidfd(p.pidfd)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.finishLocked(p, e, known, "")
}
