//go:build linux

package shell

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// session is a test session: its own home, spool directory and State,
// which each run advances as the executor would.
type session struct {
	t     *testing.T
	spool string
	home  string
	st    State
}

func newSession(t *testing.T) *session {
	t.Helper()
	root := t.TempDir()
	s := &session{t: t, spool: filepath.Join(root, "spool"), home: filepath.Join(root, "home")}
	for _, d := range []string{s.spool, s.home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.st = State{Cwd: s.home, Env: map[string]string{
		"PATH": "/usr/local/bin:/usr/bin:/bin",
		"HOME": s.home,
		"LANG": "C.UTF-8",
	}}
	return s
}

// output is the stdout and stderr of one run.
type output struct{ stdout, stderr string }

// run runs script with cmd's other fields, checks that the spool directory
// is left empty, and moves the session to the state the command left.
func (s *session) run(script string, cmd Command) (Result, output) {
	s.t.Helper()
	res, out, err := s.tryRun(context.Background(), script, cmd)
	if err != nil {
		s.t.Fatalf("Run(%q): %v", script, err)
	}
	return res, out
}

func (s *session) tryRun(ctx context.Context, script string, cmd Command) (Result, output, error) {
	s.t.Helper()
	stdout, stderr := s.outFile("stdout"), s.outFile("stderr")
	cmd.Script, cmd.Stdout, cmd.Stderr = script, stdout, stderr
	res, err := Run(ctx, s.spool, s.st, cmd)
	if err == nil {
		s.st = res.State
	}
	if left, _ := os.ReadDir(s.spool); len(left) != 0 {
		s.t.Errorf("spool directory not cleaned: %v", left)
	}
	return res, output{readFile(s.t, stdout.Name()), readFile(s.t, stderr.Name())}, err
}

func (s *session) outFile(name string) *os.File {
	s.t.Helper()
	f, err := os.CreateTemp(s.t.TempDir(), name)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { f.Close() })
	return f
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// killLeftovers ends processes a command left behind and waits until they
// are gone, so that no test leaves a process running.
func killLeftovers(t *testing.T, pids []int) {
	t.Helper()
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if err := awaitExit(pids, time.Now().Add(10*time.Second)); err != nil {
			t.Errorf("await leftovers: %v", err)
		}
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("leftover %d still alive", pid)
			}
		}
	})
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	_, live := procGroup(pid)
	return live
}

func TestStatePersistsAcrossCommands(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	s.run(`mkdir -p work/sub && cd work/sub && export A=1 B='two words' && C=notexported`, Command{})
	_, out := s.run(`pwd; echo "$A|$B|${C-unset}"`, Command{})
	want := filepath.Join(s.home, "work/sub") + "\n1|two words|unset\n"
	if out.stdout != want {
		t.Fatalf("stdout = %q, want %q", out.stdout, want)
	}
	s.run(`unset A; cd ..`, Command{})
	_, out = s.run(`pwd; echo "${A-unset}"`, Command{})
	if want := filepath.Join(s.home, "work") + "\nunset\n"; out.stdout != want {
		t.Fatalf("after unset: stdout = %q, want %q", out.stdout, want)
	}
	if _, ok := s.st.Env["A"]; ok {
		t.Errorf("A still in state: %v", s.st.Env)
	}
	for _, name := range []string{"PWD", "SHLVL", "_"} {
		if _, ok := s.st.Env[name]; ok {
			t.Errorf("bash bookkeeping %s saved in state", name)
		}
	}
}

func TestOldpwdPersists(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	s.run(`cd /usr`, Command{})
	s.run(`cd /etc`, Command{})
	_, out := s.run(`cd - >/dev/null; pwd`, Command{})
	if out.stdout != "/usr\n" {
		t.Fatalf("cd - went to %q, want /usr", out.stdout)
	}
}

