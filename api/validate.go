package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of a request, and of what a completion carries inline. Sizes are
// in bytes: of the message data for MaxRequestBytes, of the decoded UTF-8
// strings for the others.
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

// ReservedEnvPrefix begins the names of variables that sandrun keeps for
// itself in a session's shell; a request's env may not set them.
const ReservedEnvPrefix = "__sandrun_"

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

// Reasons of a RequestError: stable words for logs and for the reason
// attribute of a dead letter.
const (
	// ReasonTooLarge: the message, the command, the env or the cwd is over
	// its limit.
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
	// ReasonNotSupported: op is an operation this sandrun does not serve.
	ReasonNotSupported = "not_supported"
	// ReasonInvalidField: a field breaks the rules of its op.
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
	// Code is the completion's error code for the caller.
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

// ParseRequest decodes and validates a request from message data. It returns
// a *RequestError for anything that is not a valid request.
//
// It is stricter than encoding/json: the data must be exactly one JSON
// object whose field names match the schema's exactly (not ignoring case),
// each at most once, none of them null.
func ParseRequest(data []byte) (Request, error) {
	var req Request
	if len(data) > MaxRequestBytes {
		return req, newDecodeError(data, ReasonTooLarge, fmt.Sprintf("request is %d bytes; the limit is %d", len(data), MaxRequestBytes))
	}
	if !utf8.Valid(data) {
		return req, newDecodeError(data, ReasonInvalidUTF8, "request is not valid UTF-8")
	}
	present, problem := checkShape(data)
	if problem != "" {
		return req, newDecodeError(data, ReasonNotARequest, "request is not a JSON object of the request schema: "+problem)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		// checkShape lets nothing through that fails here; this is a guard.
		return Request{}, newDecodeError(data, ReasonNotARequest, "request is not a JSON object of the request schema: "+jsonProblem(err))
	}
	if err := req.Validate(); err != nil {
		return req, err
	}
	if req.Op == OpSessionCreate || req.Op == OpSessionGet || req.Op == OpSessionDestroy {
		// Validate sees only values; leaving a field out is the rule.
		for _, f := range execFields {
			if present[f] {
				return req, req.fail(ReasonInvalidField, CodeInvalidArgument, "%s takes no command, timeout_seconds, env or cwd (%s is present)", req.Op, f)
			}
		}
	}
	return req, nil
}

// newDecodeError is the error of data that is not a request, with what
// can be read of its ids.
func newDecodeError(data []byte, reason, message string) *RequestError {
	e := &RequestError{Reason: reason, Code: CodeInvalidArgument, Message: message}
	e.fillIDs(data)
	return e
}

// JSON types of the request's fields.
type fieldKind int

const (
	kindString fieldKind = iota
	kindNumber
	kindStringMap
)

var requestFields = map[string]fieldKind{
	"request_id": kindString, "session_id": kindString, "op": kindString,
	"command": kindString, "timeout_seconds": kindNumber, "env": kindStringMap, "cwd": kindString,
}

// execFields are the fields only exec takes.
var execFields = []string{"command", "timeout_seconds", "env", "cwd"}

// checkShape reads data as JSON tokens and checks what encoding/json lets
// pass: one object, no data after it, field names exactly as in the schema
// and each once, values of the field's JSON type (null is none), env an
// object of strings with each name once. It returns the fields present, or
// a problem that quotes at most a clipped prefix of the data.
func checkShape(data []byte) (present map[string]bool, problem string) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, tokenProblem(err)
	}
	if tok != json.Delim('{') {
		return nil, "it is " + describeToken(tok) + ", not an object"
	}
	present = make(map[string]bool, len(requestFields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, tokenProblem(err)
		}
		name := tok.(string) // a key inside an object is always a string
		kind, known := requestFields[name]
		switch {
		case !known:
			return nil, fmt.Sprintf("unknown field %q", clip(name, maxQuoted))
		case present[name]:
			return nil, fmt.Sprintf("field %q appears more than once", name)
		}
		present[name] = true
		if tok, err = dec.Token(); err != nil {
			return nil, tokenProblem(err)
		}
		switch kind {
		case kindString:
			if _, ok := tok.(string); !ok {
				return nil, fmt.Sprintf("field %q must be a string, not %s", name, describeToken(tok))
			}
		case kindNumber:
			n, ok := tok.(json.Number)
			if !ok {
				return nil, fmt.Sprintf("field %q must be a number, not %s", name, describeToken(tok))
			}
			if _, err := strconv.ParseFloat(string(n), 64); err != nil {
				return nil, fmt.Sprintf("field %q: number %s is out of range", name, clip(string(n), maxQuoted))
			}
		case kindStringMap:
			if tok != json.Delim('{') {
				return nil, fmt.Sprintf("field %q must be an object of strings, not %s", name, describeToken(tok))
			}
			if p := checkStringMap(dec, name); p != "" {
				return nil, p
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, tokenProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "it has data after its JSON object"
	}
	return present, ""
}

// checkStringMap reads the members of the object field (its opening brace
// read already) up to and including its closing brace.
func checkStringMap(dec *json.Decoder, field string) string {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return tokenProblem(err)
		}
		key := tok.(string)
		if seen[key] {
			return fmt.Sprintf("%s name %q appears more than once", field, clip(key, maxQuoted))
		}
		seen[key] = true
		if tok, err = dec.Token(); err != nil {
			return tokenProblem(err)
		}
		if _, ok := tok.(string); !ok {
			return fmt.Sprintf("%s value of %q must be a string, not %s", field, clip(key, maxQuoted), describeToken(tok))
		}
	}
	if _, err := dec.Token(); err != nil {
		return tokenProblem(err)
	}
	return ""
}

