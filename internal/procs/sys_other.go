//go:build !linux

package procs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Off Linux (development builds only) the shell reports no leftovers, so
// nothing is ever adopted: these stand-ins are not reached but build.

var errNoPidfd = fmt.Errorf("pidfds: %w", errors.ErrUnsupported)

// BecomeSubreaper is supported on Linux only.
func BecomeSubreaper() error {
	return fmt.Errorf("child subreaper: %w", errors.ErrUnsupported)
}

// DenyInspection is supported on Linux only.
func DenyInspection() error {
	return fmt.Errorf("non-dumpable process: %w", errors.ErrUnsupported)
}

func reapsOrphans() bool { return false }

type procStat struct {
	state      byte
	ppid, pgrp int
	sid        int
	start      uint64
}

func readStat(pid int) (procStat, error)                   { return procStat{}, errNoPidfd }
func startedAt(ticks uint64) time.Time                     { return time.Now() }
func readCommand(pid int) string                           { return "[?]" }
func readArgv(pid int) []string                            { return nil }
func readComm(pid int) string                              { return "" }
func openPidfd(pid int) (*os.File, error)                  { return nil, errNoPidfd }
func awaitPidfd(pidfd *os.File) error                      { return errNoPidfd }
func exitedPidfd(pidfd *os.File) bool                      { return true }
func signalPidfd(pidfd *os.File, sig syscall.Signal) error { return errNoPidfd }
func reapPidfd(pidfd *os.File) (exit, bool)                { return exit{}, false }
func orphanZombies(groups map[int]bool, owns bool) []int   { return nil }
func liveStats() map[int]procStat                          { return nil }
func ownChildren() ([]int, bool)                           { return nil, false }
func childPids(pid int) ([]int, bool)                      { return nil, false }
func childrenFiles() bool                                  { return false }

// dupFile returns a new descriptor of f's open file.
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = syscall.Dup(int(fd))
		if derr == nil {
			syscall.CloseOnExec(nfd)
		}
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), derr)
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

func isGone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrProcessDone)
}
