package shell

import (
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// CommandNice is the nice value a session's commands start with: below the
// host, whose lease renewals must get through however busy the commands
// keep the CPUs (a load of 20 on 2 CPUs must not lapse a live host). A
// command alone on its CPUs runs as fast as at nice 0.
const CommandNice = 10

// startNiced starts c at CommandNice. Linux keeps a nice value per thread
// and a child starts with its forking thread's, so c is started from a
// thread of its own that takes the value first and then ends with its
// goroutine (it is never unlocked), so that no other goroutine runs on it.
// Where the value cannot be set, c starts at the host's own.
func startNiced(c *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), CommandNice)
		errc <- c.Start()
	}()
	return <-errc
}
