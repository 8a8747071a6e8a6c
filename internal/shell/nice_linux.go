package shell

import (
	"os/exec"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// CommandNice is the nice value a session's commands start with: below the
// host, whose lease renewals must get through however busy the commands
// keep the CPUs (a load of 20 on 2 CPUs must not lapse a live host). A
// command alone on its CPUs runs as fast as at nice 0.
const CommandNice = 10

// startNiced starts c at CommandNice. Linux keeps a nice value per thread
// and a child starts with its forking thread's, so c is started from a
// thread that holds the value while it forks.
//
// Where the process may raise a thread's priority back (root, or
// CAP_SYS_NICE), that is the caller's own thread, locked to its goroutine
// for the while and given its value back after. Elsewhere (production's
// executor: uid 1000, without CAP_SYS_NICE) it is a thread of its own
// that takes the value first and then ends with its goroutine (it is
// never unlocked), so that no other goroutine runs on it. The
// second way cost about 50 µs more of the host's CPU per command on the
// development machine: a thread made and ended, and two hand-offs between
// threads (one thread kept for all starts saved little of it: the
// hand-offs cost the most). Where the value cannot be set at all, c starts
// at the host's own.
func startNiced(c *exec.Cmd) error {
	if !canRenice() {
		return startOnOwnThread(c)
	}
	runtime.LockOSThread()
	tid := unix.Gettid()
	// getpriority answers 20 - nice.
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		runtime.UnlockOSThread()
		return startOnOwnThread(c)
	}
	_ = unix.Setpriority(unix.PRIO_PROCESS, tid, CommandNice)
	startErr := c.Start()
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 20-prio); err == nil {
		runtime.UnlockOSThread()
	}
	// Otherwise the thread stays locked, so that it ends with the caller's
	// goroutine and no other goroutine runs below the host.
	return startErr
}

// startOnOwnThread starts c from a thread of its own at CommandNice, which
// then ends.
func startOnOwnThread(c *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), CommandNice)
		errc <- c.Start()
	}()
	return <-errc
}

// canRenice reports whether a thread of this process that took
// CommandNice can be given its value back: tried once, on a thread that
// ends with its goroutine whatever the answer.
var canRenice = sync.OnceValue(func() bool {
	ok := make(chan bool, 1)
	go func() {
		runtime.LockOSThread()
		tid := unix.Gettid()
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err != nil || 20-prio >= CommandNice {
			ok <- false
			return
		}
		ok <- unix.Setpriority(unix.PRIO_PROCESS, tid, CommandNice) == nil &&
			unix.Setpriority(unix.PRIO_PROCESS, tid, 20-prio) == nil
	}()
	return <-ok
})
