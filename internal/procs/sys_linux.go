//go:build linux

package procs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sandrun/sandrun/internal/shell"
)

// BecomeSubreaper makes the calling process a child subreaper
// (prctl(PR_SET_CHILD_SUBREAPER)): a process whose parent dies is then
// reparented to it instead of to init. A Manager in such a process learns
// the exit status of the leftovers it adopts (bash, their parent, is gone,
// so they become its children) and reaps them, and it reaps the zombies of
// the session's process groups that nobody tracks.
//
// It is process-wide and the host's decision, so it is a function to call
// once from main, not something New does. Consequences:
//
//   - every orphan of every descendant comes to this process, including
//     daemons that setsid away from the session's groups; those that die
//     untracked stay zombies (a pid slot each) until this process exits;
//   - nothing here ever waits for "any child": the Manager reaps exactly
//     the processes it adopted, through their pidfds (waitid P_PIDFD), and
//     zombies that are members, not leaders, of a session command's process
//     group. os/exec's children (bash, which leads its group, and whatever
//     else the host runs) are never touched, so their Wait still works.
//
// It returns an error wrapping errors.ErrUnsupported off Linux.
func BecomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// DenyInspection makes the calling process non-dumpable
// (prctl(PR_SET_DUMPABLE, 0)). Its /proc entries then belong to root, and
// a process without CAP_SYS_PTRACE, even one of the same uid, can neither
// read its environment, memory or open files there nor ptrace it (nor
// does it leave a core dump). The host holds its cloud credential in
// memory and receives it in its environment, and the session's commands
// run as the host's own uid: this is what keeps the credential out of
// their reach. It does not stop them from signalling the host.
//
// It is process-wide and lasts until the process execs; call it once from
// main, before any command runs. It returns an error wrapping
// errors.ErrUnsupported off Linux.
func DenyInspection() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}

// reapsOrphans reports whether orphans are reparented to this process: it
// is a child subreaper, or it is init of its pid namespace.
func reapsOrphans() bool {
	if os.Getpid() == 1 {
		return true
	}
	var on int32
	if err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&on)), 0, 0, 0); err != nil {
		return false
	}
	return on != 0
}

// procStat is what sandrun reads from /proc/PID/stat.
type procStat struct {
	state byte
	ppid  int
	pgrp  int
	sid   int    // session id
	start uint64 // clock ticks after boot
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	// Plain syscalls: os.Open would register each /proc file with the
	// poller, which doubles the cost of a scan.
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return procStat{}, err
	}
	var buf [1024]byte
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil {
		return procStat{}, err
	}
	data := buf[:max(n, 0)]
	// "pid (comm) state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime priority nice
	// num_threads itrealvalue starttime ...": comm may hold spaces and ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	var st procStat
	st.state = f[0][0]
	st.ppid, _ = strconv.Atoi(string(f[1]))
	st.pgrp, _ = strconv.Atoi(string(f[2]))
	st.sid, _ = strconv.Atoi(string(f[3]))
	st.start, _ = strconv.ParseUint(string(f[19]), 10, 64)
	return st, nil
}

// userHZ is the unit of starttime in /proc/PID/stat: USER_HZ, 100 on
// every architecture Linux supports today.
const userHZ = 100

// startedAt converts a starttime (clock ticks after boot) to wall time.
func startedAt(ticks uint64) time.Time {
	now := time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return now
	}
	since := time.Duration(ts.Nano()) - time.Duration(ticks)*(time.Second/userHZ)
	return now.Add(-max(since, 0))
}

// maxCommandBytes bounds the command shown for a process.
const maxCommandBytes = 4096

// readCommand returns the command line of pid, arguments joined by spaces,
// or "[comm]" for a process without one. A bash of the shell package (a
// subshell it forked for `( … ) &` has its command line) is shown as the
// script the user ran, not as the wrapper that runs it.
func readCommand(pid int) string {
	if argv := readArgv(pid); len(argv) > 0 {
		command := strings.Join(argv, " ")
		if script, ok := shell.CommandScript(argv); ok {
			command = script
		}
		if len(command) > maxCommandBytes {
			command = command[:maxCommandBytes]
		}
		return command
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "[?]"
	}
	return "[" + strings.TrimSpace(string(comm)) + "]"
}