func TestSymlinkedCwdKeepsLogicalPath(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	s.run(`mkdir real && ln -s real link && cd link`, Command{})
	_, out := s.run(`pwd`, Command{})
	if want := filepath.Join(s.home, "link") + "\n"; out.stdout != want {
		t.Fatalf("pwd = %q, want %q", out.stdout, want)
	}
}

func TestOutputIsExact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script, stdout, stderr string
	}{
		{"empty", `true`, "", ""},
		{"no trailing newline", `printf abc; printf err >&2`, "abc", "err"},
		{"binary", `printf '\000\001\377\n\r'`, "\x00\x01\xff\n\r", ""},
		{"unicode", `echo "héllo 世界"`, "héllo 世界\n", ""},
		{"xtrace shows only the command", `set -x; printf x`, "x", "++ printf x\n"},
		{"lineno counts from the command", "echo $LINENO\necho $LINENO", "1\n2\n", ""},
		{"no positional parameters", `echo "$# $0"`, "0 bash\n", ""},
		{"user trap output", `trap 'echo bye' EXIT; echo hi`, "hi\nbye\n", ""},
		// Reopening the output (which truncates a regular file) loses
		// nothing, as in a terminal or a pipe.
		{"stderr reopened between writes", `echo x >&2; echo y > /dev/stderr; echo z >&2`, "", "x\ny\nz\n"},
		{"stdout reopened after a write", `echo a; echo b > /dev/stdout`, "a\nb\n", ""},
		{"tee to /dev/stderr", `echo a >&2; echo b | tee /dev/stderr; echo c >&2`, "b\n", "a\nb\nc\n"},
		{"tee to /dev/stdout", `echo a; echo b | tee /dev/stdout; echo c`, "a\nb\nb\nc\n", ""},
		{"exec reopens stdout", `echo 1; exec > /dev/stdout; echo 2`, "1\n2\n", ""},
		{"child reopens stdout", `echo 1; bash -c 'echo 2 > /dev/stdout'; echo 3`, "1\n2\n3\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			_, out := s.run(tt.script, Command{})
			if out.stdout != tt.stdout || out.stderr != tt.stderr {
				t.Fatalf("got stdout %q stderr %q, want %q and %q", out.stdout, out.stderr, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestBehavesLikeBashC compares a command with the same script run by a
// plain `bash -c` in the same directory, environment and kind of files:
// the wrapper must add nothing to the output and change no exit status.
func TestBehavesLikeBashC(t *testing.T) {
	t.Parallel()
	scripts := []string{
		`nosuchcommand-xyz`,
		"echo one\nnosuchcommand-xyz\necho three",
		`if then fi (`,
		"echo a\n( echo b",
		`set -u; echo $nosuchvar`,
		`echo ${nope:?is required}`,
		`cd /nonexistent`,
		`exit 300`,
		`return 5`,
		`printf 'no newline'; printf 'err' >&2; exit 9`,
		`echo "$#" "$0" "${BASH_ARGV[*]-}"`,
		`cat; echo $?`,
		`shopt -p expand_aliases; set -o | grep -E '^(errexit|nounset|xtrace) '`,
		"set -v\necho verbose",
		`set -euC -o pipefail; echo x; false | true; false`,
		`trap 'echo trapped >&2; exit 4' EXIT; echo body`,
		`shopt -s expand_aliases; alias builtin=false set=false; echo aliased`,
	}
	for _, script := range scripts {
		t.Run(script, func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			res, out := s.run(script, Command{})
			wantCode, want := plainBash(t, s, script)
			// The one documented difference: bash names eval, not -c,
			// as the source of a syntax error.
			out.stderr = strings.ReplaceAll(out.stderr, "bash: eval: line", "bash: -c: line")
			if res.ExitCode != wantCode || out != want {
				t.Fatalf("got code %d %+v\nwant code %d %+v", res.ExitCode, out, wantCode, want)
			}
		})
	}
}

// plainBash runs script with `bash -c` as the session would start it.
func plainBash(t *testing.T, s *session, script string) (int, output) {
	t.Helper()
	stdout, stderr := s.outFile("plain-stdout"), s.outFile("plain-stderr")
	c := exec.Command("/bin/bash", "-c", script)
	c.Args[0] = "bash"
	c.Dir, c.Env, c.Stdout, c.Stderr = s.st.Cwd, commandEnv(s.st.Env, nil), stdout, stderr
	err := c.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	return c.ProcessState.ExitCode(), output{readFile(t, stdout.Name()), readFile(t, stderr.Name())}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		script     string
		code       int
		signal     string
		stateSaved bool
	}{
		{"true", `true`, 0, "", true},
		{"false", `false`, 1, "", true},
		{"last status", `(exit 42)`, 42, "", true},
		{"exit", `cd /; exit 7; echo unreachable`, 7, "", true},
		{"syntax error", `if then fi (`, 2, "", true},
		{"set -e", `set -e; false; echo unreachable`, 1, "", true},
		{"killed", `kill -9 $$`, 128 + 9, "SIGKILL", false},
		{"exec", `exec sh -c 'exit 3'`, 3, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			res, out := s.run(tt.script, Command{})
			if res.ExitCode != tt.code || res.Signal != tt.signal || res.StateSaved != tt.stateSaved {
				t.Fatalf("got code %d signal %q saved %v, want %d %q %v (stderr %q)",
					res.ExitCode, res.Signal, res.StateSaved, tt.code, tt.signal, tt.stateSaved, out.stderr)
			}
			if strings.Contains(out.stdout, "unreachable") {
				t.Errorf("script went on after it should have stopped")
			}
			if res.TimedOut || res.Canceled || len(res.Leftovers) != 0 {
				t.Errorf("unexpected result %+v", res)
			}
		})
	}
}

func TestStateSavedWhicheverWayTheShellEnds(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, script string }{
		{"exit", `cd /usr && export V=x && exit 3`},
		{"set -e", `set -e; cd /usr; export V=x; false`},
		{"error in sourced file", `printf 'cd /usr; export V=x\nif (' >bad.sh; set -e; . ./bad.sh`},
		{"options that break naive traps", `set -euxvC -o pipefail; cd /usr; export V=x; unset PWD`},
		{"own exit trap", `trap 'echo bye' EXIT; cd /usr; export V=x`},
		{"empty PATH", `cd /usr; export V=x PATH=`},
		{"aliases over builtins", `shopt -s expand_aliases; alias builtin=false set=false printf=false; \cd /usr; export V=x`},
		{"functions named like tools", `env() { echo fake; }; pwd() { echo /fake; }; cd /usr; export V=x`},
		{"functions named like the save's builtins", `compgen() { :; }; mapfile() { :; }; printf() { :; }; eval() { :; }; set() { :; }; cd /usr; export V=x`},
		{"posix mode, odd shopts and IFS", `set -o posix; shopt -s nocasematch nullglob failglob extglob; IFS=x; cd /usr; export V=x`},
		{"ERR and DEBUG traps", `trap 'false' ERR; trap 'false' DEBUG; set -ET; cd /usr; export V=x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			res, out := s.run(tt.script, Command{})
			if !res.StateSaved || s.st.Cwd != "/usr" || s.st.Env["V"] != "x" {
				t.Fatalf("saved %v cwd %q V %q; stderr %q", res.StateSaved, s.st.Cwd, s.st.Env["V"], out.stderr)
			}
		})
	}
}

func TestStateNotSavedKeepsPrevious(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	s.run(`export KEEP=1`, Command{})
	before := s.st.Clone()
	res, _ := s.run(`cd /usr; export KEEP=2; exec true`, Command{})
	if res.StateSaved {
		t.Fatal("exec'd shell cannot have saved its state")
	}
	if s.st.Cwd != before.Cwd || s.st.Env["KEEP"] != "1" {
		t.Fatalf("state = %+v, want %+v", s.st, before)
	}
}

func TestPerCommandEnvAndDirDoNotPersist(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	if err := os.Mkdir(filepath.Join(s.home, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.run(`export SHARED=session`, Command{})

	_, out := s.run(`pwd; echo "$ONLY $SHARED"`, Command{
		Dir: "sub",
		Env: map[string]string{"ONLY": "command", "SHARED": "command"},
	})
	if want := filepath.Join(s.home, "sub") + "\ncommand command\n"; out.stdout != want {
		t.Fatalf("stdout = %q, want %q", out.stdout, want)
	}
	if s.st.Cwd != s.home || s.st.Env["SHARED"] != "session" {
		t.Fatalf("command-only Dir/Env leaked: %+v", s.st)
	}
	if _, ok := s.st.Env["ONLY"]; ok {
		t.Fatalf("command-only ONLY leaked: %+v", s.st.Env)
	}

	// What the command itself changes persists.
	s.run(`export ONLY=mine; cd /usr`, Command{Dir: "sub", Env: map[string]string{"ONLY": "command"}})
	if s.st.Cwd != "/usr" || s.st.Env["ONLY"] != "mine" {
		t.Fatalf("command's own changes lost: cwd %q ONLY %q", s.st.Cwd, s.st.Env["ONLY"])
	}
	s.run(`unset SHARED`, Command{Env: map[string]string{"SHARED": "command"}})
	if _, ok := s.st.Env["SHARED"]; ok {
		t.Fatalf("command's unset lost: %v", s.st.Env)
	}
}

func TestCommandDirMustExist(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	_, _, err := s.tryRun(context.Background(), `true`, Command{Dir: "missing"})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestInvalidInputRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		st   State
		cmd  Command
	}{
		{"bad name", State{Env: map[string]string{"A-B": "x"}}, Command{}},
		{"NUL in value", State{Env: map[string]string{"A": "x\x00y"}}, Command{}},
		{"reserved name", State{}, Command{Env: map[string]string{"__sandrun_state": "/etc/passwd"}}},
		{"relative cwd", State{Cwd: "rel"}, Command{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Run(context.Background(), t.TempDir(), tt.st, tt.cmd)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestEnvValuesRoundTrip(t *testing.T) {
	t.Parallel()
	values := map[string]string{
		"NL":      "line1\nline2\n",
		"EQ":      "a=b==c",
		"QUOTES":  `it's "quoted" \ $HOME`,
		"UNI":     "héllo 世界 🚀",
		"EMPTY":   "",
		"CONTROL": "\t\x01\x7f",
	}
	s := newSession(t)
	for k, v := range values {
		s.st.Env[k] = v
	}
	// Values given by the caller survive a command.
	s.run(`true`, Command{})
	// Values set by a command survive too.
	s.run(`export MADE="$NL$QUOTES"`, Command{})
	values["MADE"] = values["NL"] + values["QUOTES"]
	for k, v := range values {
		if got, ok := s.st.Env[k]; !ok || got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
		_, out := s.run(`printf %s "$`+k+`"`, Command{})
		if out.stdout != v {
			t.Errorf("$%s in the next command = %q, want %q", k, out.stdout, v)
		}
	}
}

func TestCallerEnvironmentNotInherited(t *testing.T) {
	t.Setenv("SANDRUN_TEST_SECRET", "hunter2")
	s := newSession(t)
	_, out := s.run(`env`, Command{})
	if strings.Contains(out.stdout, "hunter2") {
		t.Fatalf("caller's environment leaked into the command:\n%s", out.stdout)
	}
	if _, ok := s.st.Env["SANDRUN_TEST_SECRET"]; ok {
		t.Fatal("caller's environment leaked into the state")
	}
}

func TestDeletedCwdFallsBack(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	s.run(`mkdir gone && cd gone && rmdir ../gone`, Command{})
	if want := filepath.Join(s.home, "gone"); s.st.Cwd != want {
		t.Fatalf("cwd = %q, want %q", s.st.Cwd, want)
	}
	res, out := s.run(`pwd`, Command{})
	if !res.CwdFallback {
		t.Error("CwdFallback not reported")
	}
	if out.stdout != s.home+"\n" || out.stderr != "" {
		t.Fatalf("stdout %q stderr %q, want %q and nothing", out.stdout, out.stderr, s.home+"\n")
	}
	if s.st.Cwd != s.home {
		t.Fatalf("cwd after fallback = %q, want %q", s.st.Cwd, s.home)
	}
}

func TestTimeoutKillsWholeGroup(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	// The grandchild is a child of the inner bash, not of the command's
	// shell, but is in the command's process group.
	res, _ := s.run(`cd /usr; bash -c 'sleep 600 & echo $! >'"$HOME"'/gc.pid; wait'; echo unreachable`,
		Command{Timeout: 2 * time.Second})
	if !res.TimedOut || res.ExitCode != TimeoutExitCode {
		t.Fatalf("result %+v, want a timeout", res)
	}
	if len(res.Leftovers) != 0 {
		t.Fatalf("leftovers after timeout: %v", res.Leftovers)
	}
	gc, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(s.home, "gc.pid"))))
	if err != nil {
		t.Fatalf("grandchild did not start within the timeout: %v", err)
	}
	if alive(gc) {
		t.Fatalf("grandchild %d survived the timeout", gc)
	}
	// bash runs its EXIT trap on SIGTERM, so the cd survives.
	if !res.StateSaved || s.st.Cwd != "/usr" {
		t.Errorf("state after SIGTERM: saved %v cwd %q", res.StateSaved, s.st.Cwd)
	}
}

func TestTimeoutEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	// An ignored SIGTERM is inherited through exec, so sleep ignores it too.
	res, _ := s.run(`trap '' TERM; sleep 600`, Command{Timeout: 200 * time.Millisecond, KillGrace: 200 * time.Millisecond})
	if !res.TimedOut || res.Signal != "SIGKILL" || len(res.Leftovers) != 0 {
		t.Fatalf("result %+v, want a timeout ended by SIGKILL", res)
	}
}

func TestContextCancelEndsCommand(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := s.outFile("stdout")
	r, err := Start(ctx, s.spool, s.st, Command{Script: `sleep 600`, Stdout: stdout})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	res, err := r.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Canceled || res.TimedOut || res.Signal != "SIGTERM" || res.ExitCode != 128+15 {
		t.Fatalf("result %+v, want canceled by SIGTERM", res)
	}
}

func TestContextDeadlineIsTimeout(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, _, err := s.tryRun(ctx, `sleep 600`, Command{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != TimeoutExitCode {
		t.Fatalf("result %+v, want a timeout", res)
	}
}

func TestSignalRunningCommand(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	r, err := Start(context.Background(), s.spool, s.st, Command{Script: `sleep 600`})
	if err != nil {
		t.Fatal(err)
	}
	if r.Pid() <= 0 {
		t.Fatalf("Pid() = %d", r.Pid())
	}
	if err := r.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res, err := r.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Signal != "SIGKILL" || len(res.Leftovers) != 0 {
		t.Fatalf("result %+v, want killed with no leftovers", res)
	}
	<-r.Done()
	if err := r.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("Signal after exit = %v, want os.ErrProcessDone", err)
	}
}

func TestBackgroundProcessIsLeftover(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	// A child, and a grandchild whose parent exited at once.
	res, out := s.run(`sleep 600 & echo $!; ( sleep 600 & echo $! )`, Command{})
	killLeftovers(t, res.Leftovers)
	var pids []int
	for _, f := range strings.Fields(out.stdout) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	if !slices.Equal(res.Leftovers, pids) {
		t.Fatalf("Leftovers = %v, want %v", res.Leftovers, pids)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("Run killed background process %d", pid)
		}
	}
	// The result did not wait for the background process.
	if res.Duration > 30*time.Second {
		t.Fatalf("Duration = %v", res.Duration)
	}
}

