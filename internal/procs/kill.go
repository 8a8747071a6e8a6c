package procs

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// killOp is one kill request (or Close) and the processes it reached.
// Processes adopted from a member while it is being killed join it, and
// so do the descendants found below the members it signals.
type killOp struct {
	sig       syscall.Signal
	grace     time.Duration
	reason    string
	members   []*proc // guarded by Manager.mu
	escalated bool    // guarded by Manager.mu: SIGKILL was sent
}

// Kill sends req.Signal to the processes req selects and to what they
// started, then SIGKILL to those still running after req.Grace, and
// returns the pids of the processes it signalled, in start order. It
// waits until they ended (at most Grace plus a few seconds for SIGKILL to
// take effect) or ctx ends; the escalation to SIGKILL happens either way.
//
// A background process is signalled as its whole process group (bash leads
// it), the foreground command likewise, through its Signaler; an adopted
// leftover alone, through its pidfd (its group is bash's former one, which
// the other leftovers of the same command share, each one listed and
// killed on its own). What they started that those signals miss (an
// adopted subshell's child, a process that left its command's group) is
// adopted as it is found and signalled with them, and SIGKILLed with them
// (see descendants.go); what is found at the first signal is among the
// pids returned. Killing the foreground command is reported by its End.
//
// A pid this host does not know is ErrNotFound; a bad request (no or
// several selectors, a bad pattern, negative grace) ErrInvalid.
func (m *Manager) Kill(ctx context.Context, req KillRequest) ([]int, error) {
	selectors := 0
	for _, set := range []bool{req.Pid != 0, req.Pattern != "", req.All} {
		if set {
			selectors++
		}
	}
	if selectors != 1 {
		return nil, fmt.Errorf("kill: give exactly one of pid, pattern and all: %w", ErrInvalid)
	}
	if req.Grace < 0 {
		return nil, fmt.Errorf("kill: negative grace %v: %w", req.Grace, ErrInvalid)
	}
	if req.Grace == 0 {
		req.Grace = DefaultKillGrace
	}
	var re *regexp.Regexp
	if req.Pattern != "" {
		var err error
		if re, err = regexp.Compile(req.Pattern); err != nil {
			return nil, fmt.Errorf("kill: pattern: %v: %w", err, ErrInvalid)
		}
	}
	sig := req.Signal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	op := &killOp{sig: sig, grace: req.Grace, reason: req.Reason}
	if op.reason == "" {
		op.reason = ReasonKilled
	}
	// What left its command's group is tracked first, so that it can be
	// selected, and found under the process it descends from.
	m.sweep(false)
	m.refreshCommands()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, fmt.Errorf("kill: %w", ErrClosed)
	}
	var targets []*proc
	if req.Pid != 0 {
		p, err := m.lookupLocked(req.Pid)
		if err != nil {
			m.mu.Unlock()
			return nil, fmt.Errorf("kill: %w", err)
		}
		targets = append(targets, p)
		if p.status == StatusRunning {
			targets = append(targets, m.descendantsLocked(p)...)
		}
	} else {
		if m.fg != nil {
			targets = append(targets, m.fg)
		}
		for _, p := range m.procs {
			targets = append(targets, p)
		}
	}
	var selected []*proc
	for _, p := range targets {
		if p.status == StatusRunning && (re == nil || re.MatchString(p.command)) {
			selected = append(selected, p)
		}
	}
	sortProcs(selected)
	// A process is signalled before what was found below it: its start
	// time, read in clock ticks, may put it after them, and signalled
	// after them it may be gone already, ended by their end (bash that
	// waits for them), and its kill reported as not sent.
	slices.SortStableFunc(selected, func(a, b *proc) int { return cmp.Compare(depthLocked(a), depthLocked(b)) })
	m.mu.Unlock()

	// What the selected processes started is found without the lock, and
	// signalled with them under it.
	trees := m.prepareTrees(selected)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		releaseTrees(trees)
		return nil, fmt.Errorf("kill: %w", ErrClosed)
	}
	var reached []*proc
	for i := range trees {
		t := &trees[i]
		ok := m.killLocked(t.root, op, sig)
		if ok {
			reached = append(reached, t.root)
		}
		reached = append(reached, m.signalBelowLocked(t, ok, op)...)
	}
	if len(op.members) > 0 {
		m.wg.Add(1)
		go m.escalate(op)
	}
	m.mu.Unlock()

	sortProcs(reached)
	pids := make([]int, 0, len(reached))
	for _, p := range reached {
		if len(pids) == 0 || pids[len(pids)-1] != p.pid {
			pids = append(pids, p.pid)
		}
	}
	m.awaitOp(ctx, op, time.Now().Add(op.grace+killWait))
	return pids, nil
}

// depthLocked returns how many processes p was found below.
func depthLocked(p *proc) int {
	n := 0
	for a := p.parent; a != nil; a = a.parent {
		n++
	}
	return n
}

// sortProcs sorts ps by start time, then pid, as List does.
func sortProcs(ps []*proc) {
	slices.SortFunc(ps, func(a, b *proc) int {
		return cmp.Or(a.started.Compare(b.started), cmp.Compare(a.pid, b.pid))
	})
}

