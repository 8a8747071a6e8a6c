//go:build linux

package cloudrun

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"syscall"

	"github.com/sandrun/sandrun/internal/procfs"
)

// sysProcAttr puts a task process in a session (and process group) of its
// own, so that everything it starts can be found and ended with it, and has
// the kernel kill it if the emulator dies, so that a crashed emulator leaves
// no orphans. The parent-death signal reaches the task's main process only
// (its descendants outlive a crashed emulator unless they die with it), and,
// as Linux ties it to the thread that started the process, it also fires if
// that thread ends, which the Go runtime does only to a thread whose goroutine
// exits while locked to it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}

// signalTask sends sig to every process of the task whose main process is
// pid: its process group, every process of its session, which includes
// the processes it moved into process groups of their own (as a shell with
// job control or a process supervisor does), and every descendant of the
// main process, which includes those that started a session of their own
// (setsid) while it runs: a sandrun host is a child subreaper, so nothing
// its commands start leaves its process tree. What escaped a main process
// that already died is out of reach, as it would not be in Cloud Run,
// where it would die with the container. A SIGKILL therefore first stops
// every process it finds (a stopped process cannot fork), so that the main
// process dying first, as a container's entrypoint does, cannot hand what
// it adopted to init before it is killed too.
func signalTask(pid int, sig syscall.Signal) {
	if sig != syscall.SIGKILL {
		_ = syscall.Kill(-pid, sig)
		for _, p := range taskProcesses(pid) {
			_ = syscall.Kill(p, sig)
		}
		return
	}
	var found []int
	for range 5 { // a process may have forked just before it was stopped
		var more []int
		for _, p := range taskProcesses(pid) {
			if !slices.Contains(found, p) {
				_ = syscall.Kill(p, syscall.SIGSTOP)
				more = append(more, p)
			}
		}
		if len(more) == 0 {
			break
		}
		found = append(found, more...)
	}
	_ = syscall.Kill(-pid, sig)
	for _, p := range found {
		_ = syscall.Kill(p, sig)
	}
}

// freezeTask stops every process of the task whose main process is pid, as
// a paused machine stops them all, and returns those it stopped, for
// thawTask. A process stopped already is left out: continuing the task
// must not continue it. It looks again until it finds no process it has
// not stopped, since one may fork just before it is stopped.
func freezeTask(pid int) []int {
	var stopped []int
	for range 5 {
		var more []int
		for _, p := range taskProcesses(pid) {
			if !slices.Contains(stopped, p) && !slices.Contains(more, p) && !procfs.Stopped(p) {
				_ = syscall.Kill(p, syscall.SIGSTOP)
				more = append(more, p)
			}
		}
		if len(more) == 0 {
			break
		}
		stopped = append(stopped, more...)
	}
	return stopped
}

// thawTask continues the processes freezeTask stopped.
func thawTask(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGCONT)
	}
}

// taskAlive reports whether any process of the task whose main process was
// pid is still alive (zombies, which only wait to be reaped, do not count).
func taskAlive(pid int) bool {
	return len(taskProcesses(pid)) > 0
}

// taskProcesses lists, from one scan of /proc, the live processes of
// session sid and the live descendants of process sid.
func taskProcesses(sid int) []int {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte(strconv.Itoa(sid))
	var pids []int
	children := map[int][]int{}
	for _, d := range dir {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp session ...; comm may hold anything,
		// so the fields are counted from its closing parenthesis.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) <= 3 || string(f[0]) == "Z" {
			continue
		}
		if bytes.Equal(f[3], want) {
			pids = append(pids, pid)
			continue
		}
		if ppid, err := strconv.Atoi(string(f[1])); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	// Descendants outside the session, and theirs; those in the session
	// are listed already, and so are their descendants in it.
	queue := append([]int{sid}, pids...)
	for ; len(queue) > 0; queue = queue[1:] {
		for _, c := range children[queue[0]] {
			pids = append(pids, c)
			queue = append(queue, c)
		}
		delete(children, queue[0])
	}
	return pids
}
