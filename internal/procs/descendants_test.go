//go:build linux

package procs

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/procfs"
	"github.com/sandrun/sandrun/internal/shell"
)

// pinChild opens a pidfd of pid, a process the Manager may not track, and
// SIGKILLs it when the test ends, so that a failing test leaves nothing.
func pinChild(t *testing.T, pid int) *os.File {
	t.Helper()
	fd, err := openPidfd(pid)
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	t.Cleanup(func() {
		signalPidfd(fd, syscall.SIGKILL)
		fd.Close()
	})
	return fd
}

// checkKilledDescendant checks that child, pinned by fd, ended before Kill
// returned pids (nil: the child was found after the first signal, so Kill
// does not return it), and that the Manager tracks it as an adopted
// process it killed with sig ("TERM").
func checkKilledDescendant(t *testing.T, m *Manager, pids []int, child int, fd *os.File, sig string) ProcessInfo {
	t.Helper()
	if !exitedPidfd(fd) {
		t.Fatalf("process %d, started by a killed process, still runs when Kill returned %v", child, pids)
	}
	if pids != nil && !slices.Contains(pids, child) {
		t.Errorf("Kill = %v, want %d among them", pids, child)
	}
	got, err := m.Get(child)
	if err != nil || !got.Adopted || got.Status != StatusKilled || got.Signal != sig || got.Reason != ReasonKilled {
		t.Errorf("Get(%d) = %+v, %v; want an adopted process killed by SIG%s", child, got, err, sig)
	}
	return got
}

