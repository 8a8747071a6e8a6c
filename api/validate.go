package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of a request, and of what a completion carries inline. Sizes are
// in bytes: of the message data for MaxRequestBytes, of the decoded UTF-8
// strings (or of the decoded content) for the others.
const (
	// MaxRequestBytes bounds the JSON of one request.
	MaxRequestBytes = 256 << 10
	// MaxCommandBytes bounds exec's command (bash takes it as one argument).
	MaxCommandBytes = 100 << 10
	// MaxEnvBytes bounds the names and values of a request's env together.
	MaxEnvBytes = 64 << 10
	// MaxPathBytes bounds a path (cwd, path).
	MaxPathBytes = 4096
	// MaxPatternBytes bounds a glob or a regular expression (pattern,
	// include).
	MaxPatternBytes = 4096
	// InlineOutputBytes is how much of stdout and of stderr a completion
	// carries; the whole output is in the object the completion names.
	InlineOutputBytes = 64 << 10
	// MaxOutputBytes is how much of each output stream of an exec is
	// kept: the object a completion names holds at most this much, and
	// stdout_cut or stderr_cut says when the command printed more (the
	// rest is counted in stdout_bytes or stderr_bytes, not kept).
	MaxOutputBytes = 256 << 20
	// MaxCompletionBytes bounds the JSON of a completion as it is recorded
	// and published: what Firestore's 1 MiB document holds beside the
	// request (at most MaxRequestBytes), with room to spare. A completion
	// whose JSON is larger is stored whole in the object result_object
	// names, and the message carries it without its large fields (see
	// Completion.Summary). The size is of the JSON, escapes included, not
	// of the raw bytes: 192 KiB of NUL bytes are 1.1 MB of JSON.
	MaxCompletionBytes = 512 << 10
	// MaxInlineFileBytes bounds file.write's content, once decoded, and
	// what one file.read returns. Larger files travel through Cloud
	// Storage, by file.upload and file.download.
	MaxInlineFileBytes = 192 << 10
	// MaxProcessWriteBytes bounds process.write's content, once decoded.
	MaxProcessWriteBytes = 64 << 10
	// DefaultMaxResults applies to file.list, file.find and file.search
	// without max_results; MaxResults is the largest max_results accepted.
	DefaultMaxResults = 1000
	MaxResults        = 10000
	// MaxDepth is the largest max_depth accepted: no path of MaxPathBytes
	// has more names.
	MaxDepth = MaxPathBytes
	// MaxMatchLineBytes is how much of a line a Match carries.
	MaxMatchLineBytes = 1000
	// DefaultTimeout applies to an exec without timeout_seconds.
	DefaultTimeout = 10 * time.Minute
	// DefaultWaitTimeout applies to a process.wait without timeout_seconds.
	DefaultWaitTimeout = 30 * time.Second
	// MaxTimeout is the longest timeout_seconds, and grace_seconds,
	// accepted.
	MaxTimeout = 24 * time.Hour
	// DefaultKillGrace applies to a process.kill without grace_seconds.
	DefaultKillGrace = 5 * time.Second
)

// Bounds of fields that no constant above states.
const (
	// maxPID is the largest process id (pid_t is 32 bits).
	maxPID = 1<<31 - 1
	// maxExpectedCount is the largest expected_count.
	maxExpectedCount = 1<<31 - 1
	// maxBucketBytes and maxObjectNameBytes are Cloud Storage's limits.
	maxBucketBytes     = 222
	maxObjectNameBytes = 1024
)

// ReservedEnvPrefix begins the names of variables that sandrun keeps for
// itself in a session's shell; a request's env may not set them.
const ReservedEnvPrefix = "__sandrun_"

