package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of a request, and of what a completion carries inline.
const (
	// MaxRequestBytes bounds the JSON of one request.
	MaxRequestBytes = 256 << 10
	// MaxCommandBytes bounds exec's command (bash takes it as one argument).
	MaxCommandBytes = 100 << 10
	// MaxEnvBytes bounds the names and values of a request's env together.
	MaxEnvBytes = 64 << 10
	// MaxPathBytes bounds a path.
	MaxPathBytes = 4096
	// InlineOutputBytes is how much of stdout and of stderr a completion
	// carries; the whole output is in the object the completion names.
	InlineOutputBytes = 64 << 10
	// DefaultTimeout applies to an exec without timeout_seconds.
	DefaultTimeout = 10 * time.Minute
	// MaxTimeout is the longest timeout_seconds accepted.
	MaxTimeout = 24 * time.Hour
)

var (
	sessionIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	envNamePattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ValidSessionID reports whether id can name a session: 1 to 63 lowercase
// letters, digits, '-' and '_', starting with a letter or digit, so that it is
// safe as a Cloud Storage path segment, a Firestore document id and a Cloud
// Run label value.
func ValidSessionID(id string) bool { return sessionIDPattern.MatchString(id) }

// ValidRequestID reports whether id can be a request id: 1 to 128 letters,
// digits, '.', '_', ':' and '-', starting with a letter or digit (a UUID is).
func ValidRequestID(id string) bool { return requestIDPattern.MatchString(id) }

// RequestError says why a message is not a request sandrun can run.
type RequestError struct {
	// Reason is a short stable word for logs and the dead-letter attribute.
	Reason string
	// Code is the completion's error code for the caller.
	Code    ErrorCode
	Message string
	// RequestID, SessionID and Op are what could be read of the request.
	// RequestID is empty unless it is valid.
	RequestID string
	SessionID string
	Op        Op
}

func (e *RequestError) Error() string { return e.Message }

// Answerable reports whether the caller can be told about the error in a
// completion (the request id could be read); otherwise the message belongs
// on the dead-letter topic.
func (e *RequestError) Answerable() bool { return e.RequestID != "" }

// ParseRequest decodes and validates a request from message data. It returns
// a *RequestError for anything that is not a valid request.
func ParseRequest(data []byte) (Request, error) {
	var req Request
	if len(data) > MaxRequestBytes {
		e := &RequestError{Reason: "too_large", Code: CodeInvalidArgument,
			Message: fmt.Sprintf("request is %d bytes; the limit is %d", len(data), MaxRequestBytes)}
		e.fillIDs(data)
		return req, e
	}
	if !utf8.Valid(data) {
		e := &RequestError{Reason: "invalid_utf8", Code: CodeInvalidArgument, Message: "request is not valid UTF-8"}
		e.fillIDs(data)
		return req, e
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		e := &RequestError{Reason: "not_a_request", Code: CodeInvalidArgument, Message: "request is not a JSON object of the request schema: " + jsonProblem(err)}
		e.fillIDs(data)
		return Request{}, e
	}
	if dec.More() {
		e := &RequestError{Reason: "not_a_request", Code: CodeInvalidArgument, Message: "request has data after its JSON object"}
		e.fillIDs(data)
		return Request{}, e
	}
	if err := req.Validate(); err != nil {
		return req, err
	}
	return req, nil
}

// jsonProblem words a decoding error without echoing the payload.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("%s at byte %d", syntax.Error(), syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	default:
		return err.Error()
	}
}

