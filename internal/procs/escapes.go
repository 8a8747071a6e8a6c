package procs

import (
	"context"
	"maps"
	"os"
	"slices"
	"syscall"

	"github.com/sandrun/sandrun/internal/shell"
)

// # Processes that leave their command's group
//
// A command's process group reaches most of what it starts, but not a
// process that left it: `setsid server &`, `setsid -f`, a daemon's double
// fork, a job under `set -m`. Such a process is found by its place in the
// process tree instead, and adopted like a leftover: listed, killable,
// ended with the host.
//
// Why a subreaper and not a cgroup: a cgroup holds every process forked
// inside it whatever it does, but making one needs a writable, delegated
// cgroup hierarchy. The executor runs as uid 1000 with no capabilities;
// Cloud Run's second generation documents cgroup support but no cgroup
// delegated to a container's non-root user (not tried on Cloud Run
// itself); the local system runs hosts as the current user or as uid 1000
// under setpriv, on machines whose cgroup trees belong to root (on the
// development machine, cgroup v1 with a cgroup2 beside it, uid 1000 gets
// EACCES making a cgroup in either). A child subreaper (BecomeSubreaper) needs no privilege anywhere:
// a process whose parent dies is reparented to the host, not to init, so
// nothing a command starts ever leaves the host's process tree while the
// host lives. The tree is read from /proc; each process is pinned by a
// pidfd and checked against its start time, so a reused pid is never
// mistaken for it.
//
// The Manager sweeps the tree (sweep) when a process list is asked for,
// before a kill, when a command's bash exits, at Close and every
// Config.ShipInterval while anything runs. What it finds below a tracked
// process is adopted under that process: its ProcessInfo.Parent, sharing
// its logs. Members of a running command's group are not: they are the
// command's until bash exits (then they are its Leftovers). An orphan
// (its parent died, so it is now this process's child) is placed by its
// process group when that is a command's; otherwise, and only when the
// Manager owns the process's orphans (Config.OwnsOrphans), under the
// latest command started before it. That guess is the one imprecision:
// a process that left its group and whose parent died before any sweep
// saw them, while several commands ran, may be grouped under the wrong
// one (and so killed with that one's timeout). A job that `set -m` made
// and whose bash ended looks, by its ids and command line until it execs,
// like a command's bash the host is starting, which must not be taken:
// package shell tells them apart (mayBeStarting), except while a command
// is being started, when the job is left to a later sweep or to Close.
//
// A command that ends by its timeout takes what it started with it
// (endDescendantsLocked); one that ends by itself leaves it running, as
// `server &` is left. Close, and KillAll for a host that lost its lease,
// end everything; with OwnsOrphans, Close then kills whatever still runs
// below this process (killStrays), so a host that leaves leaves nothing.

// startTicks returns the start time of pid in clock ticks after boot, or
// 0 when it cannot be read.
func startTicks(pid int) uint64 {
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return st.start
}

// sweep finds what the session's processes started outside the process
// groups that reach it, and adopts it (see the comment above). closing
// (Close) also takes orphans that look like a command's bash about to be
// announced: nothing more will be.
func (m *Manager) sweep(closing bool) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	var roots []*proc
	tracked := map[int]bool{}
	running := map[int]*proc{} // the groups whose command's bash runs, by pgid
	if p := m.fg; p != nil && p.status == StatusRunning {
		roots = append(roots, p)
		running[p.pgid] = p
	}
	for _, p := range m.procs {
		tracked[p.pid] = true
		if p.status != StatusRunning {
			continue
		}
		roots = append(roots, p)
		if p.kind == kindBackground {
			running[p.pgid] = p
		}
	}
	for _, p := range roots {
		tracked[p.pid] = true
	}
	groups := maps.Clone(m.groups)
	commands := m.commandsLocked()
	owns := m.cfg.OwnsOrphans
	m.mu.Unlock()

	orphans := reapsOrphans()
	if len(roots) == 0 && !orphans {
		return
	}
	found := m.discover(roots, tracked, running, groups, commands, orphans, owns, closing)
	if len(found) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range found {
		if admit, _ := m.admitLocked(d); !admit {
			continue
		}
		d.logs = m.logsOfLocked(d.parent)
		m.registerLocked(d)
		m.wg.Add(1) // under mu while not closed: Close waits on wg later
		go m.watch(d)
		// Found below a process being killed: it goes with it.
		for a := d.parent; a != nil; a = a.parent {
			if a.kill != nil && a.status == StatusRunning {
				m.inheritLocked(d, a.kill)
				break
			}
		}
	}
}

