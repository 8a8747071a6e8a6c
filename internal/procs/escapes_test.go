//go:build linux

package procs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/procfs"
	"github.com/sandrun/sandrun/internal/shell"
)

// These tests run one after another, never in parallel: the Manager of
// each owns the orphans that come to the test process (Config.OwnsOrphans),
// as a host's owns those of its session, so no other test may leave any.

// escape is a command that leaves a process outside its process group.
type escape struct {
	name string
	// script leaves the process running and returns.
	script string
	// argv is the escaped process's command line, unique on the machine.
	argv []string
	// ready, if set, is a file the process creates once it is the last
	// process with argv (a daemon's parents have its command line too).
	ready string
	// late: the process may be forked after its command ended (by a
	// subshell or a daemon's parent), so the command's end cannot name it.
	late bool
}

func escapes(t *testing.T) []escape {
	n := strconv.Itoa(os.Getpid())
	ready := filepath.Join(t.TempDir(), "daemon-ready")
	daemonize := `import os, time
if os.fork(): os._exit(0)
os.setsid()
if os.fork(): os._exit(0)
open("` + ready + `", "w").close()
time.sleep(1000) # ` + n
	return []escape{
		{"setsid", `setsid sleep 1009` + n + ` &`, []string{"sleep", "1009" + n}, "", false},
		{"double fork", `( sleep 1010` + n + ` & ) &`, []string{"sleep", "1010" + n}, "", true},
		{"double fork in a new session", `( setsid sleep 1011` + n + ` & ) &`, []string{"sleep", "1011" + n}, "", true},
		{"nohup", `nohup setsid sleep 1012` + n + ` > /dev/null 2>&1 &`, []string{"sleep", "1012" + n}, "", false},
		{"setsid -f", `setsid -f sleep 1013` + n, []string{"sleep", "1013" + n}, "", false},
		{"job control", `set -m; sleep 1014` + n + ` &`, []string{"sleep", "1014" + n}, "", false},
		{"python daemonize", python(t) + ` -c '` + daemonize + `'`, []string{python(t), "-c", daemonize}, ready, true},
	}
}

// escaped waits until e's process runs and returns its pid, pinned by a
// pidfd: the pid with its start time, whatever becomes of the number.
func (e escape) escaped(t *testing.T) (int, *os.File) {
	t.Helper()
	// Whatever the outcome, the test leaves none of them behind.
	t.Cleanup(func() {
		for _, pid := range procfs.Running(e.argv...) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if e.ready != "" {
		eventually(t, e.name+" ready", func() bool {
			_, err := os.Stat(e.ready)
			return err == nil
		})
		t.Cleanup(func() { os.Remove(e.ready) })
	}
	var pids []int
	// The last fork of a daemon may come after its command returned:
	// nothing to await but its appearance.
	eventually(t, e.name+" process started", func() bool {
		pids = procfs.Running(e.argv...)
		return len(pids) == 1
	})
	return pids[0], pinChild(t, pids[0])
}

// ownsOrphans sets up a test whose Manager owns the test process's
// orphans, as the executor's does.
func ownsOrphans(t *testing.T) *Manager {
	t.Helper()
	subreaper(t)
	m, _, _ := newManager(t, Config{OwnsOrphans: true})
	return m
}

func TestEscapedProcessesAreListed(t *testing.T) {
	for _, e := range escapes(t) {
		t.Run(e.name, func(t *testing.T) {
			m := ownsOrphans(t)
			_, end := runForeground(t, m, e.script)
			pid, _ := e.escaped(t)
			if !e.late && !slices.Contains(end.Adopted, pid) {
				t.Errorf("End = %+v does not name %d as left running", end, pid)
			}
			got, ok := find(m.List(), pid)
			if !ok {
				t.Fatalf("%s: process %d (%s) not listed: %+v", e.script, pid, e.argv, m.List())
			}
			// nohup may still be nohup when it is found: either is the
			// command the user ran.
			if want := strings.Join(e.argv, " "); !strings.HasSuffix(got.Command, want) || got.Status != StatusRunning {
				t.Errorf("listed as %+v, want command %q, running", got, want)
			}
		})
	}
}

func TestEscapedProcessesAreKilled(t *testing.T) {
	for _, e := range escapes(t) {
		for _, all := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/all=%v", e.name, all), func(t *testing.T) {
				m := ownsOrphans(t)
				runForeground(t, m, e.script)
				pid, fd := e.escaped(t)
				req := KillRequest{Pid: pid, Grace: 10 * time.Second}
				if all {
					req = KillRequest{All: true, Grace: 10 * time.Second}
				}
				pids, err := m.Kill(context.Background(), req)
				if err != nil {
					t.Fatalf("Kill(%+v): %v", req, err)
				}
				if !exitedPidfd(fd) || !slices.Contains(pids, pid) {
					t.Errorf("Kill(%+v) = %v; process %d ended: %v", req, pids, pid, exitedPidfd(fd))
				}
				if got, _ := m.Get(pid); got.Status != StatusKilled || got.Reason != ReasonKilled {
					t.Errorf("Get(%d) = %+v, want killed", pid, got)
				}
			})
		}
	}
}

