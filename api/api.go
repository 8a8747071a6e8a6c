// Package api is sandrun's public wire contract, version 1: the JSON of the
// requests a backend publishes, the JSON of the completions sandrun publishes
// back, the Pub/Sub attributes both carry, and the rules a request must meet.
// Other Go programs import it; backends in other languages follow the JSON
// Schemas in api/schema and docs/protocol.md, which say the same.
//
// The package holds data and validation only: it never does I/O.
package api

import "time"

// Pub/Sub attributes of requests and completions. A request is published with
// ordering key = session_id.
const (
	AttrSessionID   = "session_id"
	AttrRequestID   = "request_id"
	AttrOp          = "op"
	AttrStatus      = "status"
	AttrTraceparent = "traceparent"
)

// Op names an operation.
type Op string

// The operations sandrun serves. docs/protocol.md describes each.
const (
	OpExec           Op = "exec"
	OpSessionCreate  Op = "session.create"
	OpSessionGet     Op = "session.get"
	OpSessionDestroy Op = "session.destroy"

	OpFileRead     Op = "file.read"
	OpFileWrite    Op = "file.write"
	OpFileDelete   Op = "file.delete"
	OpFileExists   Op = "file.exists"
	OpFileList     Op = "file.list"
	OpFileFind     Op = "file.find"
	OpFileSearch   Op = "file.search"
	OpFileReplace  Op = "file.replace"
	OpFileUpload   Op = "file.upload"
	OpFileDownload Op = "file.download"

	OpProcessList  Op = "process.list"
	OpProcessKill  Op = "process.kill"
	OpProcessLogs  Op = "process.logs"
	OpProcessWait  Op = "process.wait"
	OpProcessWrite Op = "process.write"

	OpShellView Op = "shell.view"
)

// ControlOp reports whether op is a control operation (process.* and
// shell.view): a host serves it while a foreground command runs, ahead of
// the requests queued behind that command. Every other operation of a
// session runs one at a time, in inbox order, session.destroy aside (it too
// overtakes, and ends what runs).
func ControlOp(op Op) bool {
	switch op {
	case OpProcessList, OpProcessKill, OpProcessLogs, OpProcessWait, OpProcessWrite, OpShellView:
		return true
	}
	return false
}

// Status is the outcome of a request.
type Status string

// The two statuses of a completion.
const (
	StatusOK    Status = "ok"
	StatusError Status = "error"
)

// ErrorCode says why a request failed. Callers branch on it.
type ErrorCode string

// The error codes of a completion.
const (
	// CodeInvalidArgument: the request breaks a rule of this contract.
	CodeInvalidArgument ErrorCode = "INVALID_ARGUMENT"
	// CodeNotFound: the session named does not exist (session.get,
	// session.destroy); the exec's cwd, a file or directory, a process
	// (pid), or a staged object does not.
	CodeNotFound ErrorCode = "NOT_FOUND"
	// CodeFailedPrecondition: the session's state did not allow the
	// request, and nothing changed: file.replace found another number of
	// occurrences than expected, file.delete of a non-empty directory
	// without recursive, file.read or file.write of a directory,
	// process.write to a process whose stdin is not open.
	CodeFailedPrecondition ErrorCode = "FAILED_PRECONDITION"
	// CodeTimeout: the command ran past its timeout and was killed.
	CodeTimeout ErrorCode = "TIMEOUT"
	// CodeHostLost: the host running the request died; it was not re-run.
	CodeHostLost ErrorCode = "HOST_LOST"
	// CodeNotSupported: sandrun cannot do what the request asks: a browser.*
	// operation (sandboxes have no display), an exec with tty.
	CodeNotSupported ErrorCode = "NOT_SUPPORTED"
	// CodeResourceExhausted: a limit was reached (size, count, time), such
	// as inline file content over MaxInlineFileBytes (the message says to
	// use file.upload or file.download).
	CodeResourceExhausted ErrorCode = "RESOURCE_EXHAUSTED"
	// CodeLaunchFailed: no host could be started for the session.
	CodeLaunchFailed ErrorCode = "LAUNCH_FAILED"
	// CodeAborted: the session was destroyed (by a session.destroy, or for
	// being idle too long) before the request finished, or a process.kill
	// ended the foreground exec (the message names the process.kill's
	// request; exit_code is 128+n for signal n).
	CodeAborted ErrorCode = "ABORTED"
	// CodeInternal: sandrun failed; the message says where.
	CodeInternal ErrorCode = "INTERNAL"
)

