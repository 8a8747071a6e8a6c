//go:build linux

package procs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/shell"
)

func TestStartAndLogs(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	p := start(t, m, `printf 'out\n'; printf 'err\n' >&2; exit 3`, false)
	if p.Stdin {
		t.Errorf("Stdin open without keepStdin")
	}
	got := wait(t, m, p.Pid)
	if got.Status != StatusExited || code(got) != "3" || got.FinishedAt.IsZero() {
		t.Fatalf("ended as %+v (exit %s), want exited with 3", got, code(got))
	}
	tests := []struct {
		name           string
		r              LogRange
		stdout, stderr string
	}{
		{"all", LogRange{}, "out\n", "err\n"},
		{"offset", LogRange{Offset: 1}, "ut\n", "rr\n"},
		{"offset and max", LogRange{Offset: 1, Max: 2}, "ut", "rr"},
		{"tail", LogRange{Tail: 2}, "t\n", "r\n"},
		{"tail larger than the log", LogRange{Tail: 100}, "out\n", "err\n"},
		{"offset at the end", LogRange{Offset: 4}, "", ""},
		{"offset past the end", LogRange{Offset: 100}, "", ""},
	}
	for _, tt := range tests {
		out := logs(t, m, p.Pid, tt.r)
		if string(out.Stdout) != tt.stdout || string(out.Stderr) != tt.stderr || out.StdoutBytes != 4 || out.StderrBytes != 4 {
			t.Errorf("%s: Logs = %q %q (%d, %d bytes), want %q %q (4, 4)", tt.name, out.Stdout, out.Stderr, out.StdoutBytes, out.StderrBytes, tt.stdout, tt.stderr)
		}
	}
	if _, err := m.Logs(p.Pid, LogRange{Offset: 1, Tail: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Logs with offset and tail: err = %v, want ErrInvalid", err)
	}
	if _, err := m.Logs(1<<30, LogRange{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Logs of an unknown pid: err = %v, want ErrNotFound", err)
	}
	list := m.List()
	if info, ok := find(list, p.Pid); !ok || info.Status != StatusExited || info.StdoutBytes != 4 {
		t.Errorf("List = %+v, want the ended process with 4 bytes of stdout", list)
	}
	if m.Live() != 0 {
		t.Errorf("Live = %d after the only process ended", m.Live())
	}
}

func TestStartRefuses(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	if _, err := m.Start(testState(t), shell.Command{Script: "true", Stdout: os.Stdout}, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("Start with Stdout: err = %v, want ErrInvalid", err)
	}
	st := testState(t)
	st.Cwd = "relative"
	if _, err := m.Start(st, shell.Command{Script: "true"}, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("Start with a relative cwd: err = %v, want ErrInvalid", err)
	}
	if entries, _ := os.ReadDir(m.cfg.Dir); len(entries) != 0 {
		t.Errorf("files left by refused starts: %v", entries)
	}
}

func TestStartRunsInSessionState(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	st := testState(t)
	st.Env["GREETING"] = "hi"
	os.Mkdir(filepath.Join(st.Cwd, "sub"), 0o755)
	info, err := m.Start(st, shell.Command{Script: `echo "$GREETING $EXTRA $(pwd)"`, Dir: "sub", Env: map[string]string{"EXTRA": "there"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, m, info.Pid)
	want := "hi there " + filepath.Join(st.Cwd, "sub") + "\n"
	if out := logs(t, m, info.Pid, LogRange{}); string(out.Stdout) != want {
		t.Fatalf("stdout = %q, want %q", out.Stdout, want)
	}
}

func TestKeepStdin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, _, _ := newManager(t, Config{})

	t.Run("write and close", func(t *testing.T) {
		t.Parallel()
		p := start(t, m, `cat`, true)
		if !p.Stdin {
			t.Errorf("Stdin closed with keepStdin")
		}
		for _, s := range []string{"hello\n", "world\n"} {
			if n, err := m.Write(ctx, p.Pid, []byte(s), false); err != nil || n != len(s) {
				t.Fatalf("Write(%q) = %d, %v", s, n, err)
			}
		}
		if _, err := m.Write(ctx, p.Pid, nil, true); err != nil {
			t.Fatalf("close stdin: %v", err)
		}
		if got := wait(t, m, p.Pid); got.Status != StatusExited || code(got) != "0" || got.Stdin {
			t.Fatalf("cat ended as %+v", got)
		}
		if out := logs(t, m, p.Pid, LogRange{}); string(out.Stdout) != "hello\nworld\n" {
			t.Fatalf("stdout = %q", out.Stdout)
		}
		if _, err := m.Write(ctx, p.Pid, []byte("late"), false); !errors.Is(err, ErrNoStdin) {
			t.Fatalf("Write after close: err = %v, want ErrNoStdin", err)
		}
	})

	t.Run("writes arrive before close", func(t *testing.T) {
		t.Parallel()
		p := start(t, m, `head -n 1`, true)
		if _, err := m.Write(ctx, p.Pid, []byte("first\nsecond\n"), false); err != nil {
			t.Fatal(err)
		}
		wait(t, m, p.Pid) // head exits after one line, stdin still open
		if out := logs(t, m, p.Pid, LogRange{}); string(out.Stdout) != "first\n" {
			t.Fatalf("stdout = %q", out.Stdout)
		}
		if _, err := m.Write(ctx, p.Pid, []byte("x\n"), false); !errors.Is(err, ErrNoStdin) {
			t.Fatalf("Write to an ended process: err = %v, want ErrNoStdin", err)
		}
	})

	t.Run("python echo", func(t *testing.T) {
		t.Parallel()
		py := python(t)
		p := start(t, m, py+` -u -c 'import sys
for line in sys.stdin: print(line.strip().upper())'`, true)
		if _, err := m.Write(ctx, p.Pid, []byte("abc\ndef\n"), true); err != nil {
			t.Fatal(err)
		}
		wait(t, m, p.Pid)
		if out := logs(t, m, p.Pid, LogRange{}); string(out.Stdout) != "ABC\nDEF\n" {
			t.Fatalf("stdout = %q, stderr = %q", out.Stdout, out.Stderr)
		}
	})

	t.Run("without keepStdin", func(t *testing.T) {
		t.Parallel()
		p := start(t, m, `cat; echo "eof at once"`, false)
		if _, err := m.Write(ctx, p.Pid, []byte("x"), false); err != nil && !errors.Is(err, ErrNoStdin) {
			t.Fatalf("Write: err = %v, want ErrNoStdin", err)
		} else if err == nil {
			t.Fatal("Write to a process without stdin succeeded")
		}
		wait(t, m, p.Pid)
		if out := logs(t, m, p.Pid, LogRange{}); string(out.Stdout) != "eof at once\n" {
			t.Fatalf("stdout = %q: stdin is not /dev/null", out.Stdout)
		}
	})

	t.Run("a reader that does not read", func(t *testing.T) {
		t.Parallel()
		p := start(t, m, `sleep 600`, true)
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		n, err := m.Write(ctx, p.Pid, make([]byte, 1<<20), false)
		if !errors.Is(err, context.DeadlineExceeded) || n >= 1<<20 {
			t.Fatalf("Write of 1 MiB nobody reads = %d, %v; want less, DeadlineExceeded", n, err)
		}
		// The pipe is still usable: the deadline was lifted.
		if _, err := m.Write(context.Background(), p.Pid, nil, true); err != nil {
			t.Fatalf("close after a cut write: %v", err)
		}
		if _, err := m.Kill(context.Background(), KillRequest{Pid: p.Pid}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestKill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, _, _ := newManager(t, Config{})

	t.Run("by pid", func(t *testing.T) {
		t.Parallel()
		p := start(t, m, `sleep 600`, false)
		pids, err := m.Kill(ctx, KillRequest{Pid: p.Pid, Grace: 10 * time.Second, Reason: "killed by request r1"})
		if err != nil || len(pids) != 1 || pids[0] != p.Pid {
			t.Fatalf("Kill = %v, %v", pids, err)
		}
		got, _ := m.Get(p.Pid) // Kill returns once the process ended
		if got.Status != StatusKilled || got.Signal != "TERM" || code(got) != "143" || got.Reason != "killed by request r1" {
			t.Fatalf("killed process = %+v (exit %s)", got, code(got))
		}
		if pids, err := m.Kill(ctx, KillRequest{Pid: p.Pid}); err != nil || len(pids) != 0 {
			t.Fatalf("Kill of an ended process = %v, %v; want none, nil", pids, err)
		}
	})

	t.Run("by pattern", func(t *testing.T) {
		t.Parallel()
		k, _, _ := newManager(t, Config{})
		six := start(t, k, `sleep 600`, false)
		seven := start(t, k, `sleep 700`, false)
		pids, err := k.Kill(ctx, KillRequest{Pattern: `sleep 6.0`, Grace: 10 * time.Second})
		if err != nil || len(pids) != 1 || pids[0] != six.Pid {
			t.Fatalf("Kill(pattern) = %v, %v; want [%d]", pids, err, six.Pid)
		}
		if got, _ := k.Get(seven.Pid); got.Status != StatusRunning {
			t.Fatalf("sleep 700 = %+v, want running", got)
		}
		if pids, err := k.Kill(ctx, KillRequest{Pattern: `^nothing matches$`}); err != nil || len(pids) != 0 {
			t.Fatalf("Kill(no match) = %v, %v", pids, err)
		}
		other := start(t, k, `sleep 800`, false)
		pids, err = k.Kill(ctx, KillRequest{All: true, Signal: syscall.SIGKILL})
		if err != nil || len(pids) != 2 || pids[0] != seven.Pid || pids[1] != other.Pid {
			t.Fatalf("Kill(all) = %v, %v; want [%d %d] in start order", pids, err, seven.Pid, other.Pid)
		}
		for _, pid := range pids {
			if got, _ := k.Get(pid); got.Status != StatusKilled || got.Signal != "KILL" {
				t.Errorf("process %d = %+v, want killed by SIGKILL", pid, got)
			}
		}
		if k.Live() != 0 {
			t.Errorf("Live = %d after kill all", k.Live())
		}
	})

	t.Run("SIGKILL after the grace", func(t *testing.T) {
		t.Parallel()
		// An ignored signal stays ignored across exec: sleep ignores it too.
		fifo := mkfifo(t)
		p := start(t, m, `trap '' TERM; echo > `+fifo+`; sleep 600`, false)
		readFifo(t, fifo)
		const grace = 300 * time.Millisecond
		began := time.Now()
		pids, err := m.Kill(ctx, KillRequest{Pid: p.Pid, Grace: grace})
		took := time.Since(began)
		if err != nil || len(pids) != 1 {
			t.Fatalf("Kill = %v, %v", pids, err)
		}
		got, _ := m.Get(p.Pid)
		if got.Status != StatusKilled || got.Signal != "KILL" || took < grace {
			t.Fatalf("after %v: %+v; want killed by SIGKILL after %v", took, got, grace)
		}
	})

	t.Run("KILL at once", func(t *testing.T) {
		t.Parallel()
		fifo := mkfifo(t)
		p := start(t, m, `trap '' TERM; echo > `+fifo+`; sleep 600`, false)
		readFifo(t, fifo)
		began := time.Now()
		if _, err := m.Kill(ctx, KillRequest{Pid: p.Pid, Signal: syscall.SIGKILL}); err != nil {
			t.Fatal(err)
		}
		if got, _ := m.Get(p.Pid); got.Status != StatusKilled || got.Signal != "KILL" || time.Since(began) > DefaultKillGrace {
			t.Fatalf("got %+v after %v", got, time.Since(began))
		}
	})

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		for _, req := range []KillRequest{{}, {Pid: 1, All: true}, {Pattern: "x", All: true}, {Pattern: "("}, {All: true, Grace: -1}} {
			if _, err := m.Kill(ctx, req); !errors.Is(err, ErrInvalid) {
				t.Errorf("Kill(%+v): err = %v, want ErrInvalid", req, err)
			}
		}
		if _, err := m.Kill(ctx, KillRequest{Pid: 1 << 30}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Kill of an unknown pid: err = %v, want ErrNotFound", err)
		}
	})
}

func TestKillReachesTheWholeGroup(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	fifo := mkfifo(t)
	p := start(t, m, `sleep 600 & echo $! > `+fifo+`; wait`, false)
	child := atoi(t, readFifo(t, fifo))
	if _, err := m.Kill(context.Background(), KillRequest{Pid: p.Pid, Grace: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	awaitGone(t, child)
}

func TestWait(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	p := start(t, m, `sleep 600`, false)
	if _, err := m.Wait(context.Background(), p.Pid, 50*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	if got, _ := m.Get(p.Pid); got.Status != StatusRunning {
		t.Fatalf("after the timeout: %+v, want running", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Wait(ctx, p.Pid, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a canceled context = %v", err)
	}
	if _, err := m.Wait(context.Background(), 1<<30, time.Second); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Wait of an unknown pid = %v", err)
	}

	q := start(t, m, `exit 5`, false)
	if got := wait(t, m, q.Pid); got.Status != StatusExited || code(got) != "5" {
		t.Fatalf("Wait = %+v (exit %s), want exited 5", got, code(got))
	}
}

func TestBackgroundLeftoversAreAdopted(t *testing.T) {
	t.Parallel()
	m, reg, _ := newManager(t, Config{})
	p := start(t, m, `sleep 321 & echo left`, false)
	ended := reg.awaitEnded(t, p.Pid)
	if ended.Status != StatusExited || code(ended) != "0" {
		t.Fatalf("bash ended as %+v", ended)
	}
	var left ProcessInfo
	for _, info := range m.List() {
		if info.Command == "sleep 321" {
			left = info
		}
	}
	if !left.Adopted || left.Status != StatusRunning || m.Live() != 1 {
		t.Fatalf("leftover = %+v, Live = %d; want an adopted running sleep 321", left, m.Live())
	}
	if out := logs(t, m, left.Pid, LogRange{}); string(out.Stdout) != "left\n" {
		t.Fatalf("leftover's logs = %q, want its command's", out.Stdout)
	}
}

func TestForegroundLeftoversAreAdopted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m, reg, _ := newManager(t, Config{})

	res, end := runForeground(t, m, `sleep 300 & sleep 301 & echo started; echo warn >&2`)
	if len(res.Leftovers) != 2 || len(end.Adopted) != 2 || end.Killed {
		t.Fatalf("leftovers %v, End = %+v", res.Leftovers, end)
	}
	if m.Live() != 2 {
		t.Fatalf("Live = %d, want 2", m.Live())
	}
	byCmd := map[string]ProcessInfo{}
	for _, info := range m.List() {
		byCmd[info.Command] = info
		if info.Foreground {
			t.Errorf("ended foreground command still listed: %+v", info)
		}
	}
	first, second := byCmd["sleep 300"], byCmd["sleep 301"]
	for _, info := range []ProcessInfo{first, second} {
		if !info.Adopted || info.Status != StatusRunning || info.StartedAt.IsZero() || info.StartedAt.After(time.Now()) {
			t.Fatalf("leftover = %+v; list: %+v", info, m.List())
		}
		// The host removed its files: the Manager reads its own.
		out := logs(t, m, info.Pid, LogRange{})
		if string(out.Stdout) != "started\n" || string(out.Stderr) != "warn\n" {
			t.Fatalf("leftover logs = %q %q", out.Stdout, out.Stderr)
		}
	}
	if entries, _ := os.ReadDir(m.cfg.Dir); len(entries) != 2 {
		t.Errorf("the command's output files were not moved into the manager's directory: %v", entries)
	}

	// Killed through the Manager.
	pids, err := m.Kill(ctx, KillRequest{Pid: first.Pid, Grace: 10 * time.Second})
	if err != nil || len(pids) != 1 {
		t.Fatalf("Kill = %v, %v", pids, err)
	}
	got, _ := m.Get(first.Pid)
	if got.Status != StatusKilled || got.Signal != "TERM" {
		t.Fatalf("killed leftover = %+v", got)
	}
	if !reapsOrphans() && got.ExitCode != nil {
		t.Errorf("exit code %d of a process that is not a child", *got.ExitCode)
	}

	// Ended by someone else: noticed through its pidfd.
	kill(t, second.Pid, syscall.SIGKILL)
	got = wait(t, m, second.Pid)
	if got.Status != StatusExited || got.FinishedAt.IsZero() {
		t.Fatalf("leftover ended by itself = %+v, want exited", got)
	}
	if !reapsOrphans() && got.ExitCode != nil {
		t.Errorf("exit code %d of a process that is not a child", *got.ExitCode)
	}
	if m.Live() != 0 {
		t.Errorf("Live = %d", m.Live())
	}
	ended := reg.awaitEnded(t, second.Pid)
	if ended.Status != StatusExited || !ended.Adopted {
		t.Errorf("Registry.Ended = %+v", ended)
	}
}

func TestForegroundHTTPServerLeftover(t *testing.T) {
	t.Parallel()
	py := python(t)
	m, _, _ := newManager(t, Config{})
	_, end := runForeground(t, m, py+` -m http.server 0 --bind 127.0.0.1 >/dev/null 2>&1 &`)
	if len(end.Adopted) != 1 {
		t.Fatalf("End = %+v, want one adopted server", end)
	}
	// Until it execs, the server runs the command's script.
	var server ProcessInfo
	eventually(t, "the server exec'd", func() bool {
		server, _ = m.Get(end.Adopted[0])
		return strings.HasSuffix(server.Command, "-m http.server 0 --bind 127.0.0.1")
	})
	if server.Status != StatusRunning {
		t.Fatalf("server = %+v", server)
	}
	pids, err := m.Kill(context.Background(), KillRequest{Pattern: `http\.server`, Grace: 10 * time.Second})
	if err != nil || len(pids) != 1 || pids[0] != server.Pid {
		t.Fatalf("Kill = %v, %v", pids, err)
	}
	if got, _ := m.Get(server.Pid); got.Status != StatusKilled {
		t.Fatalf("server = %+v, want killed", got)
	}
}

func TestViewForeground(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	if _, _, ok := m.View(0); ok {
		t.Fatal("View with no foreground command reported one")
	}
	fifo := mkfifo(t)
	stdout, stderr := hostOutput(t)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	script := `echo partial; echo oops >&2; echo ready > ` + fifo + `; read x; echo done`
	run, err := shell.Start(context.Background(), t.TempDir(), testState(t), shell.Command{Script: script, Stdin: stdinR, Stdout: stdout, Stderr: stderr})
	stdinR.Close()
	if err != nil {
		t.Fatal(err)
	}
	fg, err := m.BeginForeground(ForegroundSpec{Process: run, Command: script, Stdout: stdout, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.BeginForeground(ForegroundSpec{Process: run}); !errors.Is(err, ErrBusy) {
		t.Errorf("second BeginForeground: err = %v, want ErrBusy", err)
	}
	if got := readFifo(t, fifo); got != "ready\n" {
		t.Fatalf("fifo: %q", got)
	}

	// The command's output reaches its files through the shell's pipe
	// readers, a moment after the command wrote it.
	eventually(t, "the foreground's output in its files", func() bool {
		_, out, _ := m.View(0)
		return out.StdoutBytes == 8 && len(out.Stderr) == 5
	})
	info, out, ok := m.View(0)
	if !ok || !info.Foreground || info.Status != StatusRunning || info.Pid != run.Pid() || info.Command != script {
		t.Fatalf("View = %+v, %v", info, ok)
	}
	if string(out.Stdout) != "partial\n" || string(out.Stderr) != "oops\n" || out.StdoutBytes != 8 {
		t.Fatalf("View output = %q %q (%d bytes)", out.Stdout, out.Stderr, out.StdoutBytes)
	}
	if _, out, _ := m.View(4); string(out.Stdout) != "ial\n" {
		t.Errorf("View(4) stdout = %q, want the last 4 bytes", out.Stdout)
	}
	if list := m.List(); len(list) != 1 || !list[0].Foreground {
		t.Errorf("List = %+v, want the foreground command", list)
	}
	if m.Live() != 0 {
		t.Errorf("Live counts the foreground command")
	}
	if _, err := m.Write(context.Background(), run.Pid(), []byte("x\n"), false); !errors.Is(err, ErrNoStdin) {
		t.Errorf("Write to the foreground command: err = %v, want ErrNoStdin", err)
	}

	stdinW.Write([]byte("go\n"))
	res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if end := fg.End(res); end.Killed || len(end.Adopted) != 0 {
		t.Fatalf("End = %+v", end)
	}
	if _, _, ok := m.View(0); ok {
		t.Error("View after End reported a foreground command")
	}
	if list := m.List(); len(list) != 0 {
		t.Errorf("List after End = %+v", list)
	}
}

func TestKillForeground(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	stdout, stderr := hostOutput(t)
	script := `sleep 600`
	run, err := shell.Start(context.Background(), t.TempDir(), testState(t), shell.Command{Script: script, Stdout: stdout, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	fg, err := m.BeginForeground(ForegroundSpec{Process: run, Command: script, Stdout: stdout, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	type ended struct {
		res shell.Result
		end ForegroundEnd
	}
	done := make(chan ended, 1)
	go func() { // the host's exec, waiting for its command
		res, _ := run.Wait()
		done <- ended{res, fg.End(res)}
	}()
	pids, err := m.Kill(context.Background(), KillRequest{Pattern: `sleep 6.0`, Grace: 10 * time.Second, Reason: "killed by request r9"})
	if err != nil || len(pids) != 1 || pids[0] != run.Pid() {
		t.Fatalf("Kill = %v, %v; want [%d]", pids, err, run.Pid())
	}
	e := <-done
	if !e.end.Killed || e.end.Reason != "killed by request r9" || e.end.Signal != "TERM" || e.res.ExitCode != 143 {
		t.Fatalf("End = %+v, exit %d", e.end, e.res.ExitCode)
	}
}

func TestShipping(t *testing.T) {
	t.Parallel()
	m, reg, sink := newManager(t, Config{Epoch: 7, ShipInterval: 10 * time.Millisecond, ShipLimit: 1000})

	// Periodic ships of a running process.
	p := start(t, m, `cat`, true)
	key := ProcessKey{Epoch: 7, Pid: p.Pid}.String()
	m.Write(context.Background(), p.Pid, []byte("one\n"), false)
	sink.awaitObject(t, key+"/stdout", "one\n")
	m.Write(context.Background(), p.Pid, []byte("two\n"), true)
	ended := reg.awaitEnded(t, p.Pid)
	// The last ship comes before Ended.
	if got, _, _ := sink.object(key + "/stdout"); string(got) != "one\ntwo\n" {
		t.Fatalf("stdout object at Ended = %q", got)
	}
	if got, ok, _ := sink.object(key + "/stderr"); !ok || len(got) != 0 {
		t.Fatalf("stderr object = %q, %v; want empty", got, ok)
	}
	if ended.StdoutBytes != 8 {
		t.Errorf("Ended: %d bytes of stdout, want 8", ended.StdoutBytes)
	}

	// A stream over the limit ships its last ShipLimit bytes.
	q := start(t, m, `seq 1 3000`, false)
	reg.awaitEnded(t, q.Pid)
	whole := logs(t, m, q.Pid, LogRange{Max: 1 << 20}).Stdout
	got, _, _ := sink.object(ProcessKey{Epoch: 7, Pid: q.Pid}.String() + "/stdout")
	if len(whole) < 10000 || string(got) != string(whole[len(whole)-1000:]) {
		t.Fatalf("shipped %d bytes ending %q; want the last 1000 of %d", len(got), got[max(len(got)-10, 0):], len(whole))
	}
}

func TestShippingRetries(t *testing.T) {
	t.Parallel()
	m, reg, sink := newManager(t, Config{ShipInterval: 10 * time.Millisecond})
	sink.mu.Lock()
	sink.fail = errSinkDown
	sink.mu.Unlock()
	p := start(t, m, `echo out`, false)
	reg.awaitEnded(t, p.Pid) // Ended does not wait for the sink to recover
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()
	sink.awaitObject(t, ProcessKey{Pid: p.Pid}.String()+"/stdout", "out\n")
}

func TestRegistryOrder(t *testing.T) {
	t.Parallel()
	m, reg, _ := newManager(t, Config{})
	a := start(t, m, `exit 1`, false)
	b := start(t, m, `sleep 600`, false)
	_, end := runForeground(t, m, `sleep 300 &`)
	reg.awaitEnded(t, a.Pid)
	m.Kill(context.Background(), KillRequest{All: true, Grace: 10 * time.Second, Reason: "test"})
	reg.awaitEnded(t, b.Pid)
	reg.awaitEnded(t, end.Adopted[0])
	// A leftover of b (see below) is registered before b ends.
	calls, _ := reg.snapshot()
	for _, c := range calls {
		if c.info.Adopted && c.info.Parent == b.Pid {
			reg.awaitEnded(t, c.info.Pid)
		}
	}

	calls, _ = reg.snapshot()
	seen := map[int]string{}
	for _, c := range calls {
		pid := c.info.Pid
		switch {
		case !c.ended && seen[pid] == "":
			seen[pid] = "started"
			if c.info.Status != StatusRunning {
				t.Errorf("Started(%d) with status %s", pid, c.info.Status)
			}
		case c.ended && seen[pid] == "started":
			seen[pid] = "ended"
		default:
			t.Errorf("call %+v out of order (after %q)", c, seen[pid])
		}
	}
	want := map[int]string{a.Pid: "ended", b.Pid: "ended", end.Adopted[0]: "ended"}
	for pid, state := range want {
		if seen[pid] != state {
			t.Errorf("process %d: %q, want %q; calls %+v", pid, seen[pid], state, calls)
		}
	}
	// b's bash runs `sleep 600` as its child, in its group. The kill
	// signals the whole group, and the child may still be alive at the
	// moment b's bash exits: it is then one of b's leftovers, registered
	// under b and killed with it. Any other process would be one the test
	// did not start, such as the foreground command, which is never
	// registered.
	for _, c := range calls {
		pid := c.info.Pid
		leftoverOfB := want[pid] == "" && c.info.Adopted && c.info.Parent == b.Pid
		switch {
		case want[pid] == "" && !leftoverOfB:
			t.Errorf("registry saw %+v, neither a process the test started nor b's leftover; calls %+v", c.info, calls)
		case leftoverOfB && seen[pid] != "ended":
			t.Errorf("b's leftover %d was not ended; calls %+v", pid, calls)
		case c.ended && (pid == b.Pid || leftoverOfB) && (c.info.Status != StatusKilled || c.info.Reason != "test"):
			t.Errorf("Ended(%d) = %+v, want killed by the test", pid, c.info)
		}
	}
}

func TestLiveChanged(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	changed := m.LiveChanged()
	p := start(t, m, `cat`, true)
	select {
	case <-changed:
	default:
		t.Fatal("LiveChanged not closed by Start")
	}
	changed = m.LiveChanged()
	if m.Live() != 1 {
		t.Fatalf("Live = %d", m.Live())
	}
	m.Write(context.Background(), p.Pid, nil, true)
	select {
	case <-changed:
	case <-time.After(20 * time.Second):
		t.Fatal("LiveChanged not closed when the process ended")
	}
	if m.Live() != 0 {
		t.Fatalf("Live = %d", m.Live())
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a pid: %q", s)
	}
	return n
}

func TestWriteBlockedWhenTheProcessEnds(t *testing.T) {
	t.Parallel()
	m, _, _ := newManager(t, Config{})
	p := start(t, m, `sleep 600`, true) // never reads its stdin
	result := make(chan error, 1)
	go func() {
		_, err := m.Write(context.Background(), p.Pid, make([]byte, 1<<20), false)
		result <- err
	}()
	if _, err := m.Kill(context.Background(), KillRequest{Pid: p.Pid, Signal: syscall.SIGKILL}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-result:
		if !errors.Is(err, ErrNoStdin) {
			t.Fatalf("Write = %v, want ErrNoStdin", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Write still blocked after its process ended")
	}
}