// readComm returns the program pid runs (/proc/PID/comm), "" when it is
// gone.
func readComm(pid int) string {
	var buf [64]byte
	data, err := readSmallFile("/proc/"+strconv.Itoa(pid)+"/comm", buf[:0])
	if err != nil {
		return ""
	}
	return string(bytes.TrimSuffix(data, []byte("\n")))
}

// readArgv returns the command line of pid, nil when it has none (a
// kernel thread, a zombie) or is gone.
func readArgv(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// openPidfd returns a pollable pidfd of pid. The process may have exited
// already: the pidfd is then readable at once. ESRCH means it was reaped.
func openPidfd(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// Non-blocking, so os registers it with the runtime's poller: waiting
	// for its exit parks a goroutine, not a thread.
	return os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid)), nil
}

// pidfdExited reports whether the process of a pidfd has exited.
func pidfdExited(fd uintptr) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	return err == nil && n > 0
}

// exitedPidfd reports whether the process of pidfd has exited (a closed
// pidfd counts as exited: its process is tracked no more).
func exitedPidfd(pidfd *os.File) bool {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return true
	}
	exited := true
	if err := rc.Control(func(fd uintptr) { exited = pidfdExited(fd) }); err != nil {
		return true
	}
	return exited
}

// awaitPidfd blocks until the process of pidfd exits. It returns an error
// when pidfd is closed meanwhile.
func awaitPidfd(pidfd *os.File) error {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(pidfdExited)
}

// signalPidfd sends sig to the process of pidfd, never to a process that
// reused its pid.
func signalPidfd(pidfd *os.File, sig syscall.Signal) error {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	return serr
}

// sigchldFields is the start of siginfo_t's union as waitid fills it for
// a child: si_pid, si_uid, si_status.
type sigchldFields struct {
	pid    int32
	uid    uint32
	status int32
}

// sigchldOffset is where the union starts in siginfo_t: after three ints,
// aligned as a pointer (16 on 64-bit systems, 12 on 32-bit ones).
const sigchldOffset = (12 + unsafe.Sizeof(uintptr(0)) - 1) &^ (unsafe.Sizeof(uintptr(0)) - 1)

// Codes of siginfo_t.si_code for SIGCHLD.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// reapPidfd reaps the process of pidfd if it is this process's child and
// has exited (waitid P_PIDFD, WEXITED|WNOHANG): it can only ever reap that
// one process. known is false when the process is not a child (another
// process reaps it) or has not exited.
func reapPidfd(pidfd *os.File) (e exit, known bool) {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return exit{}, false
	}
	var info unix.Siginfo
	var werr error
	if err := rc.Control(func(fd uintptr) {
		for {
			_, _, errno := unix.Syscall6(unix.SYS_WAITID, unix.P_PIDFD, fd,
				uintptr(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOHANG, 0, 0)
			if errno == unix.EINTR {
				continue
			}
			if errno != 0 {
				werr = errno
			}
			return
		}
	}); err != nil || werr != nil {
		return exit{}, false
	}
	f := (*sigchldFields)(unsafe.Add(unsafe.Pointer(&info), sigchldOffset))
	if f.pid == 0 {
		return exit{}, false // WNOHANG: not exited yet
	}
	switch info.Code {
	case cldExited:
		return exit{code: int(f.status)}, true
	case cldKilled, cldDumped:
		sig := syscall.Signal(f.status)
		return exit{code: 128 + int(sig), signal: unix.SignalName(sig)}, true
	}
	return exit{}, false
}

