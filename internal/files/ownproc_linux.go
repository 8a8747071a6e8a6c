package files

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ownProcEntry reports whether f, an open file, is an entry of this
// process's own /proc directory: /proc/self, /proc/thread-self, or
// /proc/PID for the host's PID or one of its threads' ids, however the
// path that reached it was spelled (symlinks included). The host keeps
// its cloud credential in memory and received it in its environment, so
// those entries (environ, mem, and the rest) are never served to a
// request: a command cannot read them (the host is not dumpable), and a
// file operation, which the host performs itself, must not read them for
// it. Other processes' entries and the rest of /proc (/proc/cpuinfo) are
// served as usual. The check is on the open file, not its path, so a
// symlink swapped between resolving and opening cannot get past it.
func ownProcEntry(f *os.File) bool {
	raw, err := f.SyscallConn()
	if err != nil {
		return true
	}
	var onProc bool
	var target string
	var readErr error
	if err := raw.Control(func(fd uintptr) {
		var st unix.Statfs_t
		if unix.Fstatfs(int(fd), &st) != nil || st.Type != unix.PROC_SUPER_MAGIC {
			return
		}
		onProc = true
		target, readErr = os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	}); err != nil {
		return true
	}
	if !onProc {
		return false
	}
	rest, ok := strings.CutPrefix(target, "/proc/")
	if readErr != nil || !ok {
		return true // a procfs file the host cannot place: refuse it
	}
	id, _, _ := strings.Cut(rest, "/")
	if id == "" || strings.Trim(id, "0123456789") != "" {
		return false // not a process's entry: /proc/cpuinfo, /proc/sys/...
	}
	// Every thread of this process, and only those, is listed in its task
	// directory; /proc/TID is an alias of the thread's process.
	_, err = os.Lstat("/proc/self/task/" + id)
	return err == nil
}
