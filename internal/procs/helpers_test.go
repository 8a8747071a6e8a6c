//go:build linux

package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/shell"
	"golang.org/x/sys/unix"
)

// testState is a session state with its own home directory.
func testState(t *testing.T) shell.State {
	t.Helper()
	home := t.TempDir()
	return shell.State{Cwd: home, Env: map[string]string{
		"PATH": "/usr/local/bin:/usr/bin:/bin",
		"HOME": home,
		"LANG": "C.UTF-8",
	}}
}

// newManager returns a Manager with a fake registry and sink, closed when
// the test ends (which must succeed and leave no process running).
func newManager(t *testing.T, cfg Config) (*Manager, *fakeRegistry, *fakeSink) {
	t.Helper()
	reg, sink := newFakeRegistry(), newFakeSink()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "procs")
	}
	if cfg.Registry == nil {
		cfg.Registry = reg
	}
	if cfg.Sink == nil {
		cfg.Sink = sink
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.CloseGrace == 0 {
		cfg.CloseGrace = 500 * time.Millisecond
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var pids []int
		for _, p := range m.List() {
			pids = append(pids, p.Pid)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, pid := range pids {
			if running(pid) {
				t.Errorf("process %d still running after Close", pid)
			}
		}
	})
	return m, reg, sink
}

// running reports whether pid is a live (not zombie) process.
func running(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

// awaitGone waits until pid is not a live process: it may be a zombie that
// init reaps when it likes, so pidfd readability is what is awaited.
func awaitGone(t *testing.T, pid int) {
	t.Helper()
	fd, err := openPidfd(pid)
	if err != nil {
		return // reaped
	}
	defer fd.Close()
	awaitEnded(t, fmt.Sprintf("process %d", pid), fd)
}

// awaitEnded waits until the process pinned by fd ended.
func awaitEnded(t *testing.T, what string, fd *os.File) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- awaitPidfd(fd) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s still runs", what)
	}
}

func start(t *testing.T, m *Manager, script string, keepStdin bool) ProcessInfo {
	t.Helper()
	info, err := m.Start(testState(t), shell.Command{Script: script}, keepStdin)
	if err != nil {
		t.Fatalf("Start(%q): %v", script, err)
	}
	if info.Status != StatusRunning || info.Pid <= 0 || info.Command != script {
		t.Fatalf("Start(%q) = %+v", script, info)
	}
	return info
}

func wait(t *testing.T, m *Manager, pid int) ProcessInfo {
	t.Helper()
	info, err := m.Wait(context.Background(), pid, 20*time.Second)
	if err != nil {
		t.Fatalf("Wait(%d): %v", pid, err)
	}
	return info
}

func logs(t *testing.T, m *Manager, pid int, r LogRange) Output {
	t.Helper()
	out, err := m.Logs(pid, r)
	if err != nil {
		t.Fatalf("Logs(%d): %v", pid, err)
	}
	return out
}

func find(infos []ProcessInfo, pid int) (ProcessInfo, bool) {
	for _, p := range infos {
		if p.Pid == pid {
			return p, true
		}
	}
	return ProcessInfo{}, false
}

func code(p ProcessInfo) string {
	if p.ExitCode == nil {
		return "nil"
	}
	return strconv.Itoa(*p.ExitCode)
}

// hostOutput creates the output files of a foreground command, as the host
// does, in a directory that is not the Manager's.
func hostOutput(t *testing.T) (stdout, stderr *os.File) {
	t.Helper()
	dir := t.TempDir()
	var err error
	if stdout, err = os.Create(filepath.Join(dir, "req.stdout")); err != nil {
		t.Fatal(err)
	}
	if stderr, err = os.Create(filepath.Join(dir, "req.stderr")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdout.Close(); stderr.Close() })
	return stdout, stderr
}

// runForeground runs script as the host runs a foreground command: through
// shell, announced to the Manager, ended with its result. Then, as the
// host does, it closes and removes its output files.
func runForeground(t *testing.T, m *Manager, script string) (shell.Result, ForegroundEnd) {
	t.Helper()
	stdout, stderr := hostOutput(t)
	spool := t.TempDir()
	run, err := shell.Start(context.Background(), spool, testState(t), shell.Command{Script: script, Stdout: stdout, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	fg, err := m.BeginForeground(ForegroundSpec{Process: run, Command: script, Stdout: stdout, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	end := fg.End(res)
	for _, f := range []*os.File{stdout, stderr} {
		f.Close()
		os.Remove(f.Name())
	}
	return res, end
}

// mkfifo returns the path of a new FIFO.
func mkfifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// readFifo reads what a process writes to the FIFO at path, up to its
// closing: an awaitable rendezvous with a script.
func readFifo(t *testing.T, path string) string {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := os.ReadFile(path) // opening blocks until a writer opens
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return string(r.b)
	case <-time.After(20 * time.Second):
		t.Fatalf("nothing written to %s", path)
		return ""
	}
}

// python returns the path of a real python3 interpreter (not a version
// manager's shim, which would not be the process's command line), or skips.
func python(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3 does not run: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// fakeRegistry records the calls it gets, in order.
type fakeRegistry struct {
	mu      sync.Mutex
	calls   []regCall
	changed chan struct{}
}

type regCall struct {
	ended bool
	info  ProcessInfo
}

func newFakeRegistry() *fakeRegistry { return &fakeRegistry{changed: make(chan struct{})} }

func (r *fakeRegistry) Started(_ context.Context, p ProcessInfo) error {
	r.add(regCall{info: p})
	return nil
}

func (r *fakeRegistry) Ended(_ context.Context, p ProcessInfo) error {
	r.add(regCall{ended: true, info: p})
	return nil
}

func (r *fakeRegistry) add(c regCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *fakeRegistry) snapshot() ([]regCall, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]regCall(nil), r.calls...), r.changed
}

// awaitEnded waits until Ended was called for pid and returns what it got.
func (r *fakeRegistry) awaitEnded(t *testing.T, pid int) ProcessInfo {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		calls, changed := r.snapshot()
		for _, c := range calls {
			if c.ended && c.info.Pid == pid {
				return c.info
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("Registry.Ended(%d) not called; calls: %+v", pid, calls)
		}
	}
}

// fakeSink keeps the last copy shipped of each stream.
type fakeSink struct {
	mu      sync.Mutex
	objects map[string][]byte
	ships   int
	changed chan struct{}
	fail    error
}

func newFakeSink() *fakeSink {
	return &fakeSink{objects: map[string][]byte{}, changed: make(chan struct{})}
}

func (s *fakeSink) Ship(ctx context.Context, key ProcessKey, stream string, r io.Reader, size int64) error {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("reader yielded %d bytes, not size %d", n, size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.objects[key.String()+"/"+stream] = buf.Bytes()
	s.ships++
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *fakeSink) object(name string) ([]byte, bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[name]
	return b, ok, s.changed
}

// awaitObject waits until the object name holds want.
func (s *fakeSink) awaitObject(t *testing.T, name, want string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		got, _, changed := s.object(name)
		if string(got) == want {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("object %s = %q, want %q", name, got, want)
		}
	}
}

var errSinkDown = errors.New("sink down")

// kill is syscall.Kill that fails the test on error.
func kill(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}
