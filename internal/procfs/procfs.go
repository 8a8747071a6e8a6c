// Package procfs reads what the benchmark and the tests need to know about
// local processes from Linux's /proc: which processes run a command line,
// how much memory and CPU one uses, whether one has ended. It only reads.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Running lists the live processes whose command line is exactly argv
// (zombies, whose command line is empty, excluded). Command lines are
// readable for every process, even one that is not dumpable, as sandrun's
// hosts are.
func Running(argv ...string) []int {
	want := strings.Join(argv, "\x00") + "\x00"
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && string(b) == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// PeakRSS returns a process's peak resident memory (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// RSS returns a process's resident memory now (VmRSS) in bytes.
func RSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// statusBytes reads a "NAME: N kB" line of /proc/PID/status.
func statusBytes(pid int, name string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s of %d: %q: %w", name, pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", name, pid)
}

// Count returns how many entries /proc/PID/DIR has: "fd" counts open
// files, "task" threads.
func Count(pid int, dir string) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/%s", pid, dir))
	return len(entries), err
}

// Gone reports whether process pid has ended. A process whose dead parent
// left it to an init that does not reap is a zombie: it has ended too.
func Gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	f := bytes.Fields(stat[i+1:])
	return len(f) > 0 && string(f[0]) == "Z"
}

// Stopped reports whether process pid is stopped, by a signal or by a
// tracer.
func Stopped(pid int) bool {
	f, err := statFields(pid, 1)
	return err == nil && (string(f[0]) == "T" || string(f[0]) == "t")
}

// StartTime returns when process pid started, in clock ticks after boot.
// With the pid it names one process across pid reuse: a process seen
// again under the same pid with another start time is another process.
func StartTime(pid int) (uint64, error) {
	// starttime is field 22 of the line, 19 after the command.
	f, err := statFields(pid, 20)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(f[19]), 10, 64)
}

// statFields returns the fields of /proc/PID/stat after the command (its
// state first), at least n of them.
func statFields(pid, n int) ([][]byte, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command may hold spaces and ')': fields count from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	f := bytes.Fields(stat[i+1:])
	if len(f) < n {
		return nil, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return f, nil
}

// CPUTime returns the CPU time (user and system) a process has used, with
// that of its children it has reaped when withChildren, from /proc/PID/stat
// (clock ticks of 1/100 s, Linux's USER_HZ).
func CPUTime(pid int, withChildren bool) (time.Duration, error) {
	f, err := statFields(pid, 15)
	if err != nil {
		return 0, err
	}
	// After the command: state, then utime, stime, cutime, cstime at
	// fields 14 to 17 of the line, 11 to 14 here.
	last := 12
	if withChildren {
		last = 14
	}
	var ticks int64
	for _, field := range f[11 : last+1] {
		n, err := strconv.ParseInt(string(field), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// OwnCPU returns the CPU time (user and system) this process has used, with
// that of its children it has reaped when withChildren. It asks the kernel
// (getrusage) rather than /proc: to the microsecond, where CPUTime counts
// clock ticks, too coarse for a benchmark's figure per operation.
func OwnCPU(withChildren bool) time.Duration {
	who := []int{syscall.RUSAGE_SELF}
	if withChildren {
		who = append(who, syscall.RUSAGE_CHILDREN)
	}
	var total time.Duration
	for _, w := range who {
		var ru syscall.Rusage
		_ = syscall.Getrusage(w, &ru)
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}

// TCPPorts returns the local addresses (ip:port, IPv4) of the TCP sockets
// process pid holds open. It needs to read /proc/PID/fd, which a process
// may always do for itself and not for a process that is not dumpable.
func TCPPorts(pid int) (map[string]bool, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && err == nil {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, err
	}
	addrs := map[string]bool{}
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || !inodes[f[9]] {
			continue
		}
		if addr, err := hexAddr(f[1]); err == nil {
			addrs[addr] = true
		}
	}
	return addrs, nil
}

// hexAddr turns /proc/net/tcp's 0100007F:1F90 into 127.0.0.1:8080.
func hexAddr(s string) (string, error) {
	ip, port, ok := strings.Cut(s, ":")
	if !ok || len(ip) != 8 {
		return "", fmt.Errorf("not an IPv4 address: %q", s)
	}
	a, err := strconv.ParseUint(ip, 16, 32)
	if err != nil {
		return "", err
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", a&0xff, a>>8&0xff, a>>16&0xff, a>>24, p), nil
}
