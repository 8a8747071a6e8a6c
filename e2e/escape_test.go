package e2e

import (
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/imageuser"
	"github.com/sandrun/sandrun/internal/procfs"
)

// escapedSleep starts `setsid sleep N &` in session s, where N is unique to
// this test, checks that process.list shows it, and returns its pid and
// start time: together they name it whatever becomes of the pid.
func escapedSleep(t *testing.T, w *world, s, n string) (int, uint64) {
	t.Helper()
	argv := []string{"sleep", n}
	t.Cleanup(func() { // whatever the outcome, nothing is left behind
		for _, pid := range procfs.Running(argv...) {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
	})
	done := w.exec(s, "setsid sleep "+n+" &")
	if done.Status != api.StatusOK {
		t.Fatalf("exec: %+v", done)
	}
	// setsid may not have exec'd sleep yet: nothing to await but that.
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); len(pids) != 1; time.Sleep(10 * time.Millisecond) {
		if pids = procfs.Running(argv...); time.Now().After(deadline) {
			t.Fatalf("sleep %s runs as %v", n, pids)
		}
	}
	if !slices.Contains(done.BackgroundPIDs, pids[0]) {
		t.Errorf("the exec names background_pids %v, not the setsid'd sleep %d", done.BackgroundPIDs, pids[0])
	}
	start, err := procfs.StartTime(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	list := ok(t, w.do(&api.Request{SessionID: s, Op: api.OpProcessList}))
	listed := false
	for _, p := range list.Processes {
		listed = listed || (p.PID == pids[0] && p.Command == "sleep "+n && p.Status == api.ProcessRunning)
	}
	if !listed {
		t.Errorf("process.list does not show the setsid'd sleep %d: %+v", pids[0], list.Processes)
	}
	return pids[0], start
}

// survives reports whether the process pid that started at start runs.
func survives(pid int, start uint64) bool {
	now, err := procfs.StartTime(pid)
	return err == nil && now == start && !procfs.Gone(pid)
}

// A process that left its command's process group and session does not
// outlive the host: neither one that leaves (here at its maximum
// lifetime, which ends its processes, then idle) nor one that crashes.
func TestSetsidProcessEndsWithTheHost(t *testing.T) {
	n := strconv.Itoa(os.Getpid())
	// The host leaves at its maximum lifetime, which ends its processes,
	// then idle; as the current user, and as uid 1000 as in the image.
	for _, c := range []struct {
		session, seconds string
		user             *syscall.Credential
	}{
		{"escape-leaves", "1009", nil},
		{"escape-leaves-uid", "1029", imageuser.Credential()},
	} {
		t.Run(c.session, func(t *testing.T) {
			if c.user != nil && os.Geteuid() != 0 {
				t.Skip("runs the host as uid 1000, which needs root")
			}
			w := start(t, options{idleTimeout: time.Second, hostEnv: []string{"SANDRUN_MAX_LIFETIME=2s"}, hostUser: c.user})
			pid, started := escapedSleep(t, w, c.session, c.seconds+n)
			w.waitNoHost(c.session)
			if survives(pid, started) {
				t.Fatalf("setsid'd sleep %d outlived its host", pid)
			}
		})
	}
	t.Run("host killed", func(t *testing.T) {
		w := start(t, options{})
		const s = "escape-killed"
		pid, started := escapedSleep(t, w, s, "1019"+n)
		execution, err := w.store.HostOf(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.suite.KillExecution(w.sys.JobName() + "/executions/" + execution); err != nil {
			t.Fatal(err)
		}
		// The kill is SIGKILL, sent before it returns; the process then
		// takes a moment to exit, with nothing to await from here.
		for deadline := time.Now().Add(10 * time.Second); survives(pid, started); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("setsid'd sleep %d outlived its killed host", pid)
			}
		}
	})
}
