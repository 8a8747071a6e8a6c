package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/emulator/cloudrun"
	"github.com/sandrun/sandrun/internal/procfs"
)

// TestOversizedRequestIsAnsweredAndSessionGoesOn publishes requests too
// large to keep (1.2 MB and 9 MB, both under Pub/Sub's 10 MB) for a session,
// each followed by a plain exec in the same session: each oversized request
// is answered INVALID_ARGUMENT naming the limit, its inbox item keeps only
// its ids and size, and the exec after it runs.
func TestOversizedRequestIsAnsweredAndSessionGoesOn(t *testing.T) {
	w := start(t, options{})
	completions := w.subscribe(w.sys.Names.Completions)
	const s = "oversized"
	for i, size := range []int{1200 << 10, 9 << 20} {
		big := fmt.Sprintf("big-%d", i)
		data := []byte(fmt.Sprintf(`{"request_id":%q,"session_id":%q,"op":"exec","command":"echo %s"}`, big, s, strings.Repeat("a", size)))
		published := time.Now()
		w.publishRaw(data, nil, s)
		after := fmt.Sprintf("after-%d", i)
		req := api.Request{RequestID: after, SessionID: s, Op: api.OpExec, Command: "echo next"}
		w.publishRaw([]byte(fmt.Sprintf(`{"request_id":%q,"session_id":%q,"op":"exec","command":"echo next"}`, after, s)), req.Attributes(), s)

		// On the old code the oversized request was never answered and
		// the session's next request waited for its redeliveries to run
		// out (about 10 minutes): 30 s is far more than either needs.
		msgs := completions.waitFor(t, "completions of "+big+" and "+after, 30*time.Second, func(ms []*pubsub.Message) bool {
			by := byRequest(ms)
			return len(by[big]) > 0 && len(by[after]) > 0
		})
		// Logged, not asserted: the first includes the host's start.
		t.Logf("%d-byte request and the exec after it answered %v after the publish", len(data), time.Since(published))
		by := map[string]api.Completion{}
		for _, c := range decodeCompletions(t, msgs) {
			by[c.RequestID] = c
		}
		c := by[big]
		want := fmt.Sprintf("the limit is %d", api.MaxRequestBytes)
		if c.Status != api.StatusError || c.Error == nil || c.Error.Code != api.CodeInvalidArgument || !strings.Contains(c.Error.Message, want) {
			t.Fatalf("%d-byte request: %s %+v, want INVALID_ARGUMENT saying %q", len(data), c.Status, c.Error, want)
		}
		if len(c.Error.Message) > 1000 {
			t.Errorf("the error message is %d bytes: it quotes the request", len(c.Error.Message))
		}
		if c := by[after]; c.Status != api.StatusOK || c.Stdout != "next\n" {
			t.Fatalf("the exec after the %d-byte request: %s %+v stdout %q", len(data), c.Status, c.Error, c.Stdout)
		}
		snap, err := w.fs.Doc("sessions/" + s + "/inbox/" + big).Get(context.Background())
		if err != nil {
			t.Fatalf("inbox item of %s: %v", big, err)
		}
		item := snap.Data()
		if r, _ := item["request"].([]byte); len(r) != 0 {
			t.Errorf("the inbox item keeps %d bytes of the oversized request", len(r))
		}
		if n, _ := item["request_bytes"].(int64); n != int64(len(data)) {
			t.Errorf("the inbox item says the request was %v bytes, want %d", item["request_bytes"], len(data))
		}
	}
}