// A foreground command that runs past its timeout takes with it what it
// started, escaped or not; what another command started runs on.
func TestTimeoutEndsTheCommandsEscapedProcesses(t *testing.T) {
	for _, e := range escapes(t) {
		t.Run(e.name, func(t *testing.T) {
			m := ownsOrphans(t)
			other := start(t, m, `setsid sleep 1999`+strconv.Itoa(os.Getpid())+` & wait`, false)
			stdout, stderr := hostOutput(t)
			script := e.script + "\nsleep 600"
			run, err := shell.Start(context.Background(), t.TempDir(), testState(t), shell.Command{
				Script: script, Stdout: stdout, Stderr: stderr, Timeout: time.Second, KillGrace: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			fg, err := m.BeginForeground(ForegroundSpec{Process: run, Command: script, Stdout: stdout, Stderr: stderr})
			if err != nil {
				t.Fatal(err)
			}
			pid, fd := e.escaped(t)
			res, _ := run.Wait()
			end := fg.End(res)
			if !res.TimedOut {
				t.Fatalf("the command did not time out: %+v", res)
			}
			awaitEnded(t, e.name+" process of a command that timed out", fd)
			// One that stayed in the command's group died with it, never
			// tracked; one that left it was tracked, and killed for it.
			if got, err := m.Wait(context.Background(), pid, 10*time.Second); !errors.Is(err, ErrNotFound) && (err != nil || got.Status != StatusKilled || got.Reason != ReasonTimeout) {
				t.Errorf("Wait(%d) = %+v, %v; want killed by the timeout", pid, got, err)
			}
			if slices.Contains(end.Adopted, pid) {
				t.Errorf("End = %+v names the killed process as left running", end)
			}
			if got, _ := m.Get(other.Pid); got.Status != StatusRunning {
				t.Errorf("another command's process = %+v, want it running", got)
			}
		})
	}
}

// When the host leaves (Close), nothing the session started survives:
// checked by pid and start time, through the pidfd that pins each.
func TestCloseEndsEscapedProcesses(t *testing.T) {
	subreaper(t)
	m, err := New(Config{Dir: t.TempDir() + "/procs", OwnsOrphans: true, CloseGrace: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var fds []*os.File
	for _, e := range escapes(t) {
		runForeground(t, m, e.script)
		_, fd := e.escaped(t)
		fds = append(fds, fd)
	}
	// One more, escaped from a background command that still runs.
	bgArgv := []string{"sleep", "1020" + strconv.Itoa(os.Getpid())}
	start(t, m, `setsid `+strings.Join(bgArgv, " ")+` & sleep 600`, false)
	_, fd := escape{name: "background's", argv: bgArgv}.escaped(t)
	fds = append(fds, fd)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i, fd := range fds {
		if !exitedPidfd(fd) {
			t.Errorf("escaped process %d (%s) survived Close", i, fd.Name())
		}
	}
}

// A subshell is listed as the command the user ran, not as sandrun's
// wrapper, and what it started is grouped under it.
func TestSubshellListedAsTheUsersCommand(t *testing.T) {
	m := ownsOrphans(t)
	n := strconv.Itoa(os.Getpid())
	script := `( sleep 1030` + n + `; true ) &`
	_, end := runForeground(t, m, script)
	pid, _ := escape{name: "subshell's sleep", argv: []string{"sleep", "1030" + n}}.escaped(t)
	list := m.List()
	child, ok := find(list, pid)
	if !ok {
		t.Fatalf("the subshell's child %d is not listed: %+v", pid, list)
	}
	subshell, ok := find(list, child.Parent)
	if !ok || !slices.Contains(end.Adopted, subshell.Pid) {
		t.Fatalf("the subshell's child %+v is not grouped under the subshell (adopted %v): %+v", child, end.Adopted, list)
	}
	if subshell.Command != script || subshell.Parent != 0 {
		t.Errorf("subshell listed as %+v, want the command %q at the top", subshell, script)
	}
	for _, p := range list {
		if strings.Contains(p.Command, "__sandrun") {
			t.Errorf("the wrapper shows: %+v", p)
		}
	}
	// Killing the subshell ends what it started.
	if _, err := m.Kill(context.Background(), KillRequest{Pid: subshell.Pid, Grace: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(pid); got.Status != StatusKilled {
		t.Errorf("the subshell's child = %+v after killing the subshell", got)
	}
}

// KillAll, what a host that lost its lease calls, ends every process of
// the session at once, escaped ones included.
func TestKillAllEndsEverything(t *testing.T) {
	m := ownsOrphans(t)
	var fds []*os.File
	for _, e := range escapes(t) {
		runForeground(t, m, e.script)
		_, fd := e.escaped(t)
		fds = append(fds, fd)
	}
	if _, err := m.KillAll(context.Background(), "the host lost its lease"); err != nil {
		t.Fatal(err)
	}
	for i, fd := range fds {
		if !exitedPidfd(fd) {
			t.Errorf("process %d survived KillAll", i)
		}
	}
	for _, p := range m.List() {
		if p.Status == StatusRunning {
			t.Errorf("still running after KillAll: %+v", p)
		}
	}
}