// Patterns of fields. The request schema states each of them as it is here.
var (
	sessionIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	envNamePattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// modePattern: octal permission bits from 0 to 07777.
	modePattern = regexp.MustCompile(`^0?[0-7]{1,4}$`)
	// base64Pattern: the standard alphabet, padded, no line breaks.
	base64Pattern = regexp.MustCompile(`^[A-Za-z0-9+/]*={0,2}$`)
	// objectPattern: gs://BUCKET/sessions/SESSION/transfers/NAME, where
	// BUCKET is a Cloud Storage bucket name (dot-separated names of 1 to
	// 63 letters, digits, '-' and '_', starting and ending with a letter
	// or digit; 3 to 63 characters without dots) and NAME is one or more
	// '/'-separated segments, none empty, "." or "..", without NUL, CR or
	// LF. Submatches: the bucket and the session.
	objectPattern = regexp.MustCompile(`^gs://(` + bucketName + `)/sessions/([a-z0-9][a-z0-9_-]{0,62})/transfers/` + objectSegment + `(?:/` + objectSegment + `)*$`)
)

const (
	bucketPart    = `[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?`
	bucketName    = `(?:[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]|` + bucketPart + `(?:\.` + bucketPart + `)+)`
	objectSegment = `(?:[^/.\x00\r\n][^/\x00\r\n]*|\.[^/.\x00\r\n][^/\x00\r\n]*|\.\.[^/\x00\r\n]+)`
)

// ValidSessionID reports whether id can name a session: 1 to 63 lowercase
// letters, digits, '-' and '_', starting with a letter or digit, so that it is
// safe as a Cloud Storage path segment, a Firestore document id and a Cloud
// Run label value.
func ValidSessionID(id string) bool { return sessionIDPattern.MatchString(id) }

// ValidRequestID reports whether id can be a request id: 1 to 128 letters,
// digits, '.', '_', ':' and '-', starting with a letter or digit (a UUID is).
func ValidRequestID(id string) bool { return requestIDPattern.MatchString(id) }

// Reasons of a RequestError: stable words for logs and for the reason
// attribute of a dead letter.
const (
	// ReasonTooLarge: the message, or a field (command, env, cwd, path,
	// pattern, content, object), is over its limit.
	ReasonTooLarge = "too_large"
	// ReasonInvalidUTF8: the message data is not valid UTF-8.
	ReasonInvalidUTF8 = "invalid_utf8"
	// ReasonNotARequest: the data is not one JSON object of the request
	// schema (bad JSON, not an object, trailing data, an unknown or repeated
	// field, a field of the wrong type).
	ReasonNotARequest = "not_a_request"
	// ReasonInvalidRequestID: request_id is missing or malformed.
	ReasonInvalidRequestID = "invalid_request_id"
	// ReasonInvalidSessionID: session_id is missing or malformed.
	ReasonInvalidSessionID = "invalid_session_id"
	// ReasonInvalidOp: op is missing.
	ReasonInvalidOp = "invalid_op"
	// ReasonUnknownOp: op is not an operation of the protocol.
	ReasonUnknownOp = "unknown_op"
	// ReasonNotSupported: the request asks for what sandrun cannot do: a
	// browser.* op, an exec with tty.
	ReasonNotSupported = "not_supported"
	// ReasonInvalidField: a field breaks the rules of its op, or the op
	// does not take it.
	ReasonInvalidField = "invalid_field"
	// ReasonAttributeMismatch: the message's attributes or ordering key
	// contradict its data (the dispatcher checks this, not ParseRequest).
	ReasonAttributeMismatch = "attribute_mismatch"
)

// RequestError says why a message is not a request sandrun can run. Its
// Message quotes at most a short, clipped prefix of any input.
type RequestError struct {
	// Reason is a short stable word for logs and the dead-letter attribute
	// (one of the Reason constants).
	Reason string
	// Code is the completion's error code for the caller:
	// INVALID_ARGUMENT, or NOT_SUPPORTED (browser.*, an exec with tty), or
	// RESOURCE_EXHAUSTED (content over its limit).
	Code    ErrorCode
	Message string
	// RequestID, SessionID and Op are what could be read of the request.
	// RequestID is empty unless it is valid; SessionID and Op are cut to
	// 256 and 64 bytes.
	RequestID string
	SessionID string
	Op        Op
}

func (e *RequestError) Error() string { return e.Message }

