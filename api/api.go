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

// The operations sandrun serves.
const (
	OpExec           Op = "exec"
	OpSessionCreate  Op = "session.create"
	OpSessionGet     Op = "session.get"
	OpSessionDestroy Op = "session.destroy"
)

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
	// session.destroy), or the exec's cwd does not.
	CodeNotFound ErrorCode = "NOT_FOUND"
	// CodeTimeout: the command ran past its timeout and was killed.
	CodeTimeout ErrorCode = "TIMEOUT"
	// CodeHostLost: the host running the request died; it was not re-run.
	CodeHostLost ErrorCode = "HOST_LOST"
	// CodeNotSupported: the operation exists but this sandrun does not serve it.
	CodeNotSupported ErrorCode = "NOT_SUPPORTED"
	// CodeResourceExhausted: a limit was reached (size, count, time).
	CodeResourceExhausted ErrorCode = "RESOURCE_EXHAUSTED"
	// CodeLaunchFailed: no host could be started for the session.
	CodeLaunchFailed ErrorCode = "LAUNCH_FAILED"
	// CodeAborted: the session was destroyed (by a session.destroy, or for
	// being idle too long) before the request finished.
	CodeAborted ErrorCode = "ABORTED"
	// CodeInternal: sandrun failed; the message says where.
	CodeInternal ErrorCode = "INTERNAL"
)

// Request is one operation for one session, published as the JSON message
// data. Fields that an operation does not use must be left out:
// ParseRequest rejects a session operation that carries any exec field.
type Request struct {
	// RequestID is the caller's idempotency key: the same RequestID delivered
	// twice executes once.
	RequestID string `json:"request_id"`
	// SessionID names the session; a request for an unknown session creates it.
	SessionID string `json:"session_id"`
	Op        Op     `json:"op"`

	// Command is the bash source that exec runs.
	Command string `json:"command,omitempty"`
	// TimeoutSeconds bounds an exec (default DefaultTimeout, at most MaxTimeout).
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// Env is added to the environment of this command only. Names are shell
	// variable names that do not begin with ReservedEnvPrefix; values hold
	// no NUL.
	Env map[string]string `json:"env,omitempty"`
	// Cwd is the directory of this command only, relative to the session's
	// working directory when not absolute.
	Cwd string `json:"cwd,omitempty"`
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
	// 124 on timeout); -1 when no command ran to an end.
	ExitCode int `json:"exit_code"`
	// Stdout and Stderr hold the output up to InlineOutputBytes each. When an
	// output is not valid UTF-8 it is base64 and its encoding field says so.
	Stdout         string   `json:"stdout"`
	Stderr         string   `json:"stderr"`
	StdoutEncoding Encoding `json:"stdout_encoding,omitempty"`
	StderrEncoding Encoding `json:"stderr_encoding,omitempty"`
	// StdoutBytes and StderrBytes are the whole output's sizes.
	StdoutBytes int64 `json:"stdout_bytes"`
	StderrBytes int64 `json:"stderr_bytes"`
	// StdoutObject and StderrObject name the Cloud Storage object
	// (gs://bucket/name) holding the whole output when it was cut here.
	StdoutObject string `json:"stdout_object,omitempty"`
	StderrObject string `json:"stderr_object,omitempty"`
	// Cwd is the session's working directory after the request.
	Cwd string `json:"cwd,omitempty"`

	// Session describes the session, for session.* operations.
	Session *SessionInfo `json:"session,omitempty"`

	// ColdStart is true when a host was launched for this request.
	ColdStart bool `json:"cold_start"`
	// ExecutionID is the Cloud Run execution that served the request.
	ExecutionID string `json:"execution_id,omitempty"`
	// DurationSeconds is how long the operation itself ran.
	DurationSeconds float64 `json:"duration_seconds"`
	Timing          Timing  `json:"timing"`
}

// Encoding of an output field.
type Encoding string

// EncodingBase64 marks output that was not valid UTF-8.
const EncodingBase64 Encoding = "base64"

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
	// LaunchSeconds: launch requested to host serving, on a cold start.
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