// Request is one operation for one session, published as the JSON message
// data. Each operation takes only its own fields (docs/protocol.md lists
// them); the others must be left out: ParseRequest rejects a request that
// carries a field of another operation, even with its zero value.
//
// The zero value of a field means what leaving the field out means, so a
// Request built in Go and marshalled (every field is omitempty) says what
// its values say.
type Request struct {
	// RequestID is the caller's idempotency key: the same RequestID delivered
	// twice executes once.
	RequestID string `json:"request_id"`
	// SessionID names the session; a request for an unknown session creates it.
	SessionID string `json:"session_id"`
	Op        Op     `json:"op"`

	// Command is the bash source that exec runs.
	Command string `json:"command,omitempty"`
	// TimeoutSeconds bounds an exec (default DefaultTimeout) or how long a
	// process.wait waits (default DefaultWaitTimeout); at most MaxTimeout.
	// See Timeout.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// Env is added to the environment of this command only. Names are shell
	// variable names that do not begin with ReservedEnvPrefix; values hold
	// no NUL.
	Env map[string]string `json:"env,omitempty"`
	// Cwd is the directory of this command only, relative to the session's
	// working directory when not absolute.
	Cwd string `json:"cwd,omitempty"`
	// Background makes exec start the command as a background process and
	// answer at once with its pid. A background exec takes no
	// timeout_seconds.
	Background bool `json:"background,omitempty"`
	// KeepStdin keeps a background process's stdin open for process.write
	// (exec with Background only); otherwise its stdin is empty.
	KeepStdin bool `json:"keep_stdin,omitempty"`
	// TTY asks for an interactive terminal, which sandrun cannot give: an
	// exec with TTY is answered NOT_SUPPORTED.
	TTY bool `json:"tty,omitempty"`

	// Path is the file or directory of a file.* operation, relative to the
	// session's working directory unless absolute. file.list, file.find and
	// file.search default to the working directory; the others need one.
	Path string `json:"path,omitempty"`
	// EncodedContent is what file.write writes or process.write sends, as
	// Encoding encodes it; the method Content decodes it.
	EncodedContent string `json:"content,omitempty"`
	// Encoding is how EncodedContent is encoded (file.write, process.write), or
	// how file.read returns the file: EncodingUTF8 (the default) or
	// EncodingBase64.
	Encoding Encoding `json:"encoding,omitempty"`
	// Offset is where file.read starts reading, or process.logs, in bytes.
	Offset int64 `json:"offset,omitempty"`
	// Length is how many bytes file.read returns at most; 0 means as many
	// as fit inline (MaxInlineFileBytes).
	Length int64 `json:"length,omitempty"`
	// Mode is the permission bits file.write gives the file, in octal
	// ("0644", "755"); see ParseMode. A new file gets 0644 and an existing
	// one keeps its mode when Mode is empty.
	Mode string `json:"mode,omitempty"`
	// Append makes file.write append to the file instead of replacing it.
	Append bool `json:"append,omitempty"`
	// Recursive lets file.delete delete a non-empty directory, and makes
	// file.list descend into subdirectories.
	Recursive bool `json:"recursive,omitempty"`
	// MaxDepth limits how deep file.list (with Recursive), file.find and
	// file.search descend: 1 is the entries of Path itself; 0 means no
	// limit.
	MaxDepth int `json:"max_depth,omitempty"`
	// Hidden includes entries whose name starts with "." in file.list,
	// file.find and file.search.
	Hidden bool `json:"hidden,omitempty"`
	// Pattern is file.find's glob (see MatchGlob), file.search's RE2
	// regular expression, or process.kill's RE2 regular expression matched
	// against each process's command line.
	Pattern string `json:"pattern,omitempty"`
	// Include is a glob (see MatchGlob): file.search reads only the files
	// whose path relative to Path matches it.
	Include string `json:"include,omitempty"`
	// MaxResults bounds the entries or matches of file.list, file.find and
	// file.search (default DefaultMaxResults, at most MaxResults). See
	// ResultLimit.
	MaxResults int `json:"max_results,omitempty"`
	// OldString is what file.replace replaces, byte for byte; not empty.
	OldString string `json:"old_string,omitempty"`
	// NewString is what file.replace puts in its place; empty deletes it.
	NewString string `json:"new_string,omitempty"`
	// ExpectedCount is how many occurrences of OldString file.replace must
	// find, else it changes nothing (default 1). It excludes ReplaceAll.
	ExpectedCount int `json:"expected_count,omitempty"`
	// ReplaceAll makes file.replace replace every occurrence, of which
	// there must be at least one.
	ReplaceAll bool `json:"replace_all,omitempty"`
	// Object is the Cloud Storage object (gs://BUCKET/NAME) that the
	// client staged for file.upload, under
	// sessions/{session_id}/transfers/ of the deployment's bucket.
	Object string `json:"object,omitempty"`

	// PID is the process of process.kill, process.logs, process.wait and
	// process.write.
	PID int `json:"pid,omitempty"`
	// All makes process.kill signal every process of the session.
	All bool `json:"all,omitempty"`
	// Signal is what process.kill sends: TERM (the default), INT, HUP,
	// KILL, QUIT, USR1 or USR2, also with the prefix SIG. See ParseSignal.
	Signal string `json:"signal,omitempty"`
	// GraceSeconds is how long process.kill waits after the signal before
	// it sends SIGKILL to what still runs (default DefaultKillGrace). See
	// KillGrace.
	GraceSeconds float64 `json:"grace_seconds,omitempty"`
	// TailBytes makes process.logs return the last TailBytes bytes of each
	// stream. It excludes Offset.
	TailBytes int64 `json:"tail_bytes,omitempty"`
	// CloseStdin makes process.write close the process's stdin after
	// writing the content, which may then be empty.
	CloseStdin bool `json:"close_stdin,omitempty"`
}

