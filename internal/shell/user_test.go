//go:build linux

package shell

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sandrun/sandrun/internal/imageuser"
)

// notDumpableEnv, set in the environment of this package's test binary,
// makes the process not dumpable before any test runs: then no bash of
// its user may open its descriptors through /proc.
const notDumpableEnv = "SANDRUN_SHELL_TEST_NOT_DUMPABLE"

func init() {
	if os.Getenv(notDumpableEnv) != "" {
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			panic("PR_SET_DUMPABLE: " + err.Error())
		}
	}
}

// TestAsTheImagesUser runs this package's tests again as the image's
// user, as the executor runs in production. Run as root, the other tests
// only see root's paths: a command's thread reniced and given its value
// back, and state files that bash may always open. As the image's user
// the nice value cannot be given back (a thread of its own starts each
// command) and the state file is a memfd that bash opens through /proc;
// in a process that is not dumpable it cannot be, and state files fall
// back to the spool directory. TestUnprivilegedPaths, run in each child,
// checks that each takes the path it should.
func TestAsTheImagesUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the tests as another user; as any other user they take its paths already")
	}
	if testing.Short() {
		t.Skip("runs the package's tests twice more")
	}
	binary := imageuser.TestBinary(t)
	// The child's temporary files, where the user can reach them:
	// t.TempDir is root's alone.
	tmp, err := os.MkdirTemp("", "sandrun-shell-as-image-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chown(tmp, imageuser.UID, imageuser.GID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		notDumpable bool
	}{{"memfd state files", false}, {"not dumpable: spool state files", true}} {
		t.Run(tc.name, func(t *testing.T) {
			// The fuzz target reads its corpus from the package directory,
			// which the user may not reach: Test* only.
			c := exec.Command(binary, "-test.run", "^Test", "-test.count", "1", "-test.v")
			c.Dir = tmp
			c.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + tmp, "TMPDIR=" + tmp, "LANG=C.UTF-8"}
			if tc.notDumpable {
				c.Env = append(c.Env, notDumpableEnv+"=1")
			}
			c.SysProcAttr = &syscall.SysProcAttr{Credential: imageuser.Credential()}
			out, err := c.CombinedOutput()
			if err != nil {
				t.Fatalf("the tests as uid %d: %v\n%s", imageuser.UID, err, out)
			}
			// It must have run what it is for, not skipped it.
			if !strings.Contains(string(out), "--- PASS: TestUnprivilegedPaths") {
				t.Fatalf("TestUnprivilegedPaths did not pass as uid %d:\n%s", imageuser.UID, out)
			}
		})
	}
}

// TestUnprivilegedPaths checks that an unprivileged process takes the
// paths it should: commands started on a thread of their own, as the
// thread's nice value cannot be given back, and state files in memfds,
// unless the process is not dumpable.
func TestUnprivilegedPaths(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root takes the privileged paths; TestAsTheImagesUser runs this as another user")
	}
	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NICE, &limit); err != nil {
		t.Fatal(err)
	}
	// RLIMIT_NICE lets a thread go back to nice 20 - limit (man 2 setpriority).
	if limit.Cur == 0 && canRenice() {
		t.Error("canRenice: true for a process that may not lower a nice value")
	}
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := memStateFilesWork(), dumpable == 1; got != want {
		t.Errorf("memStateFilesWork() = %v in a process whose dumpable flag is %d", got, dumpable)
	}
	// The path bash writes the state to is what the command sees in
	// $__sandrun_state.
	s := newSession(t)
	_, out := s.run(`builtin printf %s "$__sandrun_state"; cd /; export X=1`, Command{})
	if dumpable == 1 {
		if want := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/"; !strings.HasPrefix(out.stdout, want) {
			t.Errorf("state file %q, want a memfd under %s", out.stdout, want)
		}
	} else if filepath.Dir(out.stdout) != s.spool {
		t.Errorf("state file %q, want one in the spool directory %s", out.stdout, s.spool)
	}
	if s.st.Cwd != "/" || s.st.Env["X"] != "1" {
		t.Errorf("state not saved: %+v", s.st)
	}
}