// Answerable reports whether the caller can be told about the error in a
// completion (the request id could be read); otherwise the message belongs
// on the dead-letter topic.
func (e *RequestError) Answerable() bool { return e.RequestID != "" }

// How much of a session id and an op a RequestError keeps, and how much of
// any other input its message quotes.
const (
	maxErrSessionID = 256
	maxErrOp        = 64
	maxQuoted       = 64
)

// ttyMessage answers an exec with tty.
const ttyMessage = "Cloud Run Jobs executions have no terminal; run the command non-interactively or in the background and use process.write"

// fail is a RequestError about r: it carries what r says of itself.
func (r *Request) fail(reason string, code ErrorCode, format string, args ...any) *RequestError {
	e := &RequestError{Reason: reason, Code: code, Message: fmt.Sprintf(format, args...),
		SessionID: clip(r.SessionID, maxErrSessionID), Op: Op(clip(string(r.Op), maxErrOp))}
	if ValidRequestID(r.RequestID) {
		e.RequestID = r.RequestID
	}
	return e
}

// invalid is a RequestError of reason invalid_field and code
// INVALID_ARGUMENT.
func (r *Request) invalid(format string, args ...any) *RequestError {
	return r.fail(ReasonInvalidField, CodeInvalidArgument, format, args...)
}

// Validate checks the request against the contract's rules and returns a
// *RequestError naming the first rule it breaks. The rules are checked in a
// fixed order, so one request always gets the same error.
//
// A Go value cannot tell a field left out from one set to its zero value, so
// Validate takes a field with its zero value for a field left out: it lets a
// session.get carry an empty command, and a process.kill a zero pid.
// ParseRequest, which sees the JSON, rejects fields that are present when
// their op does not take them or their value is not allowed, zero or not.
func (r *Request) Validate() error {
	return r.validate(r.nonZero)
}

// validate checks the rules; has reports whether a field is present.
func (r *Request) validate(has func(field string) bool) error {
	switch {
	case r.RequestID == "":
		return r.fail(ReasonInvalidRequestID, CodeInvalidArgument, "request_id is missing")
	case !ValidRequestID(r.RequestID):
		return r.fail(ReasonInvalidRequestID, CodeInvalidArgument, "request_id %q is not 1-128 letters, digits, '.', '_', ':' or '-' starting with a letter or digit", clip(r.RequestID, maxQuoted))
	case r.SessionID == "":
		return r.fail(ReasonInvalidSessionID, CodeInvalidArgument, "session_id is missing")
	case !ValidSessionID(r.SessionID):
		return r.fail(ReasonInvalidSessionID, CodeInvalidArgument, "session_id %q is not 1-63 lowercase letters, digits, '-' or '_' starting with a letter or digit", clip(r.SessionID, maxQuoted))
	case r.Op == "":
		return r.fail(ReasonInvalidOp, CodeInvalidArgument, "op is missing")
	}
	if _, served := opFields[r.Op]; !served {
		op := clip(string(r.Op), maxQuoted)
		if strings.HasPrefix(string(r.Op), "browser.") {
			return r.fail(ReasonNotSupported, CodeNotSupported, "op %q is not supported: sandboxes on Cloud Run Jobs have no display or browser", op)
		}
		return r.fail(ReasonUnknownOp, CodeInvalidArgument, "unknown op %q (want %s)", op, servedOpsList())
	}
	for _, f := range requestFields {
		// has first: a map lookup, false for most fields; takesField
		// scans lists.
		if has(f.name) && !takesField(r.Op, f.name) {
			return r.invalid("%s does not take %s; %s", r.Op, f.name, fieldsSentence(r.Op))
		}
	}

	switch r.Op {
	case OpExec:
		return r.validateExec(has)
	case OpFileRead:
		return firstError(r.checkPath(true), r.checkRange("offset", r.Offset, 0, 1<<63-1),
			r.checkRange("length", r.Length, 0, MaxInlineFileBytes), r.checkEncoding(has))
	case OpFileWrite:
		return firstError(r.checkPath(true), r.checkEncoding(has), r.checkMode(has),
			r.checkContent(MaxInlineFileBytes, "write larger files with file.upload"))
	case OpFileDelete, OpFileExists, OpFileDownload:
		return r.checkPath(true)
	case OpFileList:
		return firstError(r.checkPath(false), r.checkDepth(has), r.checkRange("max_results", int64(r.MaxResults), 0, MaxResults))
	case OpFileFind:
		return firstError(r.checkPath(false), r.checkGlob("pattern", r.Pattern, true, has),
			r.checkDepth(has), r.checkRange("max_results", int64(r.MaxResults), 0, MaxResults))
	case OpFileSearch:
		return firstError(r.checkPath(false), r.checkRegexp(true, has), r.checkGlob("include", r.Include, false, has),
			r.checkDepth(has), r.checkRange("max_results", int64(r.MaxResults), 0, MaxResults))
	case OpFileReplace:
		return firstError(r.checkPath(true), r.validateReplace(has))
	case OpFileUpload:
		return firstError(r.checkPath(true), r.checkObject())
	case OpProcessKill:
		return r.validateKill(has)
	case OpProcessLogs:
		return firstError(r.checkPID(true, has), r.checkRange("offset", r.Offset, 0, 1<<63-1),
			r.checkRange("tail_bytes", r.TailBytes, 0, 1<<63-1), r.exclusive(has, "offset", "tail_bytes"))
	case OpProcessWait:
		return firstError(r.checkPID(true, has), r.checkSeconds("timeout_seconds", r.TimeoutSeconds))
	case OpProcessWrite:
		if err := firstError(r.checkPID(true, has), r.checkEncoding(has)); err != nil {
			return err
		}
		if r.EncodedContent == "" && !r.CloseStdin {
			return r.invalid("process.write needs content, or close_stdin true, or both")
		}
		return r.checkContent(MaxProcessWriteBytes, "send it in several process.write requests")
	}
	return nil // the ops that take no field of their own
}

