package shell

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// groupMembers returns the live processes whose process group is pgid, in
// increasing order, by scanning /proc. Zombies are not live: an orphan is
// reparented to init, which in a container may never reap it.
func groupMembers(pgid int) ([]int, error) {
	// Most commands leave nothing behind: signal 0 to the group then finds
	// no process (zombies included) and the scan is skipped.
	if err := unix.Kill(-pgid, 0); errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue // not a process
		}
		if g, live := procGroup(pid); live && g == pgid {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// groupPrograms maps each live member of group pgid to the program it runs
// (its comm, which changes when it execs), as groupMembers finds them.
func groupPrograms(pgid int) map[int]string {
	pids, _ := groupMembers(pgid)
	programs := make(map[int]string, len(pids))
	for _, pid := range pids {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err == nil {
			programs[pid] = string(bytes.TrimSuffix(comm, []byte("\n")))
		}
	}
	return programs
}

// procGroup reads the process group of pid from /proc/pid/stat and whether
// the process is alive (gone, zombie or dead is not).
func procGroup(pid int) (pgid int, live bool) {
	// Plain syscalls: os.Open would try to register each /proc file with
	// the poller, which doubles the cost of a scan.
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false // exited since the directory listing
	}
	var buf [512]byte
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil || n <= 0 {
		return 0, false
	}
	data := buf[:n]
	// "pid (comm) state ppid pgrp ...": comm may hold spaces and ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 3 {
		return 0, false
	}
	switch fields[0][0] {
	case 'Z', 'X', 'x':
		return 0, false
	}
	g, err := strconv.Atoi(string(fields[2]))
	if err != nil {
		return 0, false
	}
	return g, true
}

// awaitGroupExit returns once no live process is left in group pgid, or at
// deadline. It waits on pidfds, which become readable when a process exits
// even if it is not our child, so it does not poll; members forked
// meanwhile are caught by scanning again.
func awaitGroupExit(pgid int, deadline time.Time) {
	for {
		pids, err := groupMembers(pgid)
		if err != nil || len(pids) == 0 || !time.Now().Before(deadline) {
			return
		}
		if err := awaitExit(pids, deadline); err != nil {
			// No pidfds (old kernel, fd limit): fall back to a short
			// sleep before scanning again.
			time.Sleep(min(10*time.Millisecond, time.Until(deadline)))
		}
	}
}

// awaitExit waits until every process in pids has exited, or deadline.
func awaitExit(pids []int, deadline time.Time) error {
	fds := make([]unix.PollFd, 0, len(pids))
	defer func() {
		for _, p := range fds {
			unix.Close(int(p.Fd))
		}
	}()
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue // already gone
		}
		if err != nil {
			return fmt.Errorf("pidfd_open %d: %w", pid, err)
		}
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	pending := slices.Clone(fds)
	for len(pending) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		_, err := unix.Poll(pending, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll pidfds: %w", err)
		}
		pending = slices.DeleteFunc(pending, func(p unix.PollFd) bool { return p.Revents != 0 })
	}
	return nil
}

// awaitChildExit returns once pid, a child of this process that is not
// reaped yet (so the pid cannot name another process), has exited. It
// waits through the runtime's poller on a pidfd, which becomes readable
// when the process exits, so the goroutine is parked and no thread is
// held. It returns at once when no pidfd can be had (a kernel before
// 5.10): the caller's wait then blocks as it would have.
func awaitChildExit(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	// Non-blocking, so os registers it with the poller.
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		return err != nil || n > 0 // an error: let the caller's wait decide
	})
}

// queuedBytes returns how many bytes wait in a pipe to be read (FIONREAD,
// which Linux names TIOCINQ).
func queuedBytes(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}

// memStateFile makes a memfd for a state file, and the path by which a
// child of this process running as the same user opens it (and, with
// O_TRUNC, empties it).
func memStateFile() (*os.File, string, error) {
	fd, err := unix.MemfdCreate("sandrun-state", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, "", fmt.Errorf("memfd_create: %w", err)
	}
	return os.NewFile(uintptr(fd), "sandrun-state"), memStatePath(strconv.Itoa(os.Getpid()), strconv.Itoa(fd)), nil
}

func memStatePath(pid, fd string) string { return "/proc/" + pid + "/fd/" + fd }

// othersMayOpenOwnFds reports whether a bash of this process's user, as
// Start starts one, may be allowed to open this process's descriptors
// through /proc: not when this process is not dumpable, unless bash runs
// as root (whose CAP_SYS_PTRACE overrides that).
func othersMayOpenOwnFds() bool {
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return err != nil || dumpable == 1 || os.Geteuid() == 0
}