// TestClientRefusesOversizedRequest: the Go client does not publish a
// request over the limit, and says why.
func TestClientRefusesOversizedRequest(t *testing.T) {
	w := start(t, options{})
	requests := w.subscribe(w.sys.Names.Requests)
	const s = "client-oversized"
	big := &api.Request{RequestID: "too-big", SessionID: s, Op: api.OpExec, Command: strings.Repeat("a", api.MaxRequestBytes)}
	_, err := w.client.Do(context.Background(), big)
	if !errors.Is(err, client.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(api.MaxRequestBytes)) {
		t.Fatalf("Do of a request over the limit: %v, want ErrTooLarge naming the limit", err)
	}
	w.exec(s, "true")
	msgs := requests.waitFor(t, "the exec after the refused request", 30*time.Second, func(ms []*pubsub.Message) bool { return len(ms) > 0 })
	if got := byRequest(msgs)["too-big"]; len(got) != 0 {
		t.Fatalf("the refused request was published")
	}
}

// TestExecKeepsReopenedOutput: a command that reopens its stdout or stderr
// loses nothing of what it wrote before, and what a process it left
// running writes later is not part of its completion.
func TestExecKeepsReopenedOutput(t *testing.T) {
	w := start(t, options{})
	const s = "reopened-output"
	if got := w.exec(s, `echo x >&2; echo y > /dev/stderr; echo z >&2`); got.Stderr != "x\ny\nz\n" {
		t.Errorf("stderr %q, want %q", got.Stderr, "x\ny\nz\n")
	}
	if got := w.exec(s, `echo a; echo b > /dev/stdout; echo c | tee /dev/stdout`); got.Stdout != "a\nb\nc\nc\n" {
		t.Errorf("stdout %q, want %q", got.Stdout, "a\nb\nc\nc\n")
	}
	// The leftover writes once the command's completion is published;
	// its line goes to its process log, never into the completion.
	got := w.exec(s, `mkfifo ~/go; echo start; (read x < ~/go; echo late > /dev/stdout) &`)
	if got.Stdout != "start\n" || got.StdoutBytes != int64(len("start\n")) {
		t.Errorf("stdout %q (%d bytes), want %q", got.Stdout, got.StdoutBytes, "start\n")
	}
	w.exec(s, `echo go > ~/go`)
}

// TestStateThatCannotBeKeptIsAnError: a command that leaves a state the
// session cannot keep is answered RESOURCE_EXHAUSTED, keeps nothing of its
// state change, and its completion reports the working directory kept.
func TestStateThatCannotBeKeptIsAnError(t *testing.T) {
	w := start(t, options{})
	const s = "state-too-large"
	home := strings.TrimSpace(w.exec(s, `mkdir -p ~/kept && cd ~/kept && pwd`).Stdout)
	for _, tc := range []struct{ name, command string }{
		// Over Linux's 128 KiB for one string of an exec's environment.
		{"one variable of 140,000 bytes", `export ONE=$(head -c 140000 /dev/zero | tr '\0' a); cd /`},
		// Each passes, but together over the 256 KiB a session keeps.
		{"three variables of 100 KB", `for v in A B C; do export $v=$(head -c 100000 /dev/zero | tr '\0' a); done; cd /`},
	} {
		c := w.do(&api.Request{SessionID: s, Op: api.OpExec, Command: tc.command})
		if c.Status != api.StatusError || c.Error == nil || c.Error.Code != api.CodeResourceExhausted {
			t.Errorf("%s: %s %+v, want RESOURCE_EXHAUSTED", tc.name, c.Status, c.Error)
		}
		if c.Cwd != home {
			t.Errorf("%s: the completion reports cwd %q, but the session kept %q", tc.name, c.Cwd, home)
		}
		if got := w.exec(s, `pwd; echo ${#ONE} ${#A}`).Stdout; got != home+"\n0 0\n" {
			t.Errorf("%s: after it the session shows %q, want %q", tc.name, got, home+"\n0 0\n")
		}
	}
}

