package procs

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sandrun/sandrun/internal/imageuser"
)

// The test binary runs itself as a process holding a secret in its
// environment: the stand-in for a host that received its credential.
const (
	holderEnv    = "SANDRUN_TEST_INSPECTION_HOLDER" // "deny" or "allow"
	holderSecret = "SANDRUN_TEST_SECRET=ya29.not-for-commands"
)

func init() {
	mode := os.Getenv(holderEnv)
	if mode == "" {
		return
	}
	if mode == "deny" {
		if err := DenyInspection(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
	}
	os.Stdout.WriteString("ready\n")
	// Wait for the test to close stdin.
	bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// asUnprivileged runs cmd as the image's user when the test runs as
// root, whose CAP_SYS_PTRACE would see through any protection; otherwise
// as the test's own user. Either way holder and inspector share a uid, as
// the host and its commands do.
func asUnprivileged(cmd *exec.Cmd) {
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: imageuser.Credential()}
	}
}

// holderBinary is the test binary, or as root a copy of it that the
// image's user can run.
func holderBinary(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return os.Args[0]
	}
	return imageuser.TestBinary(t)
}

func startHolder(t *testing.T, bin, mode string) int {
	t.Helper()
	holder := exec.Command(bin, "-test.run=^$")
	holder.Env = append(os.Environ(), holderEnv+"="+mode, holderSecret)
	asUnprivileged(holder)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); holder.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("holder said %q, %v", line, err)
	}
	return holder.Process.Pid
}

// inspect tries, as a command of the same uid would, to read the holder's
// environment and memory and to attach to it; it returns what succeeded.
func inspect(t *testing.T, pid int) []string {
	t.Helper()
	p := strconv.Itoa(pid)
	script := `
		tr '\0' '\n' < /proc/` + p + `/environ 2>/dev/null | grep -q '^SANDRUN_TEST_SECRET=' && echo environ
		ls /proc/` + p + `/fd >/dev/null 2>&1 && echo fd
		start=$(head -1 /proc/` + p + `/maps 2>/dev/null | cut -d- -f1)
		[ -n "$start" ] && dd if=/proc/` + p + `/mem bs=1 count=1 skip=$((0x$start)) >/dev/null 2>&1 && echo mem
		true`
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = "/"
	asUnprivileged(cmd)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	return strings.Fields(string(out))
}

func TestDenyInspectionKeepsEnvironmentAndMemoryFromTheSameUser(t *testing.T) {
	bin := holderBinary(t)
	// Without it, a process of the same uid reads the environment and the
	// open files (and the memory, unless Yama's ptrace_scope forbids
	// attaching to a non-descendant): the inspection works, so its failure
	// below means something.
	if got := strings.Join(inspect(t, startHolder(t, bin, "allow")), " "); !strings.HasPrefix(got, "environ fd") {
		t.Fatalf("a dumpable holder showed %q, want environ and fd at least", got)
	}
	if got := inspect(t, startHolder(t, bin, "deny")); len(got) != 0 {
		t.Fatalf("a holder that denied inspection showed %v to a process of its uid", got)
	}
}
