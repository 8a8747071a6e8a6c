package procs

import "sync/atomic"

// procTree is a view of the live (not zombie) processes below some
// processes: the children of each and their stats. Where the kernel
// offers the children files of /proc/PID/task/TID (Linux 3.5 and later,
// CONFIG_PROC_CHILDREN), it reads only the processes asked about, as the
// walk from the session's processes reaches them: a sweep then costs a few
// files per process of the session, not one per process on the machine,
// which an idle host's housekeeping would otherwise pay every
// ShipInterval. Elsewhere it scans all of /proc once.
//
// Either way it is a snapshot taken while processes fork and exit: a
// process that forks or is reparented during the walk may be missed (the
// next sweep finds it), and every pid it returns is checked against a
// pidfd and its start time before it is used.
type procTree struct {
	walk bool
	// stats holds what was read: walking, the processes reached so far;
	// scanning, every live process.
	stats map[int]procStat
	kids  map[int][]int // scanning only: live children by parent
}

// noChildrenFiles makes procTree and ownChildren do without the children
// files, as on a kernel that lacks them. Tests set it to cover that path.
var noChildrenFiles atomic.Bool

// newProcTree returns a view of the process tree as it is now.
func newProcTree() *procTree {
	if childrenFiles() {
		return &procTree{walk: true, stats: map[int]procStat{}}
	}
	t := &procTree{stats: liveStats(), kids: map[int][]int{}}
	for pid, st := range t.stats {
		t.kids[st.ppid] = append(t.kids[st.ppid], pid)
	}
	return t
}

// children returns the pids of the live children of pid; stat knows each.
func (t *procTree) children(pid int) []int {
	if !t.walk {
		return t.kids[pid]
	}
	pids, _ := childPids(pid) // gone: no children
	live := pids[:0]
	for _, c := range pids {
		st, ok := t.read(c)
		// Reparented since the file was read: it is another's child now.
		if ok && st.ppid == pid {
			live = append(live, c)
		}
	}
	return live
}

// stat returns the stat of pid, false when it is not a live process.
func (t *procTree) stat(pid int) (procStat, bool) {
	if st, ok := t.stats[pid]; ok || !t.walk {
		return st, ok
	}
	return t.read(pid)
}

// read reads the stat of pid into t, false when it is not a live process.
func (t *procTree) read(pid int) (procStat, bool) {
	st, err := readStat(pid)
	if err != nil || st.state == 'Z' || st.state == 'X' {
		return procStat{}, false
	}
	t.stats[pid] = st
	return st, true
}