// killLocked sends sig to p on behalf of op and makes p op's member. It
// reports whether the signal was sent, or p was op's member already.
func (m *Manager) killLocked(p *proc, op *killOp, sig syscall.Signal) bool {
	if p.kill == op {
		return true // a member already (selected, and found below another)
	}
	if !m.signalLocked(p, sig) {
		return false
	}
	p.kill = op
	op.members = append(op.members, p)
	return true
}

// signalLocked sends sig to p: to its process group for a background
// process or the foreground command, to it alone through its pidfd for an
// adopted one. It reports whether the signal was sent; false means p is
// gone or going.
func (m *Manager) signalLocked(p *proc, sig syscall.Signal) bool {
	if p.status != StatusRunning {
		return false
	}
	var err error
	switch p.kind {
	case kindBackground:
		err = p.run.Signal(sig)
	case kindForeground:
		err = p.sig.Signal(sig)
	case kindAdopted:
		if sig != syscall.SIGKILL {
			p.signalledAs = readComm(p.pid)
		}
		err = signalPidfd(p.pidfd, sig)
	}
	if err != nil {
		if !isGone(err) {
			m.log.Warn("process not signalled", "event", "procs.signal_failed", "pid", p.pid, "signal", signalName(sig), "error", err.Error())
		}
		return false
	}
	p.lastSig = sig
	return true
}

// escalate sends SIGKILL to op's members still running after its grace,
// and to their descendants.
func (m *Manager) escalate(op *killOp) {
	defer m.wg.Done()
	if op.sig == syscall.SIGKILL {
		return
	}
	t := time.NewTimer(op.grace)
	defer t.Stop()
	late := time.NewTimer(min(lateSignalDelay, op.grace))
	defer late.Stop()
	for {
		p := m.firstRunning(op)
		if p == nil {
			return
		}
		select {
		case <-p.done:
		case <-late.C:
			m.resignalStarted(op)
		case <-t.C:
			// What the members started during the grace goes too.
			trees := m.prepareTrees(m.runningMembers(op))
			m.mu.Lock()
			op.escalated = true
			killed := map[*proc]bool{}
			for _, p := range op.members {
				if m.signalLocked(p, syscall.SIGKILL) {
					killed[p] = true
				}
			}
			for i := range trees {
				m.signalBelowLocked(&trees[i], killed[trees[i].root], op)
			}
			m.mu.Unlock()
			return
		case <-m.stop:
			return
		}
	}
}

// lateSignalDelay is how long after a kill's signal resignalStarted looks
// for adopted members that missed it.
const lateSignalDelay = 100 * time.Millisecond

// resignalStarted sends op's signal again to each adopted member that was
// still bash when it was signalled and runs another program now: one
// caught between bash's fork and its exec (`sleep 600 &` found by a sweep
// before sleep ran) may have had the signal noted by bash's handler and
// dropped by the exec, and would run until the SIGKILL after the grace.
// The shell package does the same for the members of a command's group
// (shell.Running.Signal); a member that ran its program at the signal,
// and may be handling it, gets no second one.
func (m *Manager) resignalStarted(op *killOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if op.escalated {
		return
	}
	for _, p := range op.members {
		if p.kind != kindAdopted || p.status != StatusRunning || p.kill != op || p.signalledAs != "bash" {
			continue
		}
		if now := readComm(p.pid); now != "" && now != "bash" && !exitedPidfd(p.pidfd) {
			signalPidfd(p.pidfd, op.sig)
		}
	}
}

func (m *Manager) firstRunning(op *killOp) *proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range op.members {
		if p.status == StatusRunning {
			return p
		}
	}
	return nil
}

// runningMembers returns op's members that still run.
func (m *Manager) runningMembers(op *killOp) []*proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []*proc
	for _, p := range op.members {
		if p.status == StatusRunning {
			ps = append(ps, p)
		}
	}
	return ps
}

// awaitOp waits until op's members ended, deadline passed or ctx ended.
func (m *Manager) awaitOp(ctx context.Context, op *killOp, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		p := m.firstRunning(op)
		if p == nil {
			return
		}
		select {
		case <-p.done:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// inheritLocked makes a process adopted from a member of op (a leftover
// of a command being killed) a member too: it gets op's signal, or
// SIGKILL once op escalated.
func (m *Manager) inheritLocked(p *proc, op *killOp) {
	sig := op.sig
	if op.escalated {
		sig = syscall.SIGKILL
	}
	m.killLocked(p, op, sig)
}

// signalName names sig as the protocol does: "TERM", "KILL".
func signalName(sig syscall.Signal) string {
	if sig == 0 {
		return ""
	}
	if name := unix.SignalName(sig); name != "" {
		return shortSignal(name)
	}
	return fmt.Sprintf("signal %d", int(sig))
}

// shortSignal drops the "SIG" prefix of a signal's name ("SIGKILL", as
// shell.Result names it).
func shortSignal(name string) string { return strings.TrimPrefix(name, "SIG") }
