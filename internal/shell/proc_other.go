//go:build !linux

package shell

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// groupMembers cannot list a process group without /proc: Leftovers stay
// empty off Linux, which sandrun supports for development builds only.
func groupMembers(pgid int) ([]int, error) { return nil, nil }

// groupPrograms cannot list a group either: no late signal off Linux.
func groupPrograms(pgid int) map[int]string { return nil }

// awaitGroupExit polls until signal 0 finds nobody in the group (zombies
// included), or deadline.
func awaitGroupExit(pgid int, deadline time.Time) {
	for time.Now().Before(deadline) && syscall.Kill(-pgid, 0) == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// queuedBytes is not known here: output still queued in a pipe when a
// command ends then counts as its leftovers' (development builds only).
func queuedBytes(f *os.File) (int, error) { return 0, nil }

// awaitChildExit has no pidfd to wait on: the caller's wait blocks.
func awaitChildExit(pid int) {}

// memStateFile has no memfd to make: state files go to the spool
// directory.
func memStateFile() (*os.File, string, error) {
	return nil, "", errors.ErrUnsupported
}

func memStatePath(pid, fd string) string { return "" }

// othersMayOpenOwnFds has no /proc rules to go by: memStateFile fails
// anyway.
func othersMayOpenOwnFds() bool { return true }
