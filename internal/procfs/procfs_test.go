package procfs

import (
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestRunningFindsACommandLineUntilItEnds(t *testing.T) {
	cmd := exec.Command("sleep", "31.5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Until sleep has exec'd, the child runs this test's command line.
	for !slices.Contains(Running("sleep", "31.5"), pid) {
		if Gone(pid) {
			t.Fatal("sleep ended early")
		}
	}
	if got := Running("sleep", "31"); slices.Contains(got, pid) {
		t.Errorf("Running matched a prefix of the command line: %v", got)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if got := Running("sleep", "31.5"); slices.Contains(got, pid) {
		t.Errorf("Running still lists %d after it ended: %v", pid, got)
	}
}

func TestStartTimeTellsProcessesApart(t *testing.T) {
	a := exec.Command("sleep", "31.6")
	b := exec.Command("sleep", "31.6")
	for _, c := range []*exec.Cmd{a, b} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	sa, err := StartTime(a.Process.Pid)
	if err != nil || sa == 0 {
		t.Fatalf("StartTime = %d, %v", sa, err)
	}
	if again, _ := StartTime(a.Process.Pid); again != sa {
		t.Errorf("StartTime of one process changed: %d, then %d", sa, again)
	}
	if sb, _ := StartTime(b.Process.Pid); sb < sa {
		t.Errorf("a later process started earlier: %d < %d", sb, sa)
	}
	a.Process.Kill()
	a.Wait()
	if _, err := StartTime(a.Process.Pid); err == nil {
		t.Errorf("StartTime of a reaped process: no error")
	}
}

// OwnCPU grows with the work this process does, and counts a reaped
// child's only when asked to.
func TestOwnCPUCountsThisProcessAndItsReapedChildren(t *testing.T) {
	before, beforeAll := OwnCPU(false), OwnCPU(true)
	for spin := OwnCPU(false); OwnCPU(false)-spin < 20*time.Millisecond; {
	}
	if got := OwnCPU(false) - before; got < 20*time.Millisecond {
		t.Errorf("OwnCPU grew %v over 20 ms of spinning", got)
	}
	child := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	own, all := OwnCPU(false)-before, OwnCPU(true)-beforeAll
	if all-own < 20*time.Millisecond {
		t.Errorf("with children %v, without %v: want the reaped child's CPU counted", all, own)
	}
}