func TestStdin(t *testing.T) {
	t.Parallel()
	t.Run("reader", func(t *testing.T) {
		t.Parallel()
		s := newSession(t)
		_, out := s.run(`cat`, Command{Stdin: strings.NewReader("from a reader")})
		if out.stdout != "from a reader" {
			t.Fatalf("stdout = %q", out.stdout)
		}
	})
	t.Run("nil is /dev/null", func(t *testing.T) {
		t.Parallel()
		s := newSession(t)
		_, out := s.run(`cat; echo done`, Command{})
		if out.stdout != "done\n" {
			t.Fatalf("stdout = %q", out.stdout)
		}
	})
	t.Run("pipe the caller keeps writing", func(t *testing.T) {
		t.Parallel()
		s := newSession(t)
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pr.Close(); pw.Close() })
		stdout := s.outFile("stdout")
		r, err := Start(context.Background(), s.spool, s.st, Command{Script: `read -r line; echo "got $line"`, Stdin: pr, Stdout: stdout})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.WriteString("hello\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Wait(); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, stdout.Name()); got != "got hello\n" {
			t.Fatalf("stdout = %q", got)
		}
	})
}

func TestLargeOutputGoesToFilesWithFlatMemory(t *testing.T) {
	// Not parallel: it measures the allocations of the whole test binary.
	s := newSession(t)
	stdout, stderr := s.outFile("stdout"), s.outFile("stderr")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := Run(context.Background(), s.spool, s.st, Command{
		Script: `head -c 10485760 /dev/urandom; head -c 10485760 /dev/zero >&2`,
		Stdout: stdout, Stderr: stderr,
	})
	runtime.ReadMemStats(&after)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
	// 20 MiB went through; Run itself must allocate next to nothing.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("Run allocated %d bytes for 20 MiB of output", grew)
	}
	for _, f := range []*os.File{stdout, stderr} {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != 10<<20 {
			t.Errorf("%s: %d bytes, want %d", f.Name(), fi.Size(), 10<<20)
		}
	}
}