// adoptedSubshellChild runs, as the foreground command, a subshell that
// End adopts alone, and that then forks (not execs: `; true`) child, a
// script that must write its pid ($$) to the file its first argument
// names. It returns the subshell's pid and the child's, both pinned.
func adoptedSubshellChild(t *testing.T, m *Manager, child string) (subshell int, subshellFd *os.File, pid int, fd *os.File) {
	t.Helper()
	in, out := mkfifo(t), mkfifo(t)
	// The subshell waits for in, so that End adopts it alone.
	_, end := runForeground(t, m, `(read x < `+in+`; sh -c '`+child+`' child `+out+`; true) &`)
	if len(end.Adopted) != 1 {
		t.Fatalf("End = %+v, want the subshell adopted", end)
	}
	subshell = end.Adopted[0]
	if info, _ := m.Get(subshell); !strings.Contains(info.Command, "read x <") {
		t.Fatalf("subshell = %+v", info)
	}
	subshellFd = pinChild(t, subshell)
	if err := os.WriteFile(in, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid = atoi(t, readFifo(t, out))
	return subshell, subshellFd, pid, pinChild(t, pid)
}

// The bug: an adopted subshell that forks (not execs) its command after
// it was adopted is the only process of the two that the Manager knows.
// Killing it must end its child too before Kill returns.
func TestKillReachesWhatAnAdoptedProcessStarted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("TERM", func(t *testing.T) {
		t.Parallel()
		m, _, _ := newManager(t, Config{})
		subshell, subshellFd, child, childFd := adoptedSubshellChild(t, m, `echo $$ > "$1" && exec sleep 600`)
		// The pattern matches the subshell's command line only.
		pids, err := m.Kill(ctx, KillRequest{Pattern: `read x <`, Grace: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if !exitedPidfd(subshellFd) || !slices.Contains(pids, subshell) {
			t.Fatalf("Kill = %v: the subshell %d was not killed", pids, subshell)
		}
		checkKilledDescendant(t, m, pids, child, childFd, "TERM")
		if m.Live() != 0 {
			t.Errorf("Live = %d after the kill", m.Live())
		}
	})

	t.Run("SIGKILL after the grace", func(t *testing.T) {
		t.Parallel()
		m, _, _ := newManager(t, Config{})
		_, _, child, childFd := adoptedSubshellChild(t, m, `trap "" TERM; echo $$ > "$1" && exec sleep 600`)
		pids, err := m.Kill(ctx, KillRequest{Pattern: `read x <`, Grace: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		checkKilledDescendant(t, m, pids, child, childFd, "KILL")
	})

	t.Run("started during the grace", func(t *testing.T) {
		t.Parallel()
		m, _, _ := newManager(t, Config{})
		ready, out := mkfifo(t), mkfifo(t)
		// SIGTERM makes the subshell, which ignores it, fork a child: the
		// escalation finds it.
		_, end := runForeground(t, m, `(trap 'sh -c "echo \$\$ > `+out+`; exec sleep 600" &' TERM; echo > `+ready+`; `+
			`while :; do sleep 600 & wait $!; done) &`)
		if len(end.Adopted) == 0 {
			t.Fatalf("End = %+v, want the subshell adopted", end)
		}
		readFifo(t, ready)
		type pinned struct {
			pid int
			fd  *os.File
			err error
		}
		started := make(chan pinned, 1)
		go func() { // pinned while it runs: it is not this process's child
			b, err := os.ReadFile(out)
			if err != nil {
				started <- pinned{err: err}
				return
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				started <- pinned{err: err}
				return
			}
			fd, err := openPidfd(pid)
			started <- pinned{pid, fd, err}
		}()
		pids, err := m.Kill(ctx, KillRequest{Pattern: `trap `, Grace: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var child pinned
		select {
		case child = <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("the subshell started no child on SIGTERM")
		}
		if child.err != nil {
			t.Fatalf("child: %v", child.err)
		}
		t.Cleanup(func() {
			signalPidfd(child.fd, syscall.SIGKILL)
			child.fd.Close()
		})
		checkKilledDescendant(t, m, nil, child.pid, child.fd, "KILL")
		if len(pids) == 0 {
			t.Errorf("Kill = %v; list %+v", pids, m.List())
		}
		if m.Live() != 0 {
			t.Errorf("Live = %d after the kill: %+v", m.Live(), m.List())
		}
	})
}

// Under a subreaper the descendant comes to this process when the
// subshell dies, or the subshell reaps it first: either way it is killed
// and reaped, and its exit status, when learned, is SIGTERM's.
func TestSubreaperKillsWhatAnAdoptedProcessStarted(t *testing.T) {
	subreaper(t)
	m, _, _ := newManager(t, Config{ShipInterval: 10 * time.Millisecond})
	_, _, child, childFd := adoptedSubshellChild(t, m, `echo $$ > "$1" && exec sleep 600`)
	pids, err := m.Kill(context.Background(), KillRequest{Pattern: `read x <`, Grace: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := checkKilledDescendant(t, m, pids, child, childFd, "TERM"); got.ExitCode != nil && code(got) != "143" {
		t.Errorf("descendant = %+v (exit %s), want 143 or unknown", got, code(got))
	}
	// Reaped by its watcher, or as an orphaned zombie of its group.
	eventually(t, "descendant reaped", func() bool {
		_, err := readStat(child)
		return err != nil
	})
}

// A background process is signalled as its process group; what it started
// in a group of its own (job control, setsid) must be reached too.
func TestKillReachesDescendantsOutsideTheGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("background", func(t *testing.T) {
		t.Parallel()
		m, _, _ := newManager(t, Config{})
		out := mkfifo(t)
		p := start(t, m, `set -m; echo started; sleep 600 & echo $! > `+out+`; wait`, false)
		child := atoi(t, readFifo(t, out))
		childFd := pinChild(t, child)
		pids, err := m.Kill(ctx, KillRequest{Pid: p.Pid, Grace: 10 * time.Second})
		if err != nil || !slices.Contains(pids, p.Pid) {
			t.Fatalf("Kill = %v, %v; bash %d child %d list %+v", pids, err, p.Pid, child, m.List())
		}
		checkKilledDescendant(t, m, pids, child, childFd, "TERM")
		if out := logs(t, m, child, LogRange{}); !strings.HasPrefix(string(out.Stdout), "started\n") {
			t.Errorf("descendant's logs = %q, want its command's", out.Stdout)
		}
	})

	t.Run("foreground", func(t *testing.T) {
		t.Parallel()
		m, _, _ := newManager(t, Config{})
		out := mkfifo(t)
		stdout, stderr := hostOutput(t)
		script := `set -m; echo started; sleep 600 & echo $! > ` + out + `; wait`
		run, err := shell.Start(ctx, t.TempDir(), testState(t), shell.Command{Script: script, Stdout: stdout, Stderr: stderr})
		if err != nil {
			t.Fatal(err)
		}
		fg, err := m.BeginForeground(ForegroundSpec{Process: run, Command: script, Stdout: stdout, Stderr: stderr})
		if err != nil {
			t.Fatal(err)
		}
		child := atoi(t, readFifo(t, out))
		childFd := pinChild(t, child)
		done := make(chan ForegroundEnd, 1)
		go func() { // the host's exec, waiting for its command
			res, _ := run.Wait()
			done <- fg.End(res)
		}()
		pids, err := m.Kill(ctx, KillRequest{Pattern: `sleep 600 &`, Grace: 10 * time.Second})
		if err != nil || !slices.Contains(pids, run.Pid()) {
			t.Fatalf("Kill = %v, %v", pids, err)
		}
		if end := <-done; !end.Killed {
			t.Fatalf("End = %+v, want killed", end)
		}
		// As the host does once End returned: the Manager keeps the files,
		// which the descendant shares.
		for _, f := range []*os.File{stdout, stderr} {
			f.Close()
			os.Remove(f.Name())
		}
		checkKilledDescendant(t, m, pids, child, childFd, "TERM")
		if out := logs(t, m, child, LogRange{}); !strings.HasPrefix(string(out.Stdout), "started\n") {
			t.Errorf("descendant's logs = %q, want its command's output", out.Stdout)
		}
		if entries, _ := os.ReadDir(m.cfg.Dir); len(entries) != 2 {
			t.Errorf("the command's output files were not moved into the manager's directory: %v", entries)
		}
	})
}

// A process signalled while still bash, whose signal bash's handler noted
// and whose exec then dropped it (as a process found between bash's fork
// and its exec may), is signalled again once it runs its program, not left
// for the SIGKILL after the grace. The trap plays the exec that drops it.
func TestKillReachesAProcessCaughtStarting(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	ready := mkfifo(t)
	arg := "602" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		for _, pid := range procfs.Running("sleep", arg) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	_, end := runForeground(t, m, `bash -c 'trap "exec sleep `+arg+`" TERM; echo > `+ready+`; sleep 600 & wait' &`)
	readFifo(t, ready)
	if len(end.Adopted) == 0 {
		t.Fatalf("End = %+v, want the bash adopted", end)
	}
	pids, err := m.Kill(context.Background(), KillRequest{Pattern: `^bash -c trap`, Grace: 10 * time.Second})
	if err != nil || len(pids) == 0 {
		t.Fatalf("Kill = %v, %v", pids, err)
	}
	for _, pid := range pids {
		if got, _ := m.Get(pid); got.Status != StatusKilled || got.Signal != "TERM" {
			t.Errorf("Get(%d) = %+v, want killed by SIGTERM", pid, got)
		}
	}
}

// A sweep or kill that found a process before another one tracked it and
// saw it end must not track it again: it would be listed a second time,
// ended with no known cause, in place of how it ended.
func TestEndedProcessIsNotAdoptedAgain(t *testing.T) {
	t.Parallel()
	m, reg, _ := newManager(t, Config{})
	_, end := runForeground(t, m, `sleep 600 &`)
	if len(end.Adopted) != 1 {
		t.Fatalf("End = %+v, want the sleep adopted", end)
	}
	pid := end.Adopted[0]
	// What a scan that began before the kill holds: the process, pinned
	// (admitLocked closes the pidfd of what it does not admit).
	pidfd, err := openPidfd(pid)
	if err != nil {
		t.Fatal(err)
	}
	stale := &proc{pid: pid, kind: kindAdopted, ticks: startTicks(pid), pidfd: pidfd, status: StatusRunning}
	if _, err := m.Kill(context.Background(), KillRequest{Pid: pid, Grace: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	reg.awaitEnded(t, pid)
	m.mu.Lock()
	admit, tracked := m.admitLocked(stale)
	m.mu.Unlock()
	if admit || tracked {
		t.Errorf("admitLocked of the killed process = %v, %v; want neither admitted nor tracked", admit, tracked)
	}
	if got, _ := m.Get(pid); got.Status != StatusKilled || got.Reason != ReasonKilled {
		t.Errorf("Get(%d) = %+v, want killed", pid, got)
	}
}