// firstError returns the first non-nil error. Its arguments are all
// computed, so keep each check cheap.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *Request) validateExec(has func(string) bool) error {
	switch {
	case r.TTY:
		return r.fail(ReasonNotSupported, CodeNotSupported, ttyMessage)
	case r.Command == "":
		return r.invalid("exec needs a command")
	case len(r.Command) > MaxCommandBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "command is %d bytes; the limit is %d (send large scripts as files)", len(r.Command), MaxCommandBytes)
	case strings.IndexByte(r.Command, 0) >= 0:
		return r.invalid("command contains a NUL byte")
	}
	if err := r.checkSeconds("timeout_seconds", r.TimeoutSeconds); err != nil {
		return err
	}
	switch {
	case len(r.Cwd) > MaxPathBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "cwd is %d bytes; the limit is %d", len(r.Cwd), MaxPathBytes)
	case strings.IndexByte(r.Cwd, 0) >= 0:
		return r.invalid("cwd contains a NUL byte")
	case r.KeepStdin && !r.Background:
		return r.invalid("keep_stdin is for background processes: it needs background true")
	case r.Background && has("timeout_seconds"):
		return r.invalid("a background exec takes no timeout_seconds: the process runs until it ends or process.kill ends it")
	}
	names := make([]string, 0, len(r.Env))
	size := 0
	for k, v := range r.Env {
		names = append(names, k)
		size += len(k) + len(v)
	}
	if size > MaxEnvBytes {
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "env is %d bytes; the limit is %d", size, MaxEnvBytes)
	}
	slices.Sort(names)
	for _, k := range names {
		switch {
		case !envNamePattern.MatchString(k):
			return r.invalid("env name %q is not a shell variable name (letters, digits and '_', not starting with a digit)", clip(k, maxQuoted))
		case strings.HasPrefix(k, ReservedEnvPrefix):
			return r.invalid("env name %q uses the prefix %s, which sandrun reserves", clip(k, maxQuoted), ReservedEnvPrefix)
		case strings.IndexByte(r.Env[k], 0) >= 0:
			return r.invalid("env %s contains a NUL byte", clip(k, maxQuoted))
		}
	}
	return nil
}