func TestCredential(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	const nobody = 65534
	s := newSession(t)
	// Let nobody reach its home and the spool directory.
	for dir := s.home; dir != "/"; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(dir, fi.Mode().Perm()|0o001); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Chmod(s.spool, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.home, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cred := &syscall.Credential{Uid: nobody, Gid: nobody}
	_, out := s.run(`id -u; touch mine; cd /tmp; export WHO=nobody`, Command{Credential: cred})
	if out.stdout != "65534\n" || out.stderr != "" {
		t.Fatalf("stdout %q stderr %q", out.stdout, out.stderr)
	}
	if s.st.Cwd != "/tmp" || s.st.Env["WHO"] != "nobody" {
		t.Fatalf("state not saved as nobody: %+v", s.st)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(s.home, "mine"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != nobody {
		t.Fatalf("file owned by %d, want %d", st.Uid, nobody)
	}
}

func TestWrapperIsOneLine(t *testing.T) {
	if strings.Contains(wrapperScript, "\n") {
		t.Fatal("the wrapper must be one line so that the command's LINENO starts at 1")
	}
}

func TestOutputClosedOnceNoWriterIsLeft(t *testing.T) {
	s := newSession(t)
	stdout := s.outFile("stdout")
	r, err := Start(context.Background(), s.spool, s.st, Command{Script: "sleep 30 & echo started", Stdout: stdout})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Wait()
	if err != nil || len(res.Leftovers) != 1 {
		t.Fatalf("leftovers %v, %v: want the sleep", res.Leftovers, err)
	}
	// The sleep holds the output pipe: its copy goes on.
	select {
	case <-r.OutputClosed():
		t.Fatal("output closed while a leftover holds the pipe")
	default:
	}
	if err := syscall.Kill(res.Leftovers[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.OutputClosed():
	case <-time.After(10 * time.Second):
		t.Fatal("output not closed 10 s after its last writer was killed")
	}
	if got := readFile(t, stdout.Name()); got != "started\n" {
		t.Errorf("stdout %q", got)
	}
}

// TestSavedEnvIsWhatAProgramWouldGet: the state keeps each exported
// variable with the value a program started at the end of the command
// would find in its environment (what `env` prints), whatever kind of
// variable the command made: namerefs, arrays, integer or case attributes,
// exported without a value, exported locals when the shell exits in a
// function.
func TestSavedEnvIsWhatAProgramWouldGet(t *testing.T) {
	t.Parallel()
	scripts := []string{
		`A=1; declare -nx REF=A`,
		`declare -nx DANGLING=nosuchvar`,
		`export T=target; declare -n R=T; export R; T=changed`,
		`declare -ax ARR=(1 2); declare -Ax ASSOC=([k]=v); declare -x EMPTYARR=()`,
		`ARR=(a b); export ARR`,
		`export SCALAR=x; SCALAR[1]=y`,
		`declare -ix I=3+4; declare -lx L=ABC; declare -ux U=abc`,
		`export FOO; declare -x BAR; export EMPTY=`,
		`export N=1; export -n N; export G=1; unset G`,
		`export RO=1; readonly RO`,
		`f() { local -x LOC=1; export OUT=2; exit 3; }; f`,
		`g() { echo hi; }; export -f g; export AFTER=1`,
		"export NL=$'a\\nb' EQ='x=y' Q=\"'\\\"\"",
		`unset OLDPWD; export OLDPWD`,
		`cd /usr; cd /`,
		`unset PATH HOME LANG`,
	}
	for _, script := range scripts {
		t.Run(script, func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			res, out := s.run(script, Command{})
			if !res.StateSaved {
				t.Fatalf("state not saved; stderr %q", out.stderr)
			}
			if want := envAtExit(t, s, script); !maps.Equal(s.st.Env, want) {
				t.Fatalf("saved env %q\nwant      %q", s.st.Env, want)
			}
		})
	}
}

// envAtExit runs script in a plain bash that starts in the session's
// state, and returns what `env -0` prints when that bash exits, as a State
// keeps it: without bash's bookkeeping and exported functions.
func envAtExit(t *testing.T, s *session, script string) map[string]string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "env")
	c := exec.Command("/bin/bash", "-c", `trap '/usr/bin/env -0 >"$0"' EXIT; `+script, out)
	c.Dir, c.Env = s.st.Cwd, commandEnv(s.st.Env, nil)
	_ = c.Run() // its status is the script's
	env := map[string]string{}
	for _, rec := range strings.Split(strings.TrimSuffix(readFile(t, out), "\x00"), "\x00") {
		name, value, _ := strings.Cut(rec, "=")
		if !dropped[name] && !strings.HasPrefix(name, "BASH_FUNC_") {
			env[name] = value
		}
	}
	return env
}

// TestExecFitsAgreesWithTheKernel starts bash with environments just
// within and just past each of the kernel's limits as execFits computes
// them, under a few stack limits, and checks that the kernel accepts and
// refuses the same ones.
func TestExecFitsAgreesWithTheKernel(t *testing.T) {
	// Not parallel: it changes the stack limit of the whole test process.
	bash, err := findBash()
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{"bash", "-c", ":"}
	kernelAccepts := func(env []string) bool {
		t.Helper()
		c := &exec.Cmd{Path: bash, Args: argv, Env: env}
		err := c.Run()
		if err != nil && !errors.Is(err, syscall.E2BIG) {
			t.Fatalf("exec with %d variables: %v", len(env), err)
		}
		return err == nil
	}
	check := func(what string, fits, over []string) {
		t.Helper()
		if err := execFits(bash, argv, fits); err != nil {
			t.Fatalf("%s: execFits refuses what it should take: %v", what, err)
		}
		if err := execFits(bash, argv, over); !errors.Is(err, ErrStateTooLarge) {
			t.Fatalf("%s: execFits = %v for one byte more, want ErrStateTooLarge", what, err)
		}
		if !kernelAccepts(fits) {
			t.Errorf("%s: the kernel refuses what execFits takes", what)
		}
		if kernelAccepts(over) {
			t.Errorf("%s: the kernel takes what execFits refuses", what)
		}
	}
	pad := func(name string, n int) string { return name + "=" + strings.Repeat("x", n) }

	// One string: its bytes and NUL fill 32 pages exactly.
	longest := 32*os.Getpagesize() - len("V=") - 1
	check("one string", []string{pad("V", longest)}, []string{pad("V", longest+1)})

	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_STACK, &orig); err != nil {
			t.Errorf("restore stack limit: %v", err)
		}
	})
	// The total: as many strings as fit, and one whose size makes it fit
	// exactly, found by execFits; the kernel must agree at that edge.
	for _, stack := range []uint64{orig.Cur, 32 << 20, 1 << 20, 256 << 10} {
		if stack > orig.Max {
			continue
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_STACK, &syscall.Rlimit{Cur: stack, Max: orig.Max}); err != nil {
			t.Fatal(err)
		}
		var env []string
		lastMax := longest - len("LAST") + len("V") // its own string's limit
		for execFits(bash, argv, append(env, pad("LAST", lastMax))) == nil {
			env = append(env, pad("V"+strconv.Itoa(len(env)), 100000))
		}
		lo, hi := 0, lastMax // lo fits, hi does not
		if execFits(bash, argv, append(env, pad("LAST", lo))) != nil {
			t.Fatalf("stack limit %d: %d strings fit, but not one more empty one", stack, len(env))
		}
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			if execFits(bash, argv, append(env, pad("LAST", mid))) == nil {
				lo = mid
			} else {
				hi = mid
			}
		}
		t.Logf("stack %d: %d strings, last %d", stack, len(env), lo)
		check(fmt.Sprintf("stack limit %d", stack),
			append(slices.Clip(env), pad("LAST", lo)), append(slices.Clip(env), pad("LAST", hi)))
	}
}

