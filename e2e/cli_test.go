package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/procfs"
)

// TestReadmeQuickStart does what the README tells a new user: start
// `sandrun dev`, then run `sandrun exec -- echo hello` from another shell.
func TestReadmeQuickStart(t *testing.T) {
	home := t.TempDir()
	// A clean environment, as a new terminal has: no emulator variables.
	environ := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SANDRUN_HOME=" + home}

	d := startDev(t, environ)
	devErr := d.stderr

	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(sandrunBin, args...)
		cmd.Env = environ
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("run sandrun %v: %v", args, err)
		}
		return out.String(), errOut.String(), code
	}
	if out, errOut, code := run("exec", "--", "echo", "hello"); out != "hello\n" || code != 0 {
		t.Fatalf("sandrun exec -- echo hello: stdout %q, exit %d, stderr %s\ndev: %s", out, code, errOut, devErr.String())
	}
	if out, _, code := run("exec", "--", "echo oops >&2; exit 7"); out != "" || code != 7 {
		t.Fatalf("exit code: stdout %q exit %d, want 7", out, code)
	}
	if _, errOut, code := run("exec", "--session", "../x", "--", "true"); code != 1 || !strings.Contains(errOut, "session_id") {
		t.Fatalf("unsafe session: exit %d, stderr %q", code, errOut)
	}

	// Files both ways, small ones in the request and a large one through
	// Cloud Storage, then ls and cat.
	local := t.TempDir()
	small, large := filepath.Join(local, "small.txt"), filepath.Join(local, "large.bin")
	os.WriteFile(small, []byte("small file\n"), 0o640)
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16)
	os.WriteFile(large, big, 0o644)
	for _, args := range [][]string{{"cp", small, ":docs/small.txt"}, {"cp", large, "default:large.bin"}} {
		if _, errOut, code := run(args...); code != 0 {
			t.Fatalf("sandrun %v: exit %d: %s", args, code, errOut)
		}
	}
	if out, errOut, code := run("cat", "docs/small.txt"); out != "small file\n" || code != 0 {
		t.Fatalf("sandrun cat: %q exit %d: %s", out, code, errOut)
	}
	if out, _, code := run("ls", "-r"); code != 0 || !strings.Contains(out, "-rw-r----- ") && !strings.Contains(out, "0640") || !strings.Contains(out, "docs/small.txt") || !strings.Contains(out, "large.bin") {
		t.Fatalf("sandrun ls -r: exit %d\n%s", code, out)
	}
	back := filepath.Join(local, "back.bin")
	if _, errOut, code := run("cp", ":large.bin", back); code != 0 {
		t.Fatalf("sandrun cp back: exit %d: %s", code, errOut)
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got, big) {
		t.Fatalf("the large file came back as %d different bytes", len(got))
	}
	if out, _, code := run("exec", "--", "sleep 300 &"); code != 0 || out != "" {
		t.Fatalf("start a background sleep: exit %d %q", code, out)
	}
	if out, _, code := run("ps"); code != 0 || !strings.Contains(out, "sleep 300") {
		t.Fatalf("sandrun ps: exit %d\n%s", code, out)
	}
	if out, _, code := run("kill", "--pattern", "sleep 300"); code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("sandrun kill: exit %d %q", code, out)
	}

	// Ctrl-C stops everything it started, and its environment file goes.
	d.interrupt(t)
	if _, err := os.Stat(filepath.Join(home, "dev.env")); !os.IsNotExist(err) {
		t.Errorf("dev.env left behind: %v", err)
	}
	// Hosts are not dumpable: their command line, not their environment,
	// tells them. No other test runs hosts of this binary meanwhile.
	if left := procfs.Running(sandrunBin, "executor"); len(left) > 0 {
		t.Errorf("hosts left running after sandrun dev stopped: %v", left)
	}
}

// TestDevKeepsSessionsAcrossARestart: a session's working directory,
// variables and files are there after `sandrun dev` was stopped and
// started again with the same home (issue 19).
func TestDevKeepsSessionsAcrossARestart(t *testing.T) {
	home := t.TempDir()
	environ := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SANDRUN_HOME=" + home}
	run := func(command string) string {
		t.Helper()
		cmd := exec.Command(sandrunBin, "exec", "--session", "kept", "--", command)
		cmd.Env = environ
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sandrun exec %q: %v", command, err)
		}
		return string(out)
	}
	d := startDev(t, environ)
	run("mkdir -p work && cd work && echo kept > notes.txt && export KEPT=yes")
	d.interrupt(t)

	startDev(t, environ)
	if got, want := run(`basename "$PWD"; echo "$KEPT"; cat notes.txt`), "work\nyes\nkept\n"; got != want {
		t.Fatalf("after the restart: %q, want %q", got, want)
	}
}

// devProcess is a `sandrun dev` a test started.
type devProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed once it exited; err is then Wait's
	err    error
}

// interrupt stops d as Ctrl-C does and waits until it exited cleanly.
func (d *devProcess) interrupt(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
		if d.err != nil {
			t.Fatalf("sandrun dev exited with %v: %s", d.err, d.stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("sandrun dev did not stop within a minute of Ctrl-C")
	}
}

// startDev starts `sandrun dev` on free ports with env (a new terminal's:
// PATH, HOME, SANDRUN_HOME), waits until it says it is running, and kills
// it when the test ends unless it exited.
func startDev(t *testing.T, env []string) *devProcess {
	t.Helper()
	d := &devProcess{cmd: exec.Command(sandrunBin, "dev", "--base-port", "0", "--log-level", "warn"), stderr: &syncBuffer{}, done: make(chan struct{})}
	d.cmd.Env = env
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "sandrun is running") {
				ready <- true
			}
		}
		close(ready)
		d.err = d.cmd.Wait() // after the last read of stdout, as Wait requires
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("sandrun dev ended before it was ready: %s", d.stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("sandrun dev not ready after a minute: %s", d.stderr.String())
	}
	return d
}