// TestEmulatorKillTakesTheShortName: `sandrun emulator kill` takes the
// execution name `session get` prints, finds the local cloud through
// dev.env as the other commands do, and takes --help for help.
func TestEmulatorKillTakesTheShortName(t *testing.T) {
	w := start(t, options{})
	const s = "kill-short-name"
	host := w.exec(s, "true").ExecutionID
	pid := w.hostPID(t, s)
	// The environment of a new terminal while `sandrun dev` runs: nothing
	// but its dev.env.
	home := t.TempDir()
	lines := w.suite.ExportLines()
	for _, kv := range w.local.Env() {
		lines += "export " + kv + "\n"
	}
	if err := os.WriteFile(filepath.Join(home, "dev.env"), []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SANDRUN_HOME=" + home}

	out, errOut, code := runSandrunExit(t, w, env, "emulator", "kill", "--help")
	if code != 0 || !strings.Contains(errOut, "Usage") || out != "" {
		t.Errorf("emulator kill --help: exit %d, stdout %q, stderr %q; want the help", code, out, errOut)
	}
	if procfs.Gone(pid) {
		t.Fatalf("emulator kill --help killed the host")
	}
	out, errOut, code = runSandrunExit(t, w, env, "emulator", "kill", host)
	if code != 0 || !strings.Contains(out, host) {
		t.Fatalf("emulator kill %s: exit %d, stdout %q, stderr %q", host, code, out, errOut)
	}
	if got := w.exec(s, "true").ExecutionID; got == host {
		t.Fatalf("the session still runs on %s", host)
	}
}

// TestTildeInFilePathsIsHome: file operations take "~" and "~/x" as the
// session's home, as the shell does, wherever the session's cwd is.
func TestTildeInFilePathsIsHome(t *testing.T) {
	w := start(t, options{})
	const s = "tilde-paths"
	w.exec(s, "mkdir ~/sub && cd ~/sub")
	if c := w.do(&api.Request{SessionID: s, Op: api.OpFileWrite, Path: "~/g.txt", EncodedContent: "in home\n"}); c.Status != api.StatusOK {
		t.Fatalf("file.write ~/g.txt: %s %+v", c.Status, c.Error)
	}
	if got := w.exec(s, `cat ~/g.txt; ls -A ~/sub`).Stdout; got != "in home\n" {
		t.Fatalf("after file.write ~/g.txt the shell shows %q, want %q (the file in $HOME, nothing in the cwd)", got, "in home\n")
	}
	if c := w.do(&api.Request{SessionID: s, Op: api.OpFileExists, Path: "~"}); c.Status != api.StatusOK || c.Exists == nil || !*c.Exists {
		t.Fatalf("file.exists ~: %s %+v exists %v", c.Status, c.Error, c.Exists)
	}
}

// TestDevRunsCommandsAsProductionDoes: `sandrun dev` run as root runs a
// session's commands as uid 1000 in a /workspace of the host's own (its
// HOME), as the executor's image does in production, and the machine's
// own /workspace is untouched.
func TestDevRunsCommandsAsProductionDoes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sandrun dev runs commands as uid 1000 in /workspace only when run as root")
	}
	if err := cloudrun.CheckWorkspace(); err != nil {
		t.Skipf("no workspace of its own for each host here: %v", err)
	}
	home := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SANDRUN_HOME=" + home}
	d := startDev(t, env)
	t.Cleanup(func() {
		d.cmd.Process.Signal(os.Interrupt)
		<-d.done
	})
	name := "noloss-" + uuid.NewString()[:8]
	run := func(command string) string {
		t.Helper()
		cmd := exec.Command(sandrunBin, "exec", "--", command)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sandrun exec %q: %v\n%s", command, err, d.stderr.String())
		}
		return string(out)
	}
	if got, want := run(`id -u; id -g; pwd; echo $HOME; echo kept > ~/`+name), "1000\n1000\n/workspace\n/workspace\n"; got != want {
		t.Fatalf("the session shows %q, want %q", got, want)
	}
	if got := run(`cat /workspace/` + name); got != "kept\n" {
		t.Fatalf("the file written is %q", got)
	}
	if _, err := os.Stat("/workspace/" + name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the machine's own /workspace got the session's file: %v", err)
	}
}