// refreshCommands reads again the command line of each running adopted
// process: one found between a fork and an exec (`setsid sleep 9 &` is
// bash, then setsid, then sleep) shows, and is matched by kill patterns
// as, what it runs now.
func (m *Manager) refreshCommands() {
	m.mu.Lock()
	var ps []*proc
	for _, p := range m.procs {
		if p.kind == kindAdopted && p.status == StatusRunning {
			ps = append(ps, p)
		}
	}
	m.mu.Unlock()
	for _, p := range ps {
		m.refreshCommand(p)
	}
}

// refreshCommand reads again the command line of p, if it is a running
// adopted process.
func (m *Manager) refreshCommand(p *proc) {
	m.mu.Lock()
	adopted := p.kind == kindAdopted && p.status == StatusRunning
	m.mu.Unlock()
	if !adopted {
		return
	}
	command := readCommand(p.pid)
	// Read while the pidfd's process ran: the pid was still its.
	if exitedPidfd(p.pidfd) {
		return
	}
	m.mu.Lock()
	if p.status == StatusRunning {
		p.command = command
	}
	m.mu.Unlock()
}

// sweepAfterCommand sweeps once a command's bash exited, when something
// may have escaped it. What left its group comes to this process when its
// parent dies (bash now, or the parent of a daemon's fork), so a sweep is
// needed only if this process has a child it does not track, or if the
// command timed out: what it started must be found to be ended. An escaped
// process whose parent still runs in the group is found by the next sweep
// (the parent is adopted, and keeps the host up meanwhile). The check
// reads a file per thread instead of all of /proc, which every command's
// end would otherwise pay.
func (m *Manager) sweepAfterCommand(timedOut bool) {
	if timedOut || m.untrackedChild() {
		m.sweep(false)
	}
}

