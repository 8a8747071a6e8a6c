//go:build linux

package cloudrun

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
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
// pid: its process group, and every process of its session, which includes
// the processes it moved into process groups of their own (as a shell with
// job control or a process supervisor does). Only a process that started a
// session of its own escapes, which in Cloud Run would still die with the
// container.
func signalTask(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
	for _, p := range sessionMembers(pid) {
		_ = syscall.Kill(p, sig)
	}
}

// taskAlive reports whether any process of the task whose main process was
// pid is still alive (zombies, which only wait to be reaped, do not count).
func taskAlive(pid int) bool {
	return len(sessionMembers(pid)) > 0
}

// sessionMembers lists the live processes of session sid, from /proc.
func sessionMembers(sid int) []int {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte(strconv.Itoa(sid))
	var pids []int
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
		if f := bytes.Fields(stat[i+1:]); len(f) > 3 && bytes.Equal(f[3], want) && string(f[0]) != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}
