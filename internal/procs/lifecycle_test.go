//go:build linux

package procs

// The tests in this file are not parallel: they check what the whole test
// process holds (goroutines, memory) or change it (child subreaper). Go
// runs them before any parallel test resumes.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/shell"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestCloseEndsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	reg, sink := newFakeRegistry(), newFakeSink()
	dir := filepath.Join(t.TempDir(), "procs")
	const grace = 300 * time.Millisecond
	m, err := New(Config{Dir: dir, Registry: reg, Sink: sink, CloseGrace: grace, ShipInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	plain := start(t, m, `echo hello; sleep 600`, false)
	fifo := mkfifo(t)
	stubborn := start(t, m, `trap '' TERM; echo > `+fifo+`; sleep 600`, false)
	readFifo(t, fifo)
	reader := start(t, m, `cat`, true)
	_, end := runForeground(t, m, `sleep 300 & echo started`)
	exited := start(t, m, `exit 4`, false)
	wait(t, m, exited.Pid)

	// A foreground command still running when the host ends.
	fgOut, fgErr := hostOutput(t)
	run, err := shell.Start(context.Background(), t.TempDir(), testState(t), shell.Command{Script: "sleep 600", Stdout: fgOut, Stderr: fgErr})
	if err != nil {
		t.Fatal(err)
	}
	fg, err := m.BeginForeground(ForegroundSpec{Process: run, Command: "sleep 600", Stdout: fgOut, Stderr: fgErr})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(began); took < grace {
		t.Errorf("Close took %v: the stubborn process did not get its grace of %v", took, grace)
	}
	if m.Live() != 0 {
		t.Errorf("Live = %d after Close", m.Live())
	}

	killed := []int{plain.Pid, stubborn.Pid, reader.Pid, end.Adopted[0]}
	calls, _ := reg.snapshot()
	for _, pid := range killed {
		info, ok := lastEnded(calls, pid)
		if !ok || info.Status != StatusKilled || info.Reason != ReasonHostEnded {
			t.Errorf("Registry.Ended(%d) = %+v, %v; want killed, %q", pid, info, ok, ReasonHostEnded)
		}
		if running(pid) {
			t.Errorf("process %d still running", pid)
		}
	}
	if info, _ := lastEnded(calls, stubborn.Pid); info.Signal != "KILL" {
		t.Errorf("stubborn process ended by %q, want SIGKILL", info.Signal)
	}
	if info, _ := lastEnded(calls, exited.Pid); info.Status != StatusExited || code(info) != "4" {
		t.Errorf("process that ended before Close recorded as %+v", info)
	}
	// The last logs were shipped although the interval never came.
	if got, _, _ := sink.object(ProcessKey{Pid: plain.Pid}.String() + "/stdout"); string(got) != "hello\n" {
		t.Errorf("last ship of stdout = %q", got)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Errorf("directory left behind: %v (%v)", err, entries)
	}

	// The foreground command was signalled; its End tells the host.
	res, _ := run.Wait()
	if e := fg.End(res); !e.Killed || e.Reason != ReasonHostEnded {
		t.Errorf("foreground End = %+v", e)
	}

	if _, err := m.Start(testState(t), shell.Command{Script: "true"}, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	if _, err := m.BeginForeground(ForegroundSpec{Process: run}); !errors.Is(err, ErrClosed) {
		t.Errorf("BeginForeground after Close: %v", err)
	}
	if _, err := m.Kill(ctx, KillRequest{All: true}); !errors.Is(err, ErrClosed) {
		t.Errorf("Kill after Close: %v", err)
	}
	if err := m.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The adopted leftover is not this process's child: wait until it is
	// gone, not just killed, before goleak looks.
	awaitGone(t, end.Adopted[0])
}

func lastEnded(calls []regCall, pid int) (ProcessInfo, bool) {
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].ended && calls[i].info.Pid == pid {
			return calls[i].info, true
		}
	}
	return ProcessInfo{}, false
}

// fakeForeground is a foreground command whose bash already exited, so
// that Close cannot reach its group.
type fakeForeground struct{ pid int }

func (f fakeForeground) Pid() int                    { return f.pid }
func (f fakeForeground) Signal(syscall.Signal) error { return os.ErrProcessDone }

