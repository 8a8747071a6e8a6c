package procfs

import (
	"os/exec"
	"slices"
	"testing"
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