func (r *Request) validateReplace(has func(string) bool) error {
	switch {
	case r.OldString == "":
		return r.invalid("file.replace needs a non-empty old_string")
	case has("expected_count") && (r.ExpectedCount < 1 || r.ExpectedCount > maxExpectedCount):
		return r.invalid("expected_count %d is outside 1..%d", r.ExpectedCount, maxExpectedCount)
	}
	return r.exclusive(has, "expected_count", "replace_all")
}

func (r *Request) validateKill(has func(string) bool) error {
	var given []string
	for _, f := range []string{"pid", "pattern", "all"} {
		if has(f) {
			given = append(given, f)
		}
	}
	switch {
	case len(given) == 0:
		return r.invalid("process.kill needs one of pid, pattern and all")
	case len(given) > 1:
		return r.invalid("process.kill takes only one of pid, pattern and all (%s are given)", andList(given))
	}
	if err := firstError(r.checkPID(false, has), r.checkRegexp(false, has)); err != nil {
		return err
	}
	switch {
	case has("all") && !r.All:
		return r.invalid("all must be true; to kill by pid or pattern, leave it out")
	case has("signal") && killSignalNumber(r.Signal) == 0:
		return r.invalid("signal %q is not one of TERM, INT, HUP, KILL, QUIT, USR1 and USR2 (with or without SIG)", clip(r.Signal, maxQuoted))
	}
	return r.checkSeconds("grace_seconds", r.GraceSeconds)
}

// checkPath checks path: required when the op needs one, else it may be
// empty (the working directory).
func (r *Request) checkPath(required bool) error {
	switch {
	case r.Path == "" && required:
		return r.invalid("%s needs a path", r.Op)
	case len(r.Path) > MaxPathBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "path is %d bytes; the limit is %d", len(r.Path), MaxPathBytes)
	case strings.IndexByte(r.Path, 0) >= 0:
		return r.invalid("path contains a NUL byte")
	}
	return nil
}

// checkRange checks that an integer field lies in lo..hi.
func (r *Request) checkRange(field string, v, lo, hi int64) error {
	if v < lo || v > hi {
		return r.invalid("%s %d is outside %d..%d", field, v, lo, hi)
	}
	return nil
}

// checkSeconds checks a number of seconds: 0 (the default) to MaxTimeout.
func (r *Request) checkSeconds(field string, v float64) error {
	if !(v >= 0 && v <= MaxTimeout.Seconds()) { // NaN too
		return r.invalid("%s %v is outside 0..%v", field, v, MaxTimeout.Seconds())
	}
	return nil
}

// checkDepth checks max_depth, which file.list takes only with recursive.
func (r *Request) checkDepth(has func(string) bool) error {
	if err := r.checkRange("max_depth", int64(r.MaxDepth), 0, MaxDepth); err != nil {
		return err
	}
	if r.Op == OpFileList && has("max_depth") && !r.Recursive {
		return r.invalid("max_depth limits a recursive listing: it needs recursive true")
	}
	return nil
}

// checkPID checks pid, when present or required.
func (r *Request) checkPID(required bool, has func(string) bool) error {
	switch {
	case !has("pid") && required:
		return r.invalid("%s needs a pid", r.Op)
	case has("pid") && (r.PID < 1 || r.PID > maxPID):
		return r.invalid("pid %d is not a process id (1 to %d)", r.PID, maxPID)
	}
	return nil
}

// exclusive rejects a request with both fields.
func (r *Request) exclusive(has func(string) bool, a, b string) error {
	if has(a) && has(b) {
		return r.invalid("%s takes %s or %s, not both", r.Op, a, b)
	}
	return nil
}

// checkEncoding checks encoding, when present.
func (r *Request) checkEncoding(has func(string) bool) error {
	if has("encoding") && r.Encoding != EncodingUTF8 && r.Encoding != EncodingBase64 {
		return r.invalid("encoding %q is not utf-8 or base64", clip(string(r.Encoding), maxQuoted))
	}
	return nil
}