func TestEndAfterCloseKillsLeftovers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// A group whose leader plays bash, and a member that plays its leftover.
	leader := exec.Command("sleep", "600")
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	defer leader.Wait()
	defer leader.Process.Kill()
	member := exec.Command("sleep", "601")
	member.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: leader.Process.Pid}
	if err := member.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- member.Wait() }()

	m, err := New(Config{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	fg, err := m.BeginForeground(ForegroundSpec{Process: fakeForeground{leader.Process.Pid}, Command: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	end := fg.End(shell.Result{Leftovers: []int{member.Process.Pid}})
	if len(end.Adopted) != 0 {
		t.Errorf("adopted %v after Close", end.Adopted)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("leftover ended with %v, want SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("leftover of a command that ended after Close still runs")
	}
}

// subreaper makes the test process a child subreaper for the test.
func subreaper(t *testing.T) {
	t.Helper()
	if err := BecomeSubreaper(); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	if !reapsOrphans() {
		t.Fatal("reapsOrphans false after BecomeSubreaper")
	}
}

func TestSubreaperLearnsExitStatus(t *testing.T) {
	subreaper(t)
	m, reg, _ := newManager(t, Config{ShipInterval: 10 * time.Millisecond})
	fifo := mkfifo(t)
	_, end := runForeground(t, m, `(read x < `+fifo+`; exit 7) & sleep 300 & sleep 301 & echo started`)
	if len(end.Adopted) != 3 {
		t.Fatalf("End = %+v, want 3 adopted", end)
	}
	// Until it execs, a sleep runs the command's script, as the subshell
	// does for good.
	var byCmd map[string]ProcessInfo
	var subshell ProcessInfo
	eventually(t, "both sleeps exec'd", func() bool {
		byCmd = map[string]ProcessInfo{}
		for _, pid := range end.Adopted {
			info, _ := m.Get(pid)
			byCmd[info.Command] = info
			if !strings.HasPrefix(info.Command, "sleep") {
				subshell = info
			}
		}
		return byCmd["sleep 300"].Pid != 0 && byCmd["sleep 301"].Pid != 0
	})

	if err := os.WriteFile(fifo, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, m, subshell.Pid); got.Status != StatusExited || code(got) != "7" || got.Signal != "" {
		t.Errorf("subshell ended as %+v (exit %s), want exited 7", got, code(got))
	}

	sleep300 := byCmd["sleep 300"]
	if _, err := m.Kill(context.Background(), KillRequest{Pid: sleep300.Pid, Grace: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(sleep300.Pid); got.Status != StatusKilled || code(got) != "143" || got.Signal != "TERM" {
		t.Errorf("killed leftover = %+v (exit %s), want killed, 143, SIGTERM", got, code(got))
	}

	sleep301 := byCmd["sleep 301"]
	kill(t, sleep301.Pid, syscall.SIGKILL)
	if got := wait(t, m, sleep301.Pid); got.Status != StatusExited || code(got) != "137" || got.Signal != "KILL" {
		t.Errorf("leftover killed by someone else = %+v (exit %s), want exited, 137, SIGKILL", got, code(got))
	}
	if e := reg.awaitEnded(t, sleep301.Pid); code(e) != "137" {
		t.Errorf("Registry.Ended = %+v", e)
	}
	// Reaped, not left as zombies.
	for _, pid := range end.Adopted {
		if _, err := readStat(pid); err == nil {
			t.Errorf("process %d not reaped", pid)
		}
	}
}

func TestSubreaperReapsOrphanedZombies(t *testing.T) {
	subreaper(t)
	m, _, _ := newManager(t, Config{ShipInterval: 5 * time.Millisecond})
	fifo := mkfifo(t)
	// The subshell exits at once: its sleep is orphaned while the command
	// runs on, so it is no leftover and nobody tracks it.
	p := start(t, m, `(sleep 600 & echo $! > `+fifo+`); cat`, true)
	orphan := atoi(t, readFifo(t, fifo))
	self := os.Getpid()
	// Nothing to await here: reparenting happens when the subshell exits.
	eventually(t, "orphan reparented", func() bool {
		st, err := readStat(orphan)
		return err == nil && st.ppid == self
	})
	kill(t, orphan, syscall.SIGKILL)
	eventually(t, "orphan reaped", func() bool {
		_, err := readStat(orphan)
		return err != nil
	})
	m.Write(context.Background(), p.Pid, nil, true)
	wait(t, m, p.Pid)
}

func TestSubreaperDoesNotStealCommands(t *testing.T) {
	subreaper(t)
	// Reaping as often as it can, while bash processes (os/exec children
	// of the shell package) exit, leaving orphans behind.
	m, _, _ := newManager(t, Config{ShipInterval: time.Millisecond})
	const n = 40
	var infos []ProcessInfo
	for i := range n {
		infos = append(infos, start(t, m, `sleep 0.0$RANDOM & true & exit `+strconv.Itoa(i), false))
	}
	for i, info := range infos {
		got := wait(t, m, info.Pid)
		if code(got) != strconv.Itoa(i) {
			t.Errorf("command %d ended with %s, want %d: its status was stolen", i, code(got), i)
		}
	}
	// Plain shell.Run in groups the Manager does not know.
	for i := range 10 {
		res, err := shell.Run(context.Background(), t.TempDir(), testState(t), shell.Command{Script: `true & exit ` + strconv.Itoa(i)})
		if err != nil || res.ExitCode != i {
			t.Errorf("shell.Run = %+v, %v", res, err)
		}
	}
}

// eventually polls cond until it holds, for what the OS offers nothing to
// wait on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countingSink reads what it is given into io.Discard.
type countingSink struct {
	bytes, ships atomic.Int64
}

func (s *countingSink) Ship(_ context.Context, _ ProcessKey, _ string, r io.Reader, size int64) error {
	n, err := io.Copy(io.Discard, r)
	s.bytes.Add(n)
	s.ships.Add(1)
	return err
}

func TestShippingMemoryIsFlat(t *testing.T) {
	sink := &countingSink{}
	m, reg, _ := newManager(t, Config{Sink: sink, ShipInterval: time.Millisecond, ShipLimit: 4 << 20})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// 64 MB written as fast as the disk takes it, shipped every millisecond.
	p := start(t, m, `head -c 64000000 /dev/zero`, false)
	reg.awaitEnded(t, p.Pid)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	shipped := sink.bytes.Load()
	t.Logf("%d ships, %d MiB shipped, %d KiB allocated in all", sink.ships.Load(), shipped>>20, alloc>>10)
	if shipped < 4<<20 {
		t.Fatalf("only %d bytes shipped", shipped)
	}
	if alloc > 4<<20 || alloc > uint64(shipped)/16 {
		t.Fatalf("allocated %d bytes to ship %d: shipping copies logs into memory", alloc, shipped)
	}
}

func BenchmarkShipStream(b *testing.B) {
	sink := &countingSink{}
	m, err := New(Config{Dir: b.TempDir(), Sink: sink, ShipInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	f, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const size = DefaultShipLimit
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	p := &proc{pid: 1}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		var mark shipMark
		if err := m.shipStream(p, Stdout, f, &mark); err != nil {
			b.Fatal(err)
		}
	}
}
