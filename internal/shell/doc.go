// Package shell runs one command of a sandrun session the way a terminal
// would, while keeping no shell alive between commands.
//
// A session's shell state (working directory and exported environment) is
// a State value that the caller keeps and persists: it survives the host
// process being replaced because it is plain data. Each command runs in a
// fresh bash started from that State, and bash writes the State it ends
// with to a state file before it exits. So `cd /tmp && export A=1` in one
// command and `pwd; echo $A` in the next print /tmp and 1, and `unset A`
// persists as well. What a fresh shell does not keep does not persist:
// shell options, functions, aliases and unexported variables.
//
// # How state is captured
//
// bash -c is given a small one-line wrapper script (see wrapper.go) and the
// command's script as a positional parameter, never in the environment, so
// the script cannot leak into the saved environment. The wrapper installs
// an EXIT trap, cd's to the start directory and evals the script in the
// same shell, so that cd, export and unset act on the shell whose state is
// saved. The trap writes $PWD and each exported variable as NAME=VALUE to
// the state file, NUL-separated, which is exact for values holding
// newlines, '=' or quotes. It uses bash builtins only (compgen -e for the
// names, ${!name} for the values), so saving starts no process, and writes
// what `env` would have printed then (a nameref as the name it refers to;
// no arrays, no variable exported without a value, no exported function).
// The state file is a memfd that bash opens by its /proc path, so that
// no file system is involved, where bash may open it: not for a command
// that runs as another user, nor in a process that is not dumpable (the
// executor in production), which get a file in the spool directory.
// An EXIT trap runs whichever way the shell ends: end of script, exit N, a
// syntax error, set -e, an error in a sourced file, or a fatal signal such
// as the SIGTERM of a timeout. The wrapper writes nothing to the command's
// stdout or stderr and exits with the command's exact status.
//
// Builtins know no size limit, but exec does: Wait keeps the state only if
// the next command's bash could be started with it, by the kernel's rules
// for the strings of an exec (see execFits); otherwise Result.StateError
// wraps ErrStateTooLarge and the session keeps the state it started from.
//
// Two traces of the eval show: bash names "eval" instead of "-c" in a
// syntax error, and set -x prefixes the command's trace with "++" instead
// of "+". Everything else (output, exit status, LINENO, $0, $#) is what
// `bash -c "$script"` would give; the tests compare the two.
//
// A long-lived shell fed commands over a pipe was rejected: output framing
// and exit codes need in-band markers that a command can forge or break,
// one hung command wedges the session, and a crash loses the state anyway.
// A fresh process per command costs a few milliseconds and makes every
// command independent.
//
// The state is not saved when bash cannot run its trap: the command exec'd
// another program, bash was SIGKILLed, or the command replaced the EXIT
// trap and then left with exit or an error. Result.StateSaved is false and
// the session keeps the state the command started from. bash's own
// bookkeeping (PWD, SHLVL, _) and exported functions are not saved; OLDPWD
// is, so `cd -` works across commands.
//
// A command gets, in $__sandrun_state, the path of its state file; the
// /proc path of a memfd names one of this process's descriptors, which
// may name another file once the command has ended. Like the rest of the
// reserved prefix, it is not for commands to use.
//
// # Processes
//
// bash leads a process group of its own. A timeout or the context ending
// sends SIGTERM to the whole group, then SIGKILL after a grace period, and
// Wait returns once the group is gone. Processes still in the group after
// bash exited normally (`server &`) are reported as Result.Leftovers and
// are left running: they are the caller's background processes. A process
// that leaves the group (setsid) is not this package's to find: the caller
// tracks it (package procs, from the process tree). CommandScript tells
// the caller which processes are this package's bash (or a subshell of
// one) and what script they run.
//
// # Output
//
// A command writes to pipes, and a goroutine per pipe appends what comes
// out to the caller's file. Regular files would be simpler, but a command
// that reopens its output (`echo y > /dev/stdout`, `tee /dev/stderr`, a
// program that opens /dev/stdout) opens the file again with O_TRUNC and
// wipes what was written before; O_APPEND on the first descriptor does
// not help, as the reopen makes a new one. A reopened pipe is the same
// pipe, so nothing is lost and each stream keeps its order, as in a
// terminal. When bash exits, what was written until then, including what
// still waits in the pipe, is the command's output (Result.StdoutBytes,
// StderrBytes); the result waits for nothing more, so a background child
// holding the pipe cannot delay it. What leftovers write later is appended
// after it (the file becomes their log) and never changes it. The copy
// uses one fixed buffer per stream: memory does not grow with output.
//
// # What this package never does
//
// It never passes the caller's environment to a command (the executor's
// holds credentials): a command's environment is exactly State.Env plus
// Command.Env. It never runs a command through the session's PATH to find
// bash, and the wrapper calls every builtin as such. It never keeps a process alive between commands, never kills
// leftovers of a command that ended by itself, and never stores State
// anywhere: persisting it is the caller's job.
//
// Leftovers are found by scanning /proc: the package is for Linux. On other
// systems it builds, but reports no Leftovers.
package shell
