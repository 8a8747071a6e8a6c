package procs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/sandrun/sandrun/internal/shell"
)

// Status says whether a process runs and, once it ended, how.
type Status string

const (
	// StatusRunning: the process runs.
	StatusRunning Status = "running"
	// StatusExited: the process ended by itself.
	StatusExited Status = "exited"
	// StatusKilled: the process ended after the Manager signalled it
	// (Kill, Close) or its timeout expired; Reason says which.
	StatusKilled Status = "killed"
)

// Stream names, as LogSink.Ship receives them.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Reasons the Manager records on the processes it ends.
const (
	// ReasonHostEnded is recorded on the processes Close ends.
	ReasonHostEnded = "the host ended"
	// ReasonKilled is recorded by Kill when its request gives no reason.
	ReasonKilled = "killed on request"
	// ReasonTimeout is recorded on a background process whose
	// shell.Command.Timeout expired.
	ReasonTimeout = "its timeout expired"
)

// Defaults of Config and of the callers' requests.
const (
	// DefaultShipInterval is how often running processes' logs are
	// shipped.
	DefaultShipInterval = 5 * time.Second
	// DefaultShipLimit is how much of each stream is shipped: its last 10
	// MiB.
	DefaultShipLimit = 10 << 20
	// DefaultCloseGrace is how long Close waits between SIGTERM and SIGKILL.
	DefaultCloseGrace = 3 * time.Second
	// DefaultKillGrace is the grace of a kill request that names none (the
	// protocol's grace_seconds default).
	DefaultKillGrace = 5 * time.Second
	// DefaultReadBytes bounds what Logs and View return per stream when the
	// caller gives no bound (the protocol's inline output size).
	DefaultReadBytes = 64 << 10
	// killWait bounds how long Kill waits for SIGKILLed processes to vanish
	// (a process in uninterruptible sleep does not die at once).
	killWait = 5 * time.Second
)

// Errors callers branch on. They are wrapped with the pid and the step.
var (
	// ErrNotFound: no process of this host has that pid (the protocol's
	// NOT_FOUND).
	ErrNotFound = errors.New("no such process")
	// ErrNoStdin: the process has no open stdin: it was not started with
	// keepStdin, its stdin was closed, or it ended (FAILED_PRECONDITION).
	ErrNoStdin = errors.New("process has no open stdin")
	// ErrTimeout: Wait's timeout passed and the process still runs
	// (TIMEOUT).
	ErrTimeout = errors.New("process still running")
	// ErrBusy: a foreground command is already running.
	ErrBusy = errors.New("a foreground command is already running")
	// ErrClosed: Close was called.
	ErrClosed = errors.New("process manager closed")
	// ErrInvalid is shell.ErrInvalid, so that one check covers what Start
	// passes on from the shell and the requests the Manager refuses itself
	// (INVALID_ARGUMENT).
	ErrInvalid = shell.ErrInvalid
)

// ProcessInfo describes one process of the host, running or ended.
type ProcessInfo struct {
	Pid int
	// Parent is the pid of the listed process this one was found under:
	// the background command, adopted process (a subshell) or foreground
	// command that started it. 0 for a command, and for what a foreground
	// command that ended left running.
	Parent int
	// Command is the script of a background process or foreground
	// command, and the command line (/proc/PID/cmdline, arguments joined
	// by spaces, as of the last Get, List or Kill while it runs) of an
	// adopted process; for a subshell of a command, the command's script.
	Command string
	Status  Status
	// ExitCode is nil while the process runs and when its exit status is
	// unknowable: an adopted leftover is not the host's child, so only a
	// host that is a child subreaper (see BecomeSubreaper) learns it. A
	// process killed by a signal has 128+n, as a shell reports it.
	ExitCode *int
	// Signal names the signal that ended the process as the protocol does
	// ("TERM", "KILL") when it is known; for a killed process whose exit
	// status is unknowable, the last signal the Manager sent it.
	Signal string
	// Reason says why a killed process was ended (the KillRequest's
	// Reason, ReasonHostEnded, ReasonTimeout).
	Reason     string
	StartedAt  time.Time
	FinishedAt time.Time // zero while running
	// Foreground marks the foreground command.
	Foreground bool
	// Adopted marks a process a command left running (`server &`).
	Adopted bool
	// Stdin reports that the process's stdin is open for Write.
	Stdin bool
	// StdoutBytes and StderrBytes are the sizes of its logs so far. Adopted
	// processes share the logs of the command that started them.
	StdoutBytes, StderrBytes int64
}

