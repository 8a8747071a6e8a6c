//go:build unix && !linux

package cloudrun

import (
	"errors"
	"syscall"
)

// sysProcAttr puts a task process in a session (and process group) of its
// own. Without Linux's parent-death signal, a crashed emulator may leave
// task processes behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}

// signalTask sends sig to the process group of the task whose main process is
// pid. Processes it moved into other process groups are not reached.
func signalTask(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}

// taskAlive reports whether the process group of the task whose main process
// was pid still has a member.
func taskAlive(pid int) bool {
	return !errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH)
}

// freezeTask stops the process group of the task whose main process is pid
// and returns it (negated) for thawTask. Processes it moved into other
// process groups are not reached, and one stopped already is continued
// with the rest.
func freezeTask(pid int) []int {
	_ = syscall.Kill(-pid, syscall.SIGSTOP)
	return []int{-pid}
}

// thawTask continues what freezeTask stopped.
func thawTask(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGCONT)
	}
}