// fillIDs reads what it can of the ids of a message that failed to decode,
// so that the caller may still be answered.
func (e *RequestError) fillIDs(data []byte) {
	var ids struct {
		RequestID any `json:"request_id"`
		SessionID any `json:"session_id"`
		Op        any `json:"op"`
	}
	if json.Unmarshal(data, &ids) != nil {
		return
	}
	if s, ok := ids.RequestID.(string); ok && ValidRequestID(s) {
		e.RequestID = s
	}
	if s, ok := ids.SessionID.(string); ok {
		e.SessionID = clip(s, 256)
	}
	if s, ok := ids.Op.(string); ok {
		e.Op = Op(clip(s, 64))
	}
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// futureOps are operations of the protocol this version does not serve yet.
var futurePrefixes = []string{"file.", "process.", "browser."}

const opShellView Op = "shell.view"

// Validate checks the request against the contract's rules and returns a
// *RequestError naming the first rule it breaks.
func (r *Request) Validate() error {
	fail := func(reason string, code ErrorCode, format string, args ...any) error {
		e := &RequestError{Reason: reason, Code: code, Message: fmt.Sprintf(format, args...), SessionID: clip(r.SessionID, 256), Op: Op(clip(string(r.Op), 64))}
		if ValidRequestID(r.RequestID) {
			e.RequestID = r.RequestID
		}
		return e
	}
	switch {
	case r.RequestID == "":
		return fail("invalid_request_id", CodeInvalidArgument, "request_id is missing")
	case !ValidRequestID(r.RequestID):
		return fail("invalid_request_id", CodeInvalidArgument, "request_id %q is not 1-128 letters, digits, '.', '_', ':' or '-' starting with a letter or digit", clip(r.RequestID, 64))
	case r.SessionID == "":
		return fail("invalid_session_id", CodeInvalidArgument, "session_id is missing")
	case !ValidSessionID(r.SessionID):
		return fail("invalid_session_id", CodeInvalidArgument, "session_id %q is not 1-63 lowercase letters, digits, '-' or '_' starting with a letter or digit", clip(r.SessionID, 64))
	case r.Op == "":
		return fail("invalid_op", CodeInvalidArgument, "op is missing")
	}

	switch r.Op {
	case OpExec:
		switch {
		case r.Command == "":
			return fail("invalid_field", CodeInvalidArgument, "exec needs a command")
		case len(r.Command) > MaxCommandBytes:
			return fail("too_large", CodeInvalidArgument, "command is %d bytes; the limit is %d (send large scripts as files)", len(r.Command), MaxCommandBytes)
		case strings.IndexByte(r.Command, 0) >= 0:
			return fail("invalid_field", CodeInvalidArgument, "command contains a NUL byte")
		case r.TimeoutSeconds < 0 || r.TimeoutSeconds > MaxTimeout.Seconds():
			return fail("invalid_field", CodeInvalidArgument, "timeout_seconds %v is outside 0..%v", r.TimeoutSeconds, MaxTimeout.Seconds())
		}
		if err := checkPath("cwd", r.Cwd); err != nil {
			return fail("invalid_field", CodeInvalidArgument, "%v", err)
		}
		size := 0
		for k, v := range r.Env {
			size += len(k) + len(v)
			switch {
			case !envNamePattern.MatchString(k):
				return fail("invalid_field", CodeInvalidArgument, "env name %q is not a shell variable name", clip(k, 64))
			case strings.IndexByte(v, 0) >= 0:
				return fail("invalid_field", CodeInvalidArgument, "env %s contains a NUL byte", k)
			}
		}
		if size > MaxEnvBytes {
			return fail("too_large", CodeInvalidArgument, "env is %d bytes; the limit is %d", size, MaxEnvBytes)
		}
		return nil
	case OpSessionCreate, OpSessionGet, OpSessionDestroy:
		if r.Command != "" || r.TimeoutSeconds != 0 || r.Env != nil || r.Cwd != "" {
			return fail("invalid_field", CodeInvalidArgument, "%s takes no command, timeout_seconds, env or cwd", r.Op)
		}
		return nil
	case opShellView:
		return fail("not_supported", CodeNotSupported, "op %s is not served by this version of sandrun", r.Op)
	}
	for _, p := range futurePrefixes {
		if strings.HasPrefix(string(r.Op), p) {
			if p == "browser." {
				return fail("not_supported", CodeNotSupported, "op %s is not supported: sandboxes on Cloud Run Jobs have no display or browser", clip(string(r.Op), 64))
			}
			return fail("not_supported", CodeNotSupported, "op %s is not served by this version of sandrun", clip(string(r.Op), 64))
		}
	}
	return fail("unknown_op", CodeInvalidArgument, "unknown op %q (want exec, session.create, session.get or session.destroy)", clip(string(r.Op), 64))
}

// checkPath rejects paths no file system can hold.
func checkPath(field, p string) error {
	switch {
	case len(p) > MaxPathBytes:
		return fmt.Errorf("%s is %d bytes; the limit is %d", field, len(p), MaxPathBytes)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%s contains a NUL byte", field)
	}
	return nil
}

// Timeout is the exec's timeout: TimeoutSeconds, or DefaultTimeout.
func (r *Request) Timeout() time.Duration {
	if r.TimeoutSeconds <= 0 {
		return DefaultTimeout
	}
	return time.Duration(r.TimeoutSeconds * float64(time.Second))
}