// checkMode checks mode, when present.
func (r *Request) checkMode(has func(string) bool) error {
	if has("mode") && !modePattern.MatchString(r.Mode) {
		return r.invalid("mode %q is not octal permission bits from 0 to 07777, such as \"0644\" or \"755\"", clip(r.Mode, maxQuoted))
	}
	return nil
}

// checkContent checks that content decodes and, decoded, is at most limit
// bytes (else RESOURCE_EXHAUSTED, with hint).
func (r *Request) checkContent(limit int, hint string) error {
	if r.Encoding == EncodingBase64 && !base64Pattern.MatchString(r.EncodedContent) {
		return r.invalid("content is not base64 (standard alphabet, padded, no line breaks)")
	}
	size := len(r.EncodedContent)
	if r.Encoding == EncodingBase64 {
		n, err := base64.StdEncoding.Decode(make([]byte, base64.StdEncoding.DecodedLen(size)), []byte(r.EncodedContent))
		if err != nil {
			return r.invalid("content is not base64 (standard alphabet, padded, no line breaks)")
		}
		size = n
	}
	if size > limit {
		return r.fail(ReasonTooLarge, CodeResourceExhausted, "content is %d bytes; the limit of %s is %d: %s", size, r.Op, limit, hint)
	}
	return nil
}

// checkGlob checks a glob field: required, or checked when present.
func (r *Request) checkGlob(field, glob string, required bool, has func(string) bool) error {
	switch {
	case !has(field) && !required:
		return nil
	case glob == "" && required:
		return r.invalid("%s needs a non-empty %s", r.Op, field)
	case glob == "":
		return r.invalid("%s is empty: give a glob or leave it out", field)
	case len(glob) > MaxPatternBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "%s is %d bytes; the limit is %d", field, len(glob), MaxPatternBytes)
	}
	if err := ValidGlob(glob); err != nil {
		if errors.Is(err, errGlobShape) {
			return r.invalid("%s %q is not a glob: %v", field, clip(glob, maxQuoted), err)
		}
		return r.invalid("%s %q is not a well-formed glob: %v", field, clip(glob, maxQuoted), err)
	}
	return nil
}

// checkRegexp checks pattern as an RE2 regular expression: required, or
// checked when present.
func (r *Request) checkRegexp(required bool, has func(string) bool) error {
	switch {
	case !has("pattern") && !required:
		return nil
	case r.Pattern == "":
		return r.invalid("%s needs a non-empty pattern", r.Op)
	case len(r.Pattern) > MaxPatternBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "pattern is %d bytes; the limit is %d", len(r.Pattern), MaxPatternBytes)
	}
	if _, err := regexp.Compile(r.Pattern); err != nil {
		why := "it does not compile"
		var serr *syntax.Error
		if errors.As(err, &serr) {
			why = fmt.Sprintf("%s: %q", serr.Code, clip(serr.Expr, maxQuoted))
		}
		return r.invalid("pattern is not an RE2 regular expression (%s)", why)
	}
	return nil
}

// checkObject checks file.upload's object.
func (r *Request) checkObject() error {
	if r.Object == "" {
		return r.invalid("file.upload needs an object: gs://BUCKET/sessions/%s/transfers/NAME, staged by the client", r.SessionID)
	}
	m := objectPattern.FindStringSubmatch(r.Object)
	if m == nil {
		return r.invalid("object %q is not gs://BUCKET/sessions/%s/transfers/NAME (NAME: '/'-separated segments, none empty, \".\" or \"..\", without NUL, CR or LF)", clip(r.Object, maxQuoted), r.SessionID)
	}
	bucket, session := m[1], m[2]
	name := r.Object[len("gs://")+len(bucket)+1:]
	switch {
	case session != r.SessionID:
		return r.invalid("object is in the transfers of session %q; it must be in this session's: gs://BUCKET/sessions/%s/transfers/NAME", session, r.SessionID)
	case len(bucket) > maxBucketBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "object's bucket name is %d bytes; the limit is %d", len(bucket), maxBucketBytes)
	case len(name) > maxObjectNameBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "object's name is %d bytes; the limit is %d", len(name), maxObjectNameBytes)
	}
	return nil
}

