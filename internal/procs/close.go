package procs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// abandonWait bounds how long Close still waits for its helpers once ctx
// ended: long enough for a canceled sink or registry call to return.
const abandonWait = time.Second

// Close ends every process and releases the Manager. It stops intake
// (Start and BeginForeground fail with ErrClosed), sends SIGTERM to every
// running process (the foreground command included) and, as Kill does, to
// what they started, and SIGKILL after Config.CloseGrace to what still
// runs, and waits until the background processes ended; they are recorded
// killed with ReasonHostEnded. Then it ships their last logs, makes the
// pending Registry calls, and closes and removes every file it owns. No
// goroutine or process of its own is left.
//
// The foreground command is signalled but not awaited: the host ends it
// with End, which after Close kills what it left running.
//
// When ctx ends first, Close SIGKILLs what still runs, records it killed
// without waiting, cancels the sink's and registry's calls, and returns an
// error saying what it abandoned. Calls after the first return nil.
func (m *Manager) Close(ctx context.Context) error {
	err := ErrClosed
	m.once.Do(func() { err = m.close(ctx) })
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

func (m *Manager) close(ctx context.Context) error {
	m.intake.Lock()
	m.closing.Store(true)
	m.intake.Unlock()
	// What left its command's group is tracked, to be ended with the rest.
	m.sweep(true)

	m.mu.Lock()
	op := &killOp{sig: syscall.SIGTERM, grace: m.cfg.CloseGrace, reason: ReasonHostEnded}
	// From here on, a process registered is SIGKILLed at once.
	m.closeOp = op
	var roots []*proc
	if m.fg != nil {
		roots = append(roots, m.fg)
	}
	for _, p := range m.procs {
		if p.status == StatusRunning {
			roots = append(roots, p)
		}
	}
	m.mu.Unlock()
	// What they started is found without the lock and ended with them.
	trees := m.prepareTrees(roots)
	m.mu.Lock()
	for i := range trees {
		t := &trees[i]
		m.signalBelowLocked(t, m.killLocked(t.root, op, syscall.SIGTERM), op)
	}
	if len(op.members) > 0 {
		m.wg.Add(1)
		go m.escalate(op)
	}
	m.mu.Unlock()

	var errs []error
	if abandoned := m.awaitIdle(ctx); len(abandoned) > 0 {
		errs = append(errs, fmt.Errorf("close: processes %v still running when the deadline passed: SIGKILLed, not awaited", abandoned))
	}
	if m.cfg.OwnsOrphans {
		m.killStrays(ctx)
	}

	// Every process ended (or was given up) and its last ship is queued:
	// ship, then make the registry calls, in that order.
	m.finals.close()
	if !m.awaitHelper(ctx, m.hkDone) {
		errs = append(errs, fmt.Errorf("close: shipping of the last logs abandoned: %w", ctx.Err()))
	}
	m.events.close()
	if !m.awaitHelper(ctx, m.regDone) {
		errs = append(errs, fmt.Errorf("close: %d registry calls abandoned: %w", m.events.len(), ctx.Err()))
	}
	close(m.stop)
	m.cancelBg()

	m.mu.Lock()
	var pidfds, stdins []*os.File
	for _, p := range m.procs {
		if p.pidfd != nil {
			pidfds = append(pidfds, p.pidfd)
		}
		if p.stdin != nil {
			stdins = append(stdins, p.stdin)
		}
	}
	files := m.files
	m.files = nil
	m.mu.Unlock()
	// Closing a pidfd ends its watcher; a process is tracked no more.
	for _, f := range pidfds {
		f.Close()
	}
	for _, f := range stdins {
		f.SetWriteDeadline(longAgo)
		f.Close()
	}
	if !m.awaitGoroutines(ctx) {
		errs = append(errs, errors.New("close: background process waiters still running (a process that SIGKILL cannot end)"))
	}
	for _, l := range files {
		l.release()
	}
	if m.createdDir {
		os.Remove(m.cfg.Dir) // only if empty: shell state files of abandoned commands stay
	}
	return errors.Join(errs...)
}

// awaitIdle waits until no background process runs, then marks the
// Manager closed. When ctx ends first, it SIGKILLs what runs, records it
// killed, and returns its pids.
func (m *Manager) awaitIdle(ctx context.Context) []int {
	for {
		m.mu.Lock()
		if m.live == 0 {
			m.closed = true
			m.mu.Unlock()
			return nil
		}
		changed := m.liveCh
		m.mu.Unlock()
		select {
		case <-changed:
			continue
		case <-ctx.Done():
		}
		m.mu.Lock()
		var abandoned []int
		for _, p := range m.procs {
			if p.status != StatusRunning {
				continue
			}
			m.signalLocked(p, syscall.SIGKILL)
			abandoned = append(abandoned, p.pid)
			m.finishLocked(p, exit{}, false, ReasonHostEnded)
		}
		m.closed = true
		m.mu.Unlock()
		return abandoned
	}
}

// awaitHelper waits for done; once ctx ended, it cancels the helpers'
// calls and waits at most abandonWait more.
func (m *Manager) awaitHelper(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	m.cancelBg()
	t := time.NewTimer(abandonWait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// awaitGoroutines waits for the Manager's goroutines, with the same bound
// as awaitHelper.
func (m *Manager) awaitGoroutines(ctx context.Context) bool {
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	return m.awaitHelper(ctx, done)
}
