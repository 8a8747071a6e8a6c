package api

import (
	"encoding/base64"
	"fmt"
	"unicode/utf8"
)

// Attributes are the Pub/Sub attributes a request is published with.
func (r *Request) Attributes() map[string]string {
	return map[string]string{AttrSessionID: r.SessionID, AttrRequestID: r.RequestID, AttrOp: string(r.Op)}
}

// Attributes are the Pub/Sub attributes a completion is published with.
func (c *Completion) Attributes() map[string]string {
	return map[string]string{AttrSessionID: c.SessionID, AttrRequestID: c.RequestID, AttrOp: string(c.Op), AttrStatus: string(c.Status)}
}

// Fail turns c into an error completion with code and message. It leaves
// the exit code as it is: a command that ran keeps its own.
func (c *Completion) Fail(code ErrorCode, message string) {
	c.Status = StatusError
	c.Error = &Error{Code: code, Message: message}
}

// ErrorCompletion answers a request that could not be run: its exit code
// is -1.
func ErrorCompletion(requestID, sessionID string, op Op, code ErrorCode, message string) *Completion {
	c := &Completion{RequestID: requestID, SessionID: sessionID, Op: op, ExitCode: -1}
	c.Fail(code, message)
	return c
}

// InlineOutput is how output travels in a completion: as text when it is
// valid UTF-8, else as base64.
func InlineOutput(b []byte) (string, Encoding) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), EncodingBase64
}

// Summary is what a completion's message carries when its JSON is over
// MaxCompletionBytes and the whole of it is stored in resultObject: the
// completion without the fields that grow with what the operation
// returned (inline output and content, entries, matches, processes, the
// pid lists and the foreground command), its sizes, status, error and
// timing kept.
func (c *Completion) Summary(resultObject string) *Completion {
	s := *c
	s.Stdout, s.StdoutEncoding, s.Stderr, s.StderrEncoding = "", "", "", ""
	s.Content, s.ContentEncoding = "", ""
	s.Entries, s.Matches, s.Processes, s.Killed, s.BackgroundPIDs, s.Running = nil, nil, nil, nil, nil, nil
	s.ResultObject = resultObject
	return &s
}

// StdoutData returns the inline stdout as bytes, decoding base64 if needed.
func (c *Completion) StdoutData() ([]byte, error) {
	return decodeOutput("stdout", c.Stdout, c.StdoutEncoding)
}

// StderrData returns the inline stderr as bytes, decoding base64 if needed.
func (c *Completion) StderrData() ([]byte, error) {
	return decodeOutput("stderr", c.Stderr, c.StderrEncoding)
}

// ContentData returns the inline content of a file.read as bytes,
// decoding base64 if needed.
func (c *Completion) ContentData() ([]byte, error) {
	return decodeOutput("content", c.Content, c.ContentEncoding)
}

func decodeOutput(field, s string, enc Encoding) ([]byte, error) {
	switch enc {
	case "":
		return []byte(s), nil
	case EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", field, err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("%s has unknown encoding %q", field, enc)
	}
}
