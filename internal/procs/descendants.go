package procs

import (
	"os"
	"syscall"
)

// A process that is killed takes what it started with it: Kill, its
// escalation to SIGKILL and Close reach the descendants of each process
// they signal, not only the process (an adopted one is signalled alone,
// through its pidfd) or its group (a background process or the foreground
// command). An adopted subshell that forked its command after it was
// adopted (`(server; true) &`), or a process that left its command's
// group (job control, setsid), would otherwise outlive the kill, untracked.
//
// Each descendant found becomes a tracked process, adopted as a leftover
// is (its pidfd, listed, sharing the logs of the process it descends
// from), and a member of the kill, so that the escalation and Kill's wait
// cover it like any member. Signalling the whole group instead would not
// do: an adopted process shares its group with the other leftovers of its
// command, which were not asked to end, and a descendant may have left it.
//
// The descendants are found before the signal, while their parents still
// live (once a parent dies they are reparented and nothing ties them to
// it), without the Manager's lock (a walk of /proc), and signalled under
// it. A process that forks between the scan and the signal, and that the
// signal then ends at once, leaves that child unreached: closing that gap
// would take freezing the tree first (SIGSTOP, a cgroup freezer), which the
// processes would notice. The escalation scans again, so what a member
// that survives the first signal starts meanwhile is SIGKILLed with it.

// tree is a process about to be signalled and its live descendants,
// found and pinned without the Manager's lock.
type tree struct {
	root *proc
	// pin is a pidfd of root.pid opened for the scan when root has none
	// of its own (bash, which os/exec waits for). It names bash if the
	// signal to root succeeds after it was opened: Signal fails once bash
	// was reaped, and until then the pid is bash's.
	pin *os.File
	// below are the descendants, prepared as adoptees: each pinned by its
	// pidfd, with its own group, command line and start time.
	below []*proc
}

// prepareTrees finds the live descendants of roots, without the Manager's
// lock: one view of the process tree for all of them (procTree), then,
// from each root down, a pidfd of each child. A child counts only if it and its parent still
// run after its stat and command line were read: the pidfds pin both, so
// the pids named them while they were read, and the parent was its parent.
func (m *Manager) prepareTrees(roots []*proc) []tree {
	if len(roots) == 0 {
		return nil
	}
	view := newProcTree()
	trees := make([]tree, 0, len(roots))
	for _, root := range roots {
		t := tree{root: root}
		rootFd := root.pidfd
		if rootFd == nil {
			var err error
			if t.pin, err = openPidfd(root.pid); err != nil {
				trees = append(trees, t) // bash is gone: nothing below to find
				continue
			}
			rootFd = t.pin
		}
		type node struct {
			pid   int
			pidfd *os.File
			proc  *proc
		}
		seen := map[int]bool{root.pid: true}
		for queue := []node{{root.pid, rootFd, root}}; len(queue) > 0; queue = queue[1:] {
			parent := queue[0]
			for _, pid := range view.children(parent.pid) {
				if seen[pid] {
					continue
				}
				seen[pid] = true
				pidfd, err := openPidfd(pid)
				if err != nil {
					continue // gone
				}
				st, err := readStat(pid)
				command := readCommand(pid)
				if err != nil || st.ppid != parent.pid || exitedPidfd(pidfd) || exitedPidfd(parent.pidfd) {
					pidfd.Close()
					continue
				}
				d := &proc{
					pid: pid, kind: kindAdopted, command: command, started: startedAt(st.start), ticks: st.start,
					pgid: st.pgrp, pidfd: pidfd, parent: parent.proc, done: make(chan struct{}), status: StatusRunning,
				}
				t.below = append(t.below, d)
				queue = append(queue, node{pid, pidfd, d})
			}
		}
		trees = append(trees, t)
	}
	return trees
}

// signalBelowLocked brings t's descendants into op, once t.root was
// signalled for it (rootSignalled; if not, nothing below is touched): a
// descendant already tracked is killed as a member; an untracked one is
// adopted, sharing the root's logs, and killed likewise; one in the group
// of a background process or foreground command root was signalled with
// it, and is adopted as a leftover when bash exits. Each gets op's signal,
// or SIGKILL once op escalated. After Close they are SIGKILLed and not
// tracked. It releases t and returns the processes it signalled.
func (m *Manager) signalBelowLocked(t *tree, rootSignalled bool, op *killOp) []*proc {
	defer t.release()
	if !rootSignalled {
		return nil
	}
	sig := op.sig
	if op.escalated {
		sig = syscall.SIGKILL
	}
	var reached []*proc
	for i, d := range t.below {
		if exitedPidfd(d.pidfd) {
			continue // ended meanwhile
		}
		if q := m.procs[d.pid]; q != nil && q.kind == kindAdopted && q.status == StatusRunning && !exitedPidfd(q.pidfd) {
			// Both pidfds' processes run, under one pid: they are one.
			if m.killLocked(q, op, sig) {
				reached = append(reached, q)
			}
			continue
		}
		if t.root.kind != kindAdopted && d.pgid == t.root.pgid {
			continue
		}
		if m.closed {
			signalPidfd(d.pidfd, syscall.SIGKILL)
			continue
		}
		t.below[i] = nil // its pidfd is the tracked process's now
		d.logs = t.root.logs
		if t.root.kind == kindForeground {
			t.root.logsShared = true
		}
		m.registerLocked(d)
		m.wg.Add(1) // under mu while not closed: Close waits on wg later
		go m.watch(d)
		if m.killLocked(d, op, sig) {
			reached = append(reached, d)
		}
	}
	return reached
}

// release closes the pidfds t holds that no tracked process took.
func (t *tree) release() {
	if t.pin != nil {
		t.pin.Close()
		t.pin = nil
	}
	for i, d := range t.below {
		if d != nil {
			d.pidfd.Close()
			t.below[i] = nil
		}
	}
}

// releaseTrees releases trees that are not signalled.
func releaseTrees(trees []tree) {
	for i := range trees {
		trees[i].release()
	}
}