// Timeout is the exec's timeout, or how long process.wait waits:
// TimeoutSeconds, or when it is zero, DefaultTimeout (exec) or
// DefaultWaitTimeout (process.wait). A positive TimeoutSeconds too small
// for a time.Duration is one nanosecond, never none.
func (r *Request) Timeout() time.Duration {
	if r.TimeoutSeconds <= 0 {
		if r.Op == OpProcessWait {
			return DefaultWaitTimeout
		}
		return DefaultTimeout
	}
	return max(time.Duration(r.TimeoutSeconds*float64(time.Second)), time.Nanosecond)
}

// KillGrace is how long process.kill waits after its signal before it
// sends SIGKILL: GraceSeconds, or DefaultKillGrace when it is zero.
func (r *Request) KillGrace() time.Duration {
	if r.GraceSeconds <= 0 {
		return DefaultKillGrace
	}
	return max(time.Duration(r.GraceSeconds*float64(time.Second)), time.Nanosecond)
}

// ResultLimit is how many entries or matches file.list, file.find and
// file.search return at most: MaxResults, or DefaultMaxResults when it is
// zero.
func (r *Request) ResultLimit() int {
	if r.MaxResults <= 0 {
		return DefaultMaxResults
	}
	return r.MaxResults
}

// Occurrences is how many occurrences of OldString file.replace must find:
// ExpectedCount, or 1 when it is zero; 0 with ReplaceAll, which takes any
// number from 1 up.
func (r *Request) Occurrences() int {
	switch {
	case r.ReplaceAll:
		return 0
	case r.ExpectedCount <= 0:
		return 1
	}
	return r.ExpectedCount
}

// ReadLength is how many bytes file.read returns at most: Length, or
// MaxInlineFileBytes when it is zero.
func (r *Request) ReadLength() int64 {
	if r.Length <= 0 || r.Length > MaxInlineFileBytes {
		return MaxInlineFileBytes
	}
	return r.Length
}

// Content decodes EncodedContent as Encoding says: base64, or the text
// itself (utf-8 or empty).
func (r *Request) Content() ([]byte, error) {
	switch r.Encoding {
	case "", EncodingUTF8:
		return []byte(r.EncodedContent), nil
	case EncodingBase64:
		if !base64Pattern.MatchString(r.EncodedContent) {
			return nil, errors.New("decode content: not base64 (standard alphabet, padded, no line breaks)")
		}
		b, err := base64.StdEncoding.DecodeString(r.EncodedContent)
		if err != nil {
			return nil, fmt.Errorf("decode content: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("content has unknown encoding %q", clip(string(r.Encoding), maxQuoted))
}

// ParseMode reads a mode as file.write takes it: octal permission bits from
// 0 to 07777, with or without a leading 0 ("0644", "755", "4755"). The
// setuid, setgid and sticky bits (04000, 02000, 01000) become
// fs.ModeSetuid, fs.ModeSetgid and fs.ModeSticky, as os.Chmod takes them.
func ParseMode(s string) (fs.FileMode, error) {
	if !modePattern.MatchString(s) {
		return 0, fmt.Errorf("mode %q is not octal permission bits from 0 to 07777", clip(s, maxQuoted))
	}
	n, _ := strconv.ParseUint(s, 8, 32) // the pattern leaves no error
	m := fs.FileMode(n) & fs.ModePerm
	if n&04000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&02000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&01000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// FormatMode writes the permission bits of m as FileInfo.Mode has them:
// four octal digits, with setuid, setgid and sticky as 04000, 02000 and
// 01000 ("0644", "4755").
func FormatMode(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 04000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 02000
	}
	if m&fs.ModeSticky != 0 {
		n |= 01000
	}
	return fmt.Sprintf("%04o", n)
}