// Completion is the one terminal outcome of a request, published as the JSON
// message data with attributes session_id, request_id, op and status. Every
// completion published for a request has the same content.
type Completion struct {
	RequestID string `json:"request_id"`
	// SessionID and Op are the request's. In the error completion of a
	// request rejected for them, they are what could be read (cut to 256
	// and 64 bytes), so SessionID may be invalid or empty there.
	SessionID string `json:"session_id"`
	Op        Op     `json:"op"`
	// Status is ok when the operation ran (for exec, ExitCode says how the
	// command ended), error when it did not run to an end.
	Status Status `json:"status"`
	// Error is set when Status is error.
	Error *Error `json:"error,omitempty"`

	// ExitCode is the command's exit status (128+n when killed by signal n,
	// 124 on timeout), or for process.wait the process's; -1 when no
	// command ran to an end; 0 for other operations that succeed.
	ExitCode int `json:"exit_code"`
	// Stdout and Stderr hold the output up to InlineOutputBytes each: of an
	// exec's command, of a log part for process.logs, of the last output of
	// the foreground command for shell.view. When an output is not valid
	// UTF-8 it is base64 and its encoding field says so.
	Stdout         string   `json:"stdout"`
	Stderr         string   `json:"stderr"`
	StdoutEncoding Encoding `json:"stdout_encoding,omitempty"`
	StderrEncoding Encoding `json:"stderr_encoding,omitempty"`
	// StdoutBytes and StderrBytes are the whole output's sizes: what the
	// command printed, even past MaxOutputBytes.
	StdoutBytes int64 `json:"stdout_bytes"`
	StderrBytes int64 `json:"stderr_bytes"`
	// StdoutObject and StderrObject name the Cloud Storage object
	// (gs://bucket/name) holding the whole output, up to MaxOutputBytes,
	// when it was cut here.
	StdoutObject string `json:"stdout_object,omitempty"`
	StderrObject string `json:"stderr_object,omitempty"`
	// StdoutCut and StderrCut are true when the command printed more than
	// MaxOutputBytes to the stream: its object holds the first
	// MaxOutputBytes, and the rest was not kept.
	StdoutCut bool `json:"stdout_cut,omitempty"`
	StderrCut bool `json:"stderr_cut,omitempty"`
	// Cwd is the session's working directory after the request.
	Cwd string `json:"cwd,omitempty"`

	// Session describes the session, for session.* operations.
	Session *SessionInfo `json:"session,omitempty"`

	// Content is what file.read read: at most MaxInlineFileBytes, as text
	// when ContentEncoding is empty, else base64. ContentData decodes it.
	Content         string   `json:"content,omitempty"`
	ContentEncoding Encoding `json:"content_encoding,omitempty"`
	// Size is the whole size of the file file.read read, or of the object
	// file.download wrote, in bytes.
	Size int64 `json:"size,omitempty"`
	// EOF is true when Content reaches the end of the file (file.read).
	EOF bool `json:"eof,omitempty"`
	// Exists says whether the path exists: set, true or false, in every
	// ok completion of file.exists, and in no other completion.
	Exists *bool `json:"exists,omitempty"`
	// File describes the file of file.exists (when it exists), and the file
	// as file.write or file.upload left it.
	File *FileInfo `json:"file,omitempty"`
	// Entries are what file.list and file.find found.
	Entries []FileInfo `json:"entries,omitempty"`
	// Matches are the lines file.search found.
	Matches []Match `json:"matches,omitempty"`
	// Truncated is true when max_results cut Entries or Matches short.
	Truncated bool `json:"truncated,omitempty"`
	// Replacements counts what file.replace replaced.
	Replacements int `json:"replacements,omitempty"`
	// Object is the Cloud Storage object (gs://BUCKET/NAME) holding the
	// file of a file.download.
	Object string `json:"object,omitempty"`

	// PID is the process an exec with background started, or the one a
	// process.wait waited for.
	PID int `json:"pid,omitempty"`
	// Processes are the session's processes (process.list), or the one a
	// process.wait waited for.
	Processes []ProcessInfo `json:"processes,omitempty"`
	// Killed are the pids process.kill signalled.
	Killed []int `json:"killed,omitempty"`
	// BackgroundPIDs are, for an exec without background, the pids of the
	// processes the command left running (`server &`), which are now
	// background processes of the session.
	BackgroundPIDs []int `json:"background_pids,omitempty"`
	// Running is the foreground command running now (shell.view); nil when
	// none is.
	Running *ProcessInfo `json:"running,omitempty"`

	// ResultObject is set when the completion's JSON was larger than
	// MaxCompletionBytes: it names the Cloud Storage object
	// (gs://bucket/name) holding the whole completion as JSON, and this
	// completion is its Summary. The Go client and the Python SDK fetch it
	// in its place.
	ResultObject string `json:"result_object,omitempty"`

	// ColdStart is true when a host was launched for this request.
	ColdStart bool `json:"cold_start"`
	// PoolHit is true when the request waited for a host that the warm
	// pool had started ahead of need and handed to its session: a
	// handover and a restore, not a cold start.
	PoolHit bool `json:"pool_hit,omitempty"`
	// ExecutionID is the Cloud Run execution that served the request.
	ExecutionID string `json:"execution_id,omitempty"`
	// DurationSeconds is how long the operation itself ran.
	DurationSeconds float64 `json:"duration_seconds"`
	Timing          Timing  `json:"timing"`
}