// ProcessKey names a process across a session's hosts: the host's lease
// epoch and the pid. Its String is the registry's document id and the
// logs' object prefix, "{epoch}-{pid}".
type ProcessKey struct {
	Epoch int64
	Pid   int
}

func (k ProcessKey) String() string { return fmt.Sprintf("%d-%d", k.Epoch, k.Pid) }

// Registry is told when a background process starts and when it ends (the
// host keeps a document per process). The Manager calls it from one
// goroutine, in order, never on the path of Start or Kill: Ended comes after
// the process's Started, and after its logs were last shipped. Close
// returns once every call was made. An error is logged and not retried:
// retries are the implementation's choice. The foreground command is not
// registered; its adopted leftovers are.
type Registry interface {
	Started(ctx context.Context, p ProcessInfo) error
	Ended(ctx context.Context, p ProcessInfo) error
}

// LogSink keeps copies of background processes' logs outside the host.
// Ship replaces the stored copy of one stream of a process with r, which
// yields size bytes: the stream's last bytes, at most Config.ShipLimit of
// them (a stream larger than that loses its beginning; ProcessInfo's
// StdoutBytes and StderrBytes, given to Registry.Ended, tell the whole
// size). r reads the log file on demand, so shipping holds no copy in
// memory. Ship is called from one goroutine, every Config.ShipInterval for
// a stream that changed, and once more when the process ends; a failed
// Ship is logged and retried at the next interval.
type LogSink interface {
	Ship(ctx context.Context, key ProcessKey, stream string, r io.Reader, size int64) error
}

// Signaler is the foreground command as the Manager needs it. A
// *shell.Running is one: Signal reaches its whole process group and
// returns os.ErrProcessDone once bash has exited.
type Signaler interface {
	Pid() int
	Signal(syscall.Signal) error
}

// KillRequest selects processes to end and how. Exactly one of Pid,
// Pattern and All is set.
type KillRequest struct {
	// Pid selects one process. An unknown pid is ErrNotFound; one that
	// already ended is signalled no more (Kill returns no pids).
	Pid int
	// Pattern selects the running processes whose command line (see
	// ProcessInfo.Command) an RE2 regular expression matches anywhere.
	Pattern string
	// All selects every running process, the foreground command included.
	All bool
	// Signal is sent first; 0 means SIGTERM.
	Signal syscall.Signal
	// Grace is how long the processes have to end before SIGKILL; 0 means
	// DefaultKillGrace (to kill at once, send SIGKILL).
	Grace time.Duration
	// Reason is recorded on the processes this ends; "" means ReasonKilled.
	// A foreground command's End reports it (e.g. "killed by request r1").
	Reason string
}

// LogRange selects what Logs returns of each stream.
type LogRange struct {
	// Offset is where the returned bytes start.
	Offset int64
	// Tail, when positive, returns the stream's last Tail bytes instead;
	// it excludes Offset.
	Tail int64
	// Max bounds the bytes returned per stream; 0 means DefaultReadBytes.
	Max int
}

// Output is a slice of a process's stdout and stderr.
type Output struct {
	Stdout, Stderr []byte
	// StdoutBytes and StderrBytes are each stream's whole size so far.
	StdoutBytes, StderrBytes int64
}

// exit is how a process ended, when known.
type exit struct {
	code   int
	signal string
}