// untrackedChild reports whether this process has a child that is neither
// a tracked process nor a command's bash, or whether it cannot tell.
func (m *Manager) untrackedChild() bool {
	if !reapsOrphans() {
		return false // orphans go to init: nothing to find here
	}
	pids, ok := ownChildren()
	if !ok {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pid := range pids {
		if p := m.procs[pid]; p != nil && p.status == StatusRunning {
			continue
		}
		if m.fg != nil && m.fg.pid == pid {
			continue
		}
		return true
	}
	return false
}

// discover walks the process tree from roots and, when orphans come to
// this process, from this process, and returns what it finds that is not
// tracked, pinned by pidfds, each with the tracked process (or the found
// one) it descends from as its parent. It takes no lock.
func (m *Manager) discover(roots []*proc, tracked map[int]bool, running, groups map[int]*proc, commands []*proc, orphans, owns, closing bool) []*proc {
	view := newProcTree()
	self := os.Getpid()
	type node struct {
		pid   int
		pidfd *os.File // nil for this process
		owner *proc
	}
	var pins []*os.File // opened for the walk only
	defer func() {
		for _, f := range pins {
			f.Close()
		}
	}()
	var queue []node
	for _, r := range roots {
		fd := r.pidfd
		if fd == nil { // bash, which os/exec waits for: pinned for the walk
			var err error
			if fd, err = openPidfd(r.pid); err != nil {
				continue
			}
			pins = append(pins, fd)
			if st, ok := view.stat(r.pid); !ok || st.start != r.ticks || exitedPidfd(fd) {
				continue // reaped, and the pid is another process's now
			}
		}
		queue = append(queue, node{pid: r.pid, pidfd: fd, owner: r})
	}
	if orphans {
		queue = append(queue, node{pid: self})
	}
	me, _ := view.stat(self)
	mySid := me.sid
	var found []*proc
	for ; len(queue) > 0; queue = queue[1:] {
		n := queue[0]
		for _, pid := range view.children(n.pid) {
			if tracked[pid] {
				continue // walked from itself
			}
			st, _ := view.stat(pid)
			owner := n.owner
			cmd := running[st.pgrp]
			if n.pid == self {
				switch {
				case cmd != nil:
					owner = cmd
				case groups[st.pgrp] != nil:
					owner = groups[st.pgrp]
				case !owns:
					continue // not known to be the session's
				case !closing && mayBeStarting(pid, st, mySid):
					continue // a command's bash that is being announced
				default:
					owner = latestBefore(commands, st.start)
				}
				if owner == nil {
					continue
				}
			}
			pidfd, err := openPidfd(pid)
			if err != nil {
				continue // gone
			}
			// The pid names the process seen in the scan only if it still
			// has that start time, and the parent that still runs.
			now, err := readStat(pid)
			if err != nil || now.start != st.start || now.ppid != n.pid || exitedPidfd(pidfd) || (n.pidfd != nil && exitedPidfd(n.pidfd)) {
				pidfd.Close()
				continue
			}
			if cmd != nil {
				// A member of a running command's group is the command's;
				// what it starts outside the group is found below it.
				pins = append(pins, pidfd)
				queue = append(queue, node{pid: pid, pidfd: pidfd, owner: owner})
				continue
			}
			d := &proc{
				pid: pid, kind: kindAdopted, command: readCommand(pid), started: startedAt(st.start), ticks: st.start,
				pgid: st.pgrp, pidfd: pidfd, parent: owner, done: make(chan struct{}), status: StatusRunning,
			}
			found = append(found, d)
			queue = append(queue, node{pid: pid, pidfd: pidfd, owner: d})
		}
	}
	return found
}

// mayBeStarting reports whether pid, a child of this process, may be the
// bash of a command being started, which the Manager is told of only once
// it runs: a leader of its own group in this process's session (Setpgid)
// that runs sandrun's wrapper and that package shell started or may be
// starting (shell.MayBeCommandBash), or still this program (os/exec forked
// it and it has not exec'd bash yet). A job that `set -m` made and whose
// bash ended looks the same by its ids, and by its command line until it
// execs (a subshell job, `set -m; ( … ) &`, for as long as it runs): shell
// tells it apart, except while another command is being started.
func mayBeStarting(pid int, st procStat, sid int) bool {
	if st.pgrp != pid || st.sid != sid {
		return false
	}
	argv := readArgv(pid)
	if _, ok := shell.CommandScript(argv); ok {
		// A job or subshell that a command's bash forked runs its
		// command line too until it execs: shell knows its own bashes.
		return shell.MayBeCommandBash(pid)
	}
	return slices.Equal(argv, readArgv(os.Getpid()))
}

// commandsLocked returns the commands an orphan may have come from: the
// foreground command, the latest one that ended, the background ones.
func (m *Manager) commandsLocked() []*proc {
	var cmds []*proc
	for _, p := range []*proc{m.fg, m.lastFg} {
		if p != nil {
			cmds = append(cmds, p)
		}
	}
	for _, p := range m.procs {
		if p.kind == kindBackground {
			cmds = append(cmds, p)
		}
	}
	return cmds
}

// latestBefore returns the latest of commands started no later than ticks,
// else the latest of all; nil when there are none.
func latestBefore(commands []*proc, ticks uint64) *proc {
	var best, latest *proc
	later := func(a, b *proc) bool { return b == nil || a.ticks > b.ticks || (a.ticks == b.ticks && a.pid > b.pid) }
	for _, c := range commands {
		if later(c, latest) {
			latest = c
		}
		if c.ticks <= ticks && later(c, best) {
			best = c
		}
	}
	if best == nil {
		return latest
	}
	return best
}

// admitLocked decides whether p, pinned for adoption, becomes tracked:
// not after Close (it is SIGKILLed), nor when it is, or was, tracked
// already (another sweep, a kill or its command's end found it first;
// tracked says whether it still runs). A process that was tracked and
// ended meanwhile, killed say, must keep that end: admitted again, it
// would be listed a second time, ended with no known cause. Whatever is
// not admitted has its pidfd closed.
func (m *Manager) admitLocked(p *proc) (admit, tracked bool) {
	if m.closed {
		signalPidfd(p.pidfd, syscall.SIGKILL)
		p.pidfd.Close()
		return false, false
	}
	// The pid and its start time name one process.
	if q := m.procs[p.pid]; q != nil && q.ticks == p.ticks {
		p.pidfd.Close()
		return false, q.status == StatusRunning
	}
	return true, false
}

// logsOfLocked returns the logs a process found under owner shares:
// owner's, unless they were released (a foreground command that ended
// leaving nothing), then none.
func (m *Manager) logsOfLocked(owner *proc) *logFiles {
	if owner == nil || owner.logs == nil || owner.logs.released() {
		return &logFiles{}
	}
	if owner.kind == kindForeground && owner == m.fg {
		owner.logsShared = true // End keeps the files
	}
	return owner.logs
}

// listedParentLocked returns the pid of p's nearest ancestor that List
// shows, or 0.
func (m *Manager) listedParentLocked(p *proc) int {
	for a := p.parent; a != nil; a = a.parent {
		if a == m.fg || m.procs[a.pid] == a {
			return a.pid
		}
	}
	return 0
}

// descendantsLocked returns the running processes found under root, at
// any depth.
func (m *Manager) descendantsLocked(root *proc) []*proc {
	var ps []*proc
	for _, q := range m.procs {
		if q.status != StatusRunning {
			continue
		}
		for a := q.parent; a != nil; a = a.parent {
			if a == root {
				ps = append(ps, q)
				break
			}
		}
	}
	return ps
}

// endDescendantsLocked ends what was found under root, which its timeout
// ended: SIGTERM, then SIGKILL after the shell's grace, recorded killed
// with reason.
func (m *Manager) endDescendantsLocked(root *proc, reason string) {
	ps := m.descendantsLocked(root)
	if len(ps) == 0 {
		return
	}
	op := &killOp{sig: syscall.SIGTERM, grace: shell.DefaultKillGrace, reason: reason}
	for _, p := range ps {
		m.killLocked(p, op, op.sig)
	}
	if len(op.members) > 0 && !m.closed {
		m.wg.Add(1)
		go m.escalate(op)
	}
}

// KillAll ends every process of the session at once with SIGKILL: the
// foreground command, the background processes, what they left running
// and what left their groups, and waits until they ended (as Kill does).
// It is what a host that lost its lease calls: it must stop everything it
// runs before another host takes the session. The processes are recorded
// killed with reason. The Manager stays usable; Close still ends it.
func (m *Manager) KillAll(ctx context.Context, reason string) ([]int, error) {
	return m.Kill(ctx, KillRequest{All: true, Signal: syscall.SIGKILL, Reason: reason})
}

// killStrays SIGKILLs every process still running below this one, and
// waits until they ended or ctx ends. Close calls it last, when the
// Manager owns the process's orphans: whatever a sweep could not place
// (it forked after the last one) does not outlive the host.
func (m *Manager) killStrays(ctx context.Context) {
	self := os.Getpid()
	for range 5 { // a stray can fork while it is being killed
		view := newProcTree()
		var fds []*os.File
		for queue := view.children(self); len(queue) > 0; queue = queue[1:] {
			pid := queue[0]
			queue = append(queue, view.children(pid)...)
			fd, err := openPidfd(pid)
			if err != nil {
				continue
			}
			if st, _ := view.stat(pid); startTicks(pid) != st.start {
				fd.Close()
				continue
			}
			signalPidfd(fd, syscall.SIGKILL)
			fds = append(fds, fd)
		}
		if len(fds) == 0 {
			return
		}
		m.log.Warn("killed processes left below the host", "event", "procs.strays_killed", "count", len(fds))
		for _, fd := range fds {
			awaitPidfdCtx(ctx, fd)
			reapPidfd(fd) // an orphan is this process's child: no zombie left
			fd.Close()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// awaitPidfdCtx waits until the process of pidfd exits or ctx ends.
func awaitPidfdCtx(ctx context.Context, pidfd *os.File) {
	done := make(chan struct{})
	go func() {
		awaitPidfd(pidfd)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