// Encoding says how bytes travel in a JSON string: as the text itself
// (EncodingUTF8, or empty) or as base64 (standard alphabet, padded).
type Encoding string

// The encodings. A completion marks base64 output or content with
// EncodingBase64 and leaves text unmarked; a request may name either.
const (
	EncodingUTF8   Encoding = "utf-8"
	EncodingBase64 Encoding = "base64"
)

// Error explains a failed request.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// Timing breaks a request's life down.
type Timing struct {
	// AcceptedAt is when the dispatcher accepted the request.
	AcceptedAt time.Time `json:"accepted_at,omitzero"`
	// StartedAt and FinishedAt bound the operation on its host.
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// QueueSeconds: accepted to started, including any host launch.
	QueueSeconds float64 `json:"queue_seconds"`
	// LaunchSeconds: launch requested to host serving, on a cold start or
	// a pool handover.
	LaunchSeconds float64 `json:"launch_seconds,omitempty"`
	// RestoreSeconds: checkpoint restore, on the first request of a host.
	RestoreSeconds float64 `json:"restore_seconds,omitempty"`
	// RunSeconds: the operation itself.
	RunSeconds float64 `json:"run_seconds"`
	// TotalSeconds: accepted to finished.
	TotalSeconds float64 `json:"total_seconds"`
}

