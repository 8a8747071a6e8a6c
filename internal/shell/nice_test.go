package shell

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Commands run below their host (CommandNice more than the host's nice
// value), and starting one leaves the host's own nice value as it was.
func TestCommandsRunBelowTheirHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("nice values are set on Linux only")
	}
	hostNice := func() int {
		t.Helper()
		// getpriority answers 20 - nice, here for the calling thread.
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
		if err != nil {
			t.Fatal(err)
		}
		return 20 - prio
	}
	before := hostNice()
	s := newSession(t)
	for range 3 {
		_, out := s.run(`nice`, Command{})
		if got, want := strings.TrimSpace(out.stdout), fmt.Sprint(min(before+CommandNice, 19)); got != want {
			t.Fatalf("a command runs at nice %s, want %s", got, want)
		}
	}
	if after := hostNice(); after != before {
		t.Fatalf("the host ran at nice %d and now runs at %d", before, after)
	}
	// Where a thread that started a command was given its value back, it
	// went on running the host's goroutines: every thread must be back.
	if canRenice() {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			stat, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
			if err != nil {
				continue // the thread ended
			}
			// The nice value is the 19th field; comm, the 2nd, may hold spaces.
			fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			if nice := fields[19-3]; nice != fmt.Sprint(before) {
				t.Errorf("thread %s runs at nice %s, want the host's %d", task.Name(), nice, before)
			}
		}
	}
}