// orphanZombies returns the zombie children of this process that are
// members, but not leaders, of one of groups, and, when owns (the
// Manager owns the process's orphans), every other zombie child that
// does not look like a command's bash (the leader of a group in this
// process's session, which os/exec waits for).
//
// A member of a session group is never os/exec's: every command bash
// runs for a session leads its own group (Setpgid), the host's other
// children stay in its group, and no group id of a live session group can
// be handed to a new process. While a process is our zombie only we can
// reap it, so its pid still names it when its pidfd is opened.
func orphanZombies(groups map[int]bool, owns bool) []int {
	if len(groups) == 0 && !owns {
		return nil
	}
	self := os.Getpid()
	sid, _ := unix.Getsid(0)
	var pids []int
	consider := func(pid int, st procStat) {
		if st.state != 'Z' || st.ppid != self {
			return
		}
		member := st.pgrp != pid && groups[st.pgrp]
		orphan := owns && !(st.pgrp == pid && st.sid == sid)
		if member || orphan {
			pids = append(pids, pid)
		}
	}
	children, ok := ownChildren()
	if !ok {
		scanProcs(consider)
		return pids
	}
	for _, pid := range children {
		if st, err := readStat(pid); err == nil {
			consider(pid, st)
		}
	}
	return pids
}

// ownChildren returns the pids of this process's children, live and
// zombie, from its children files: far cheaper than a scan of /proc. ok
// is false when the kernel does not offer the files.
func ownChildren() (pids []int, ok bool) {
	if !childrenFiles() {
		return nil, false
	}
	return childPids(os.Getpid())
}

// childrenFiles reports whether the kernel offers the children files of
// /proc/PID/task/TID (CONFIG_PROC_CHILDREN), unless tests pretend not.
func childrenFiles() bool {
	return !noChildrenFiles.Load() && haveChildrenFiles()
}

// haveChildrenFiles probes for the children file of this process's main
// thread, which lives as long as the process.
var haveChildrenFiles = sync.OnceValue(func() bool {
	pid := strconv.Itoa(os.Getpid())
	err := unix.Access("/proc/"+pid+"/task/"+pid+"/children", unix.R_OK)
	return err == nil
})

// childPids returns the pids of pid's children, live and zombie, from the
// children file of each of its threads: a child is listed under the
// thread that forked it, an orphan under the thread it was reparented to.
// ok is false when pid is gone or its files cannot be read.
func childPids(pid int) (pids []int, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tids, err := readDirNames(dir)
	if err != nil {
		return nil, false
	}
	var buf [4096]byte
	for _, tid := range tids {
		data, err := readSmallFile(dir+tid+"/children", buf[:0])
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			continue // the thread ended
		}
		if err != nil {
			return nil, false
		}
		for _, f := range bytes.Fields(data) {
			if child, err := strconv.Atoi(string(f)); err == nil {
				pids = append(pids, child)
			}
		}
	}
	return pids, true
}

// readSmallFile appends the content of a /proc file to buf. Plain
// syscalls, as in readStat: os.Open would register the file with the
// poller.
func readSmallFile(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// readDirNames returns the names in a /proc directory, without
// registering it with the poller (see readSmallFile).
func readDirNames(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var names []string
	var buf [4096]byte
	for {
		n, err := unix.Getdents(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// liveStats returns the stat of every live (not zombie) process, by pid,
// from one scan of /proc.
func liveStats() map[int]procStat {
	stats := map[int]procStat{}
	scanProcs(func(pid int, st procStat) {
		if st.state != 'Z' && st.state != 'X' {
			stats[pid] = st
		}
	})
	return stats
}

// scanProcs calls fn with the stat of every process in /proc. A process
// that exits during the scan may be left out.
func scanProcs(fn func(pid int, st procStat)) {
	d, err := os.Open("/proc")
	if err != nil {
		return
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return
	}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue // not a process
		}
		if st, err := readStat(pid); err == nil {
			fn(pid, st)
		}
	}
}

// dupFile returns a new descriptor of f's open file, closed on exec, so that
// the Manager can read a file the host closes.
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), derr)
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// isGone reports whether err says that a process no longer exists.
func isGone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, os.ErrProcessDone)
}
