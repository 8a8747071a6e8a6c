//go:build linux

package procs

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
)

// withoutChildrenFiles makes the test run as on a kernel without the
// children files of /proc/PID/task/TID: procTree scans all of /proc.
func withoutChildrenFiles(t *testing.T) {
	t.Helper()
	noChildrenFiles.Store(true)
	t.Cleanup(func() { noChildrenFiles.Store(false) })
}

// The walk of the children files sees the tree a scan of /proc sees: a
// command's children, and an orphan reparented to this process (a child
// subreaper), which a thread other than the main one may have adopted.
func TestProcTreeMatchesAScan(t *testing.T) {
	if !haveChildrenFiles() {
		t.Skip("the kernel offers no children files")
	}
	subreaper(t)
	cmd := exec.Command("sh", "-c", `sleep 600 & (setsid sleep 600 &); wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	self := os.Getpid()
	var orphan int
	// The orphan is compared once it has left for its own session: the
	// two views are taken one after the other, and a setsid between them
	// would show as a difference.
	eventually(t, "the command's child and the orphan in its own session", func() bool {
		tree := newProcTree()
		orphan = 0
		for _, pid := range tree.children(self) {
			if pid != cmd.Process.Pid {
				orphan = pid
			}
		}
		st, ok := tree.stat(orphan)
		return len(tree.children(cmd.Process.Pid)) == 1 && orphan != 0 && ok && st.sid == orphan
	})
	t.Cleanup(func() {
		syscall.Kill(orphan, syscall.SIGKILL)
		if fd, err := openPidfd(orphan); err == nil {
			awaitPidfd(fd)
			reapPidfd(fd)
			fd.Close()
		}
	})
	if !newProcTree().walk {
		t.Fatal("procTree does not walk the children files")
	}
	walked := newProcTree()
	noChildrenFiles.Store(true)
	scanned := newProcTree()
	noChildrenFiles.Store(false)
	if scanned.walk {
		t.Fatal("procTree walks without the children files")
	}
	for _, pid := range []int{self, cmd.Process.Pid} {
		w, s := walked.children(pid), scanned.children(pid)
		slices.Sort(w)
		slices.Sort(s)
		if !slices.Equal(w, s) {
			t.Errorf("children of %d: walked %v, scanned %v", pid, w, s)
		}
		for _, c := range w {
			ws, _ := walked.stat(c)
			ss, _ := scanned.stat(c)
			if ws.ppid != pid || ws.start != ss.start || ws.pgrp != ss.pgrp || ws.sid != ss.sid {
				t.Errorf("stat of %d: walked %+v, scanned %+v", c, ws, ss)
			}
		}
	}
	if _, ok := walked.stat(orphan); !ok {
		t.Errorf("orphan %d not seen", orphan)
	}
}

// Without the children files the Manager scans /proc and finds the same:
// the sequential tests of escaped, orphaned and adopted processes, again.
func TestWithoutChildrenFiles(t *testing.T) {
	withoutChildrenFiles(t)
	if newProcTree().walk {
		t.Fatal("procTree walks the children files")
	}
	if _, ok := ownChildren(); ok {
		t.Fatal("ownChildren reads the children files")
	}
	for _, test := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"listed", TestEscapedProcessesAreListed},
		{"killed", TestEscapedProcessesAreKilled},
		{"timeout", TestTimeoutEndsTheCommandsEscapedProcesses},
		{"close", TestCloseEndsEscapedProcesses},
		{"kill all", TestKillAllEndsEverything},
		{"subshell", TestSubshellListedAsTheUsersCommand},
		{"adopted subshell's child", TestSubreaperKillsWhatAnAdoptedProcessStarted},
		{"orphaned zombies", TestSubreaperReapsOrphanedZombies},
		{"exit status", TestSubreaperLearnsExitStatus},
	} {
		t.Run(test.name, test.run)
	}
}
