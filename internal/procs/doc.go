// Package procs is the session host's process manager: the background
// processes of one session on one host, and the one foreground command.
//
// # What it owns
//
//   - Background processes (exec with background): Start runs the command
//     through shell.Start in the session's shell state, with stdout and
//     stderr in log files in the Manager's directory and stdin from a pipe
//     the Manager keeps (keepStdin) or /dev/null, and returns its pid (bash's,
//     which leads the command's process group) at once. The shell state the
//     command leaves is dropped.
//   - Adopted leftovers: what a command leaves running in its process group
//     after bash exited (`python3 -m http.server 8000 &`, shell.Result's
//     Leftovers). Each becomes a background process of its own, listed with
//     its /proc command line, sharing the logs of the command that started
//     it: for a foreground command, its output files, which the Manager
//     keeps (it holds its own descriptors and moves the files into its
//     directory). The same holds for what a background command leaves.
//   - Descendants found at a kill: what a process being killed started and
//     the Manager does not track (an adopted subshell's child, a process
//     that left its command's group) is adopted the same way when the
//     signal is sent, sharing the logs of the process it descends from,
//     and killed with it.
//   - Processes that left their command's group (setsid, `setsid -f`,
//     a daemon's double fork): found in the process tree, which they
//     cannot leave while the host is a child subreaper, adopted under the
//     process they descend from (ProcessInfo.Parent), killed with their
//     command's timeout, ended with the host. Why a subreaper and not a
//     cgroup, and the one imprecision of the tracking: escapes.go.
//   - The foreground command, which the host runs itself and announces with
//     BeginForeground and Foreground.End, so that List, Kill, Logs, Wait and
//     View see it, and End reports whether Kill ended it.
//   - Control: List, Get, Kill (by pid, RE2 pattern on the command line, or
//     all; the signal, then SIGKILL after a grace, to the processes and
//     their descendants, answered once they all ended), Logs (a slice of each
//     stream and its size, from the local files), Wait (with a timeout),
//     Write (to a kept stdin), View (the foreground command's latest
//     output), Live and LiveChanged (the host stays up while background
//     processes run).
//   - Telling the outside through two small interfaces the host implements:
//     Registry (a process started, ended) and LogSink (copies of the logs).
//     Both are called from the Manager's own goroutines, in order, off the
//     path of Start and Kill, and flushed by Close.
//   - Close: every process ended (SIGTERM, SIGKILL after a grace), recorded
//     killed with ReasonHostEnded, last logs shipped, registry calls made,
//     files removed, no goroutine left; with Config.OwnsOrphans, nothing
//     left running below the host's process. KillAll: everything SIGKILLed
//     at once, for a host that lost its lease.
//
// # Processes it did not start
//
// A leftover is not the host's child (bash was its parent), so it cannot
// be waited for. The Manager opens a pidfd for it at adoption: the pidfd
// pins that very process whatever becomes of its pid, becomes readable when
// it exits (the runtime's poller waits on it: no thread per process), and
// carries its signals (pidfd_send_signal). Its exit status is unknowable
// (status exited, exit code nil) unless the host process is a child
// subreaper (BecomeSubreaper, a process-wide choice for the host's main):
// orphans are then reparented to the host, and the Manager reaps each
// adopted process with waitid(P_PIDFD), learning its exit code or signal.
// It never waits for "any child", so os/exec's children (bash, and
// anything else the host runs) are never stolen from their Wait; besides
// the adopted processes it reaps only zombies that are members, not
// leaders, of a session command's process group, which no os/exec child is.
//
// # Logs and shipping
//
// Logs are files, filled from the processes' output pipes by the shell
// package (a fixed buffer per stream): memory does not grow with output. Every Config.ShipInterval (5 s)
// the streams that changed are shipped, and each process's streams once
// more when it ends, before Registry.Ended is called. A ship hands the sink
// a reader over the file's last Config.ShipLimit bytes (10 MiB): a larger
// stream loses its beginning in the copy (the local file keeps it while
// the host lives), and each ship copies the whole capped stream again,
// which is cheap while logs are small.
//
// Ended processes stay listed, with their log files open, until Close. A
// pid reused on the same host replaces the ended process that had it.
//
// # What it never does
//
// It never decides what a request means (validation, defaults such as
// grace_seconds, the mapping of its errors to protocol codes, and the
// wire format are the host's and the api package's), and it never talks to
// Google services itself: Firestore and Cloud Storage are behind Registry
// and LogSink. It never signals a process by a pid that may have been
// reused, never kills a process it was not asked to (leftovers of a
// command that ended by itself run on; what a killed process started is
// killed with it), and never reaps a child that is not an adopted process
// or a zombie member of a session command's group.
//
// The package is for Linux (pidfds, /proc). Elsewhere it builds, and the
// shell reports no leftovers, so nothing is adopted.
package procs