// SessionInfo describes a session.
type SessionInfo struct {
	SessionID string `json:"session_id"`
	// Status is active or destroyed.
	Status       string    `json:"status"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	LastActiveAt time.Time `json:"last_active_at,omitzero"`
	// Host is the execution hosting the session, if any.
	Host string `json:"host,omitempty"`
	// Queued counts requests waiting for the host.
	Queued int `json:"queued"`
	// Cwd is the session's working directory.
	Cwd string `json:"cwd,omitempty"`
}

// FileInfo describes a file or directory.
type FileInfo struct {
	// Path is the path as the request gave it (file.exists, file.write,
	// file.upload), or relative to the directory listed or searched
	// (file.list, file.find).
	Path string   `json:"path"`
	Type FileType `json:"type"`
	// Size is in bytes.
	Size int64 `json:"size"`
	// Mode is the permission bits in octal, such as "0644"; see FormatMode.
	Mode       string    `json:"mode"`
	ModifiedAt time.Time `json:"modified_at,omitzero"`
	// Target is where a symbolic link points.
	Target string `json:"target,omitempty"`
}

// FileType is the kind of a FileInfo.
type FileType string

// The kinds of file.
const (
	FileTypeFile    FileType = "file"
	FileTypeDir     FileType = "dir"
	FileTypeSymlink FileType = "symlink"
	FileTypeOther   FileType = "other"
)

// Match is a line that file.search found.
type Match struct {
	// Path is the file's path relative to the directory searched.
	Path string `json:"path"`
	// LineNumber counts from 1.
	LineNumber int `json:"line_number"`
	// Line is the line without its newline, cut to MaxMatchLineBytes and
	// made valid UTF-8.
	Line string `json:"line"`
}

// ProcessInfo describes a process of a session.
type ProcessInfo struct {
	PID int `json:"pid"`
	// ParentPID is the pid of the listed process this one was started
	// under (the background command, or the subshell, that started it),
	// so that a command's processes can be shown grouped; 0 (absent) for
	// a command itself and for what a foreground command left running.
	ParentPID int `json:"parent_pid,omitempty"`
	// Command is the command line the process was started with.
	Command string        `json:"command"`
	Status  ProcessStatus `json:"status"`
	// ExitCode is the process's exit status (128+n when signal n ended
	// it); nil while it runs, and when it was lost.
	ExitCode *int `json:"exit_code,omitempty"`
	// Signal names the signal that ended it ("TERM", "KILL", ...), if one did.
	Signal     string    `json:"signal,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Foreground is true for the command of an exec that has not
	// answered yet; false for background processes.
	Foreground bool `json:"foreground,omitempty"`
	// Host is the Cloud Run execution the process runs, or ran, on.
	Host string `json:"host,omitempty"`
}

// ProcessStatus is the state of a ProcessInfo.
type ProcessStatus string

// The states of a process.
const (
	// ProcessRunning: it runs.
	ProcessRunning ProcessStatus = "running"
	// ProcessExited: it ended by itself.
	ProcessExited ProcessStatus = "exited"
	// ProcessKilled: a signal ended it.
	ProcessKilled ProcessStatus = "killed"
	// ProcessLost: its host ended before it did, so its end is unknown.
	ProcessLost ProcessStatus = "lost"
)
