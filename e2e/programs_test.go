package e2e

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// program is a dispatcher or reaper running as a process of its own, so
// that a test can SIGKILL it as a crash would, and start it again.
type program struct {
	t    *testing.T
	args []string
	env  []string
	logs *syncBuffer

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	restarts int
}

// program starts `sandrun ARGS...` against the world's system; it is
// killed when the test ends.
func (w *world) program(args ...string) *program {
	w.t.Helper()
	env := append(os.Environ(), w.local.Env()...)
	env = append(env, "SANDRUN_LOG_LEVEL=warn", "SANDRUN_REAPER_INTERVAL=500ms", "SANDRUN_PUBLISH_AFTER=5s", "SANDRUN_ORPHAN_AFTER=30s")
	p := &program{t: w.t, args: args, env: env, logs: w.logs}
	p.start()
	w.t.Cleanup(p.kill)
	return p
}

func (p *program) start() {
	p.t.Helper()
	cmd := exec.Command(sandrunBin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start sandrun %s: %v", strings.Join(p.args, " "), err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *program) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// crash kills the process and starts another in its place.
func (p *program) crash() {
	p.kill()
	p.start()
	p.mu.Lock()
	p.restarts++
	p.mu.Unlock()
}

// pid is the running process's pid.
func (p *program) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}