// describeToken names the JSON type of the value a token begins.
func describeToken(tok json.Token) string {
	switch tok := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case json.Delim:
		if tok == '[' {
			return "an array"
		}
		return "an object"
	}
	return "a JSON value"
}

// tokenProblem words a tokenizer error without echoing the payload.
func tokenProblem(err error) string {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the JSON ends early"
	}
	return jsonProblem(err)
}

// jsonProblem words a decoding error, quoting at most a clipped prefix of
// the payload.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("%s at byte %d", clip(syntax.Error(), 2*maxQuoted), syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", clip(typ.Field, maxQuoted), typ.Type, clip(typ.Value, maxQuoted))
	default:
		return clip(err.Error(), 2*maxQuoted)
	}
}

// fillIDs reads what it can of the ids of a message that failed to decode,
// so that the caller may still be answered. It reads the first JSON value
// of data, which must be an object; only fields named exactly request_id,
// session_id and op count.
func (e *RequestError) fillIDs(data []byte) {
	var fields map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // a number out of float64's range is no reason to give up
	if dec.Decode(&fields) != nil {
		return
	}
	if s, ok := fields["request_id"].(string); ok && ValidRequestID(s) {
		e.RequestID = s
	}
	if s, ok := fields["session_id"].(string); ok {
		e.SessionID = clip(s, maxErrSessionID)
	}
	if s, ok := fields["op"].(string); ok {
		e.Op = Op(clip(s, maxErrOp))
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

// unservedPrefixes begin operations of the protocol that this version does
// not serve: they are answered NOT_SUPPORTED, not INVALID_ARGUMENT.
var unservedPrefixes = []string{"file.", "process.", "browser."}

const opShellView Op = "shell.view"

// fail is a RequestError about r: it carries what r says of itself.
func (r *Request) fail(reason string, code ErrorCode, format string, args ...any) *RequestError {
	e := &RequestError{Reason: reason, Code: code, Message: fmt.Sprintf(format, args...),
		SessionID: clip(r.SessionID, maxErrSessionID), Op: Op(clip(string(r.Op), maxErrOp))}
	if ValidRequestID(r.RequestID) {
		e.RequestID = r.RequestID
	}
	return e
}

// Validate checks the request against the contract's rules and returns a
// *RequestError naming the first rule it breaks. The rules are checked in a
// fixed order, so one request always gets the same error.
//
// A Go value cannot tell a field left out from one set to its zero value, so
// Validate lets session ops carry an empty command, a zero timeout and an
// empty cwd; ParseRequest rejects those fields when they are present at all.
func (r *Request) Validate() error {
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

	switch r.Op {
	case OpExec:
		return r.validateExec()
	case OpSessionCreate, OpSessionGet, OpSessionDestroy:
		if r.Command != "" || r.TimeoutSeconds != 0 || r.Env != nil || r.Cwd != "" {
			return r.fail(ReasonInvalidField, CodeInvalidArgument, "%s takes no command, timeout_seconds, env or cwd", r.Op)
		}
		return nil
	case opShellView:
		return r.fail(ReasonNotSupported, CodeNotSupported, "op %s is not served by this version of sandrun", r.Op)
	}
	op := clip(string(r.Op), maxQuoted)
	for _, p := range unservedPrefixes {
		if strings.HasPrefix(string(r.Op), p) {
			if p == "browser." {
				return r.fail(ReasonNotSupported, CodeNotSupported, "op %q is not supported: sandboxes on Cloud Run Jobs have no display or browser", op)
			}
			return r.fail(ReasonNotSupported, CodeNotSupported, "op %q is not served by this version of sandrun", op)
		}
	}
	return r.fail(ReasonUnknownOp, CodeInvalidArgument, "unknown op %q (want exec, session.create, session.get or session.destroy)", op)
}

func (r *Request) validateExec() error {
	switch {
	case r.Command == "":
		return r.fail(ReasonInvalidField, CodeInvalidArgument, "exec needs a command")
	case len(r.Command) > MaxCommandBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "command is %d bytes; the limit is %d (send large scripts as files)", len(r.Command), MaxCommandBytes)
	case strings.IndexByte(r.Command, 0) >= 0:
		return r.fail(ReasonInvalidField, CodeInvalidArgument, "command contains a NUL byte")
	case r.TimeoutSeconds < 0 || r.TimeoutSeconds > MaxTimeout.Seconds():
		return r.fail(ReasonInvalidField, CodeInvalidArgument, "timeout_seconds %v is outside 0..%v", r.TimeoutSeconds, MaxTimeout.Seconds())
	case len(r.Cwd) > MaxPathBytes:
		return r.fail(ReasonTooLarge, CodeInvalidArgument, "cwd is %d bytes; the limit is %d", len(r.Cwd), MaxPathBytes)
	case strings.IndexByte(r.Cwd, 0) >= 0:
		return r.fail(ReasonInvalidField, CodeInvalidArgument, "cwd contains a NUL byte")
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
			return r.fail(ReasonInvalidField, CodeInvalidArgument, "env name %q is not a shell variable name (letters, digits and '_', not starting with a digit)", clip(k, maxQuoted))
		case strings.HasPrefix(k, ReservedEnvPrefix):
			return r.fail(ReasonInvalidField, CodeInvalidArgument, "env name %q uses the prefix %s, which sandrun reserves", clip(k, maxQuoted), ReservedEnvPrefix)
		case strings.IndexByte(r.Env[k], 0) >= 0:
			return r.fail(ReasonInvalidField, CodeInvalidArgument, "env %s contains a NUL byte", clip(k, maxQuoted))
		}
	}
	return nil
}

// Timeout is the exec's timeout: TimeoutSeconds, or DefaultTimeout when it
// is zero. A positive TimeoutSeconds too small for a time.Duration is one
// nanosecond, never none.
func (r *Request) Timeout() time.Duration {
	if r.TimeoutSeconds <= 0 {
		return DefaultTimeout
	}
	return max(time.Duration(r.TimeoutSeconds*float64(time.Second)), time.Nanosecond)
}