// TestMayBeCommandBash: a command's bash is known as one while it runs,
// and not once reaped; a subshell it forked, which runs the same command
// line, is not one.
func TestMayBeCommandBash(t *testing.T) {
	// Not parallel: a Start under way elsewhere makes every answer true.
	s := newSession(t)
	stdout := s.outFile("stdout")
	r, err := Start(context.Background(), s.spool, s.st, Command{Script: `( sleep 30; true ) & echo $!; wait`, Stdout: stdout})
	if err != nil {
		t.Fatal(err)
	}
	var sub int
	for deadline := time.Now().Add(10 * time.Second); sub == 0; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the command did not print its subshell's pid in 10 s")
		}
		sub, _ = strconv.Atoi(strings.TrimSpace(readFile(t, stdout.Name())))
	}
	if argv := procArgv(t, sub); !slices.Equal(argv[:2], []string{"bash", "-c"}) {
		t.Fatalf("subshell %d runs %q, not the command line of its bash", sub, argv)
	}
	if !MayBeCommandBash(r.Pid()) {
		t.Error("the bash of a running command is not known as one")
	}
	if MayBeCommandBash(sub) {
		t.Error("a subshell is taken for a command's bash")
	}
	if err := r.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(); err != nil {
		t.Fatal(err)
	}
	if MayBeCommandBash(r.Pid()) {
		t.Error("a reaped bash is still known as a command's")
	}
}

func procArgv(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}
