package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// maxMessageBytes bounds a RequestError's message, whatever the input.
const maxMessageBytes = 512

// parseCase is one message and what ParseRequest must make of it.
type parseCase struct {
	name string
	data string
	// want is the request a valid message decodes to (checked when set).
	want *Request
	// reason is empty for a valid request; else the RequestError's Reason.
	reason string
	code   ErrorCode // CodeInvalidArgument when empty and reason is set
	// requestID is the RequestError's RequestID: empty when unanswerable.
	requestID string
	// msg is a part of the error message.
	msg string
	// schemaBlind marks an invalid request that the request schema accepts,
	// because JSON Schema cannot say the rule it breaks (sizes in bytes,
	// invalid UTF-8, repeated names); the schema's descriptions say it.
	schemaBlind bool
}

// obj builds a request object from field JSON, in order.
func obj(fields ...string) string { return "{" + strings.Join(fields, ",") + "}" }

// q is a JSON string field.
func q(name, value string) string { return fmt.Sprintf("%q:%s", name, jsonString(value)) }

// jsonString quotes s as JSON (fmt's %q is Go syntax, not JSON, for
// control characters and invalid UTF-8).
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

var (
	rid      = q("request_id", "r1")
	sid      = q("session_id", "s1")
	opExec   = q("op", "exec")
	echo     = q("command", "echo hi")
	validReq = obj(rid, sid, opExec, echo)
)

func parseCases() []parseCase {
	long := func(c byte, n int) string { return strings.Repeat(string(c), n) }
	cases := []parseCase{
		// Valid requests.
		{name: "exec", data: validReq, want: &Request{RequestID: "r1", SessionID: "s1", Op: OpExec, Command: "echo hi"}},
		{name: "exec with every field", data: obj(rid, sid, opExec, echo, `"timeout_seconds":30.5`, `"env":{"A":"1","_b2":"","PATH_X":"x y"}`, q("cwd", "/tmp")),
			want: &Request{RequestID: "r1", SessionID: "s1", Op: OpExec, Command: "echo hi", TimeoutSeconds: 30.5, Env: map[string]string{"A": "1", "_b2": "", "PATH_X": "x y"}, Cwd: "/tmp"}},
		{name: "exec fields in any order", data: obj(echo, opExec, sid, rid), want: &Request{RequestID: "r1", SessionID: "s1", Op: OpExec, Command: "echo hi"}},
		{name: "exec with zero timeout and empty env and cwd", data: obj(rid, sid, opExec, echo, `"timeout_seconds":0`, `"env":{}`, q("cwd", ""))},
		{name: "exec with the longest timeout", data: obj(rid, sid, opExec, echo, `"timeout_seconds":86400`)},
		{name: "exec with timeout in exponent form", data: obj(rid, sid, opExec, echo, `"timeout_seconds":1e2`)},
		{name: "exec with unicode and newlines", data: obj(rid, sid, opExec, q("command", "echo héllo ✓\nprintf '%s\\n' \"$A\"")),
			want: &Request{RequestID: "r1", SessionID: "s1", Op: OpExec, Command: "echo héllo ✓\nprintf '%s\\n' \"$A\""}},
		{name: "exec with a surrogate pair and an escaped backslash", data: obj(rid, sid, opExec, `"command":"echo \ud83d\ude00 \\ud800"`),
			want: &Request{RequestID: "r1", SessionID: "s1", Op: OpExec, Command: "echo 😀 \\ud800"}},
		{name: "exec with escaped field name", data: `{"request\u005fid":"r1","session_id":"s1","op":"exec","command":"ls"}`},
		{name: "exec with the longest command", data: obj(rid, sid, opExec, q("command", long('x', MaxCommandBytes)))},
		{name: "exec with env at its limit", data: obj(rid, sid, opExec, echo, fmt.Sprintf(`"env":{"A":%q}`, long('v', MaxEnvBytes-1)))},
		{name: "exec with the longest cwd", data: obj(rid, sid, opExec, echo, q("cwd", "/"+long('d', MaxPathBytes-1)))},
		{name: "whitespace around the object", data: " \n\t" + validReq + "\r\n "},
		{name: "session.create", data: obj(rid, sid, q("op", "session.create")), want: &Request{RequestID: "r1", SessionID: "s1", Op: OpSessionCreate}},
		{name: "session.get", data: obj(rid, sid, q("op", "session.get"))},
		{name: "session.destroy", data: obj(rid, sid, q("op", "session.destroy"))},
		{name: "request_id UUID", data: obj(q("request_id", "0b6f6f1e-7d1c-4c39-9b43-3f3e4b0a8e7a"), sid, opExec, echo)},
		{name: "request_id with every allowed character", data: obj(q("request_id", "Ab9._:-z"), sid, opExec, echo)},
		{name: "request_id of 128 characters", data: obj(q("request_id", long('r', 128)), sid, opExec, echo)},
		{name: "session_id of one digit", data: obj(rid, q("session_id", "0"), opExec, echo)},
		{name: "session_id with '-' and '_'", data: obj(rid, q("session_id", "a_b-c-9"), opExec, echo)},
		{name: "session_id of 63 characters", data: obj(rid, q("session_id", long('s', 63)), opExec, echo)},

		// Not a request at all.
		{name: "not JSON", data: "not json", reason: ReasonNotARequest, msg: "invalid character"},
		{name: "empty", data: "", reason: ReasonNotARequest, msg: "ends early"},
		{name: "truncated", data: `{"request_id":"r1","session_id":"s1"`, reason: ReasonNotARequest, msg: "ends early"},
		{name: "JSON array", data: "[" + validReq + "]", reason: ReasonNotARequest, msg: "it is an array, not an object"},
		{name: "JSON string", data: `"exec"`, reason: ReasonNotARequest, msg: "it is a string"},
		{name: "JSON null", data: `null`, reason: ReasonNotARequest, msg: "it is null"},
		{name: "JSON number", data: `42`, reason: ReasonNotARequest, msg: "it is a number"},
		{name: "trailing object", data: validReq + "{}", reason: ReasonNotARequest, requestID: "r1", msg: "data after its JSON object"},
		{name: "trailing brace", data: validReq + "}", reason: ReasonNotARequest, requestID: "r1", msg: "data after its JSON object"},
		{name: "trailing bracket", data: validReq + " ]", reason: ReasonNotARequest, requestID: "r1", msg: "data after its JSON object"},
		{name: "trailing word", data: validReq + "x", reason: ReasonNotARequest, requestID: "r1", msg: "data after its JSON object"},
		{name: "unknown field", data: obj(rid, sid, opExec, echo, q("shell", "zsh")), reason: ReasonNotARequest, requestID: "r1", msg: `unknown field "shell"`},
		{name: "field name in another case", data: obj(rid, sid, opExec, q("Command", "ls")), reason: ReasonNotARequest, requestID: "r1", msg: `unknown field "Command"`},
		{name: "request_id in another case", data: obj(q("REQUEST_ID", "r1"), sid, opExec, echo), reason: ReasonNotARequest, msg: `unknown field "REQUEST_ID"`},
		{name: "repeated field", data: obj(rid, sid, opExec, echo, q("command", "rm -rf /")), reason: ReasonNotARequest, requestID: "r1", msg: `field "command" appears more than once`, schemaBlind: true},
		{name: "repeated env name", data: obj(rid, sid, opExec, echo, `"env":{"A":"1","A":"2"}`), reason: ReasonNotARequest, requestID: "r1", msg: `env name "A" appears more than once`, schemaBlind: true},
		{name: "request_id a number", data: obj(`"request_id":7`, sid, opExec, echo), reason: ReasonNotARequest, msg: `field "request_id" must be a string, not a number`},
		{name: "session_id an object", data: obj(rid, `"session_id":{}`, opExec, echo), reason: ReasonNotARequest, requestID: "r1", msg: `field "session_id" must be a string, not an object`},
		{name: "op null", data: obj(rid, sid, `"op":null`), reason: ReasonNotARequest, requestID: "r1", msg: `field "op" must be a string, not null`},
		{name: "command an array", data: obj(rid, sid, opExec, `"command":["ls","-l"]`), reason: ReasonNotARequest, requestID: "r1", msg: `field "command" must be a string, not an array`},
		{name: "command null", data: obj(rid, sid, opExec, `"command":null`), reason: ReasonNotARequest, requestID: "r1", msg: "not null"},
		{name: "timeout a string", data: obj(rid, sid, opExec, echo, `"timeout_seconds":"30"`), reason: ReasonNotARequest, requestID: "r1", msg: `field "timeout_seconds" must be a number, not a string`},
		{name: "timeout a boolean", data: obj(rid, sid, opExec, echo, `"timeout_seconds":true`), reason: ReasonNotARequest, requestID: "r1", msg: "not a boolean"},
		{name: "timeout out of float range", data: obj(rid, sid, opExec, echo, `"timeout_seconds":1e400`), reason: ReasonNotARequest, requestID: "r1", msg: "out of range"},
		{name: "env an array", data: obj(rid, sid, opExec, echo, `"env":["A=1"]`), reason: ReasonNotARequest, requestID: "r1", msg: `field "env" must be an object of strings, not an array`},
		{name: "env value a number", data: obj(rid, sid, opExec, echo, `"env":{"A":1}`), reason: ReasonNotARequest, requestID: "r1", msg: `env value of "A" must be a string, not a number`},
		{name: "env null", data: obj(rid, sid, opExec, echo, `"env":null`), reason: ReasonNotARequest, requestID: "r1", msg: "not null"},
		{name: "cwd a number", data: obj(rid, sid, opExec, echo, `"cwd":1`), reason: ReasonNotARequest, requestID: "r1", msg: `field "cwd" must be a string`},

		// Invalid UTF-8: answerable only when the request id can be read.
		{name: "invalid UTF-8 with a readable request_id", data: obj(rid, sid, opExec, `"command":"echo `+"\xff"+`"`), reason: ReasonInvalidUTF8, requestID: "r1", msg: "not valid UTF-8", schemaBlind: true},
		{name: "invalid UTF-8 in the request_id", data: obj(`"request_id":"r`+"\xfe"+`"`, sid, opExec, echo), reason: ReasonInvalidUTF8, msg: "not valid UTF-8"},
		{name: "invalid UTF-8 and no JSON", data: "\xff\xfe", reason: ReasonInvalidUTF8, msg: "not valid UTF-8"},
		// A lone surrogate escape would decode to U+FFFD: another command.
		{name: "lone high surrogate", data: obj(rid, sid, opExec, `"command":"echo \ud800"`), reason: ReasonInvalidUTF8, requestID: "r1", msg: `the escape \ud800 at byte`, schemaBlind: true},
		{name: "lone low surrogate", data: obj(rid, sid, opExec, `"command":"echo \uDC00x"`), reason: ReasonInvalidUTF8, requestID: "r1", msg: "half of a UTF-16 surrogate pair", schemaBlind: true},
		{name: "high surrogate then another high", data: obj(rid, sid, opExec, `"command":"echo \ud83d\ud83d"`), reason: ReasonInvalidUTF8, requestID: "r1", msg: "surrogate", schemaBlind: true},
		{name: "lone surrogate in env", data: obj(rid, sid, opExec, echo, `"env":{"A":"\ud800"}`), reason: ReasonInvalidUTF8, requestID: "r1", msg: "surrogate", schemaBlind: true},

		// Missing ids and op.
		{name: "missing request_id", data: obj(sid, opExec, echo), reason: ReasonInvalidRequestID, msg: "request_id is missing"},
		{name: "empty request_id", data: obj(q("request_id", ""), sid, opExec, echo), reason: ReasonInvalidRequestID, msg: "request_id is missing"},
		{name: "missing session_id", data: obj(rid, opExec, echo), reason: ReasonInvalidSessionID, requestID: "r1", msg: "session_id is missing"},
		{name: "missing op", data: obj(rid, sid), reason: ReasonInvalidOp, requestID: "r1", msg: "op is missing"},
		{name: "empty op", data: obj(rid, sid, q("op", "")), reason: ReasonInvalidOp, requestID: "r1", msg: "op is missing"},
		{name: "empty object", data: "{}", reason: ReasonInvalidRequestID, msg: "request_id is missing"},

		// Request id edge cases: never answerable.
		{name: "request_id of 129 characters", data: obj(q("request_id", long('r', 129)), sid, opExec, echo), reason: ReasonInvalidRequestID, msg: "request_id \"rrrr"},
		{name: "request_id starting with '-'", data: obj(q("request_id", "-r1"), sid, opExec, echo), reason: ReasonInvalidRequestID, msg: `request_id "-r1" is not`},
		{name: "request_id starting with '.'", data: obj(q("request_id", ".r1"), sid, opExec, echo), reason: ReasonInvalidRequestID},
		{name: "request_id with a space", data: obj(q("request_id", "r 1"), sid, opExec, echo), reason: ReasonInvalidRequestID},
		{name: "request_id with a slash", data: obj(q("request_id", "r/1"), sid, opExec, echo), reason: ReasonInvalidRequestID},
		{name: "request_id with unicode", data: obj(q("request_id", "ré"), sid, opExec, echo), reason: ReasonInvalidRequestID},
		{name: "request_id with a trailing newline", data: obj(q("request_id", "r1\n"), sid, opExec, echo), reason: ReasonInvalidRequestID, msg: `"r1\n"`},
		{name: "request_id with NUL", data: obj(q("request_id", "r\x001"), sid, opExec, echo), reason: ReasonInvalidRequestID, msg: `"r\x001"`},
	}

	// Unsafe session ids: answerable, since the request id is fine.
	for _, id := range []string{"../x", "a/b", ".", "..", "__x__", "_x", "-x", "ABC", "aBc", long('s', 64), "sessión", "a\x00b", "a b", "a\n", "a.b", "a:b"} {
		cases = append(cases, parseCase{name: fmt.Sprintf("session_id %q", clip(id, 20)), data: obj(rid, q("session_id", id), opExec, echo),
			reason: ReasonInvalidSessionID, requestID: "r1", msg: fmt.Sprintf("session_id %q is not", id)})
	}
	cases = append(cases, parseCase{name: "empty session_id", data: obj(rid, q("session_id", ""), opExec, echo), reason: ReasonInvalidSessionID, requestID: "r1", msg: "session_id is missing"})

	cases = append(cases, []parseCase{
		// exec's fields.
		{name: "exec without command", data: obj(rid, sid, opExec), reason: ReasonInvalidField, requestID: "r1", msg: "exec needs a command"},
		{name: "exec with empty command", data: obj(rid, sid, opExec, q("command", "")), reason: ReasonInvalidField, requestID: "r1", msg: "exec needs a command"},
		{name: "command one byte too long", data: obj(rid, sid, opExec, q("command", long('x', MaxCommandBytes+1))), reason: ReasonTooLarge, requestID: "r1",
			msg: fmt.Sprintf("command is %d bytes; the limit is %d", MaxCommandBytes+1, MaxCommandBytes)},
		{name: "command too long in bytes but not in characters", data: obj(rid, sid, opExec, q("command", strings.Repeat("é", MaxCommandBytes/2+1))), reason: ReasonTooLarge, requestID: "r1",
			msg: "command is", schemaBlind: true},
		{name: "message one byte too long", data: validReq + strings.Repeat(" ", MaxRequestBytes+1-len(validReq)), reason: ReasonTooLarge, requestID: "r1",
			msg: fmt.Sprintf("request is %d bytes; the limit is %d", MaxRequestBytes+1, MaxRequestBytes), schemaBlind: true},
		{name: "message too long without a readable request_id", data: `{"command":"` + long('x', MaxRequestBytes) + `"}`, reason: ReasonTooLarge, msg: "request is"},
		{name: "NUL in command", data: obj(rid, sid, opExec, q("command", "echo a\x00b")), reason: ReasonInvalidField, requestID: "r1", msg: "command contains a NUL byte"},
		{name: "NUL in env value", data: obj(rid, sid, opExec, echo, `"env":{"A":"x\u0000y"}`), reason: ReasonInvalidField, requestID: "r1", msg: "env A contains a NUL byte"},
		{name: "NUL in cwd", data: obj(rid, sid, opExec, echo, q("cwd", "/tmp\x00")), reason: ReasonInvalidField, requestID: "r1", msg: "cwd contains a NUL byte"},
		{name: "cwd one byte too long", data: obj(rid, sid, opExec, echo, q("cwd", long('d', MaxPathBytes+1))), reason: ReasonTooLarge, requestID: "r1", msg: "cwd is 4097 bytes"},
		{name: "env value too long", data: obj(rid, sid, opExec, echo, fmt.Sprintf(`"env":{"A":%q}`, long('v', MaxEnvBytes+1))), reason: ReasonTooLarge, requestID: "r1", msg: "env is"},
		{name: "env one byte over its limit in total", data: obj(rid, sid, opExec, echo, fmt.Sprintf(`"env":{"A":%q,"B":%q}`, long('v', MaxEnvBytes/2), long('v', MaxEnvBytes/2-1))), reason: ReasonTooLarge, requestID: "r1",
			msg: fmt.Sprintf("env is %d bytes; the limit is %d", MaxEnvBytes+1, MaxEnvBytes), schemaBlind: true},
		{name: "negative timeout", data: obj(rid, sid, opExec, echo, `"timeout_seconds":-1`), reason: ReasonInvalidField, requestID: "r1", msg: "timeout_seconds -1 is outside 0..86400"},
		{name: "timeout past the limit", data: obj(rid, sid, opExec, echo, `"timeout_seconds":86400.5`), reason: ReasonInvalidField, requestID: "r1", msg: "outside 0..86400"},
		{name: "huge timeout", data: obj(rid, sid, opExec, echo, `"timeout_seconds":1e300`), reason: ReasonInvalidField, requestID: "r1", msg: "timeout_seconds 1e+300 is outside"},
	}...)

	// Bad env names.
	for _, name := range []string{"1A", "A-B", "", "A B", "é", "A=B", "__sandrun_cwd", long('A', 100) + "-"} {
		cases = append(cases, parseCase{name: fmt.Sprintf("env name %q", clip(name, 20)), data: obj(rid, sid, opExec, echo, fmt.Sprintf(`"env":{%s:"1"}`, jsonString(name))),
			reason: ReasonInvalidField, requestID: "r1", msg: "env name " + fmt.Sprintf("%q", clip(name, maxQuoted))})
	}

	// Session operations take no exec field, not even an empty one.
	for _, op := range []Op{OpSessionCreate, OpSessionGet, OpSessionDestroy} {
		for _, f := range []string{q("command", "ls"), q("command", ""), `"timeout_seconds":5`, `"timeout_seconds":0`, `"env":{"A":"1"}`, `"env":{}`, q("cwd", "/tmp"), q("cwd", "")} {
			name, _, _ := strings.Cut(strings.TrimPrefix(f, `"`), `"`)
			cases = append(cases, parseCase{name: fmt.Sprintf("%s with %s", op, f), data: obj(rid, sid, q("op", string(op)), f),
				reason: ReasonInvalidField, requestID: "r1", msg: fmt.Sprintf("%s does not take %s; it takes no field besides request_id, session_id and op", op, name)})
		}
	}

	cases = append(cases, opCases()...)

	// Operations not served, and unknown ones.
	cases = append(cases, []parseCase{
		{name: "browser.open", data: obj(rid, sid, q("op", "browser.open")), reason: ReasonNotSupported, code: CodeNotSupported, requestID: "r1",
			msg: `op "browser.open" is not supported: sandboxes on Cloud Run Jobs have no display or browser`},
		{name: "browser.open with fields", data: obj(rid, sid, q("op", "browser.open"), q("path", "x")), reason: ReasonNotSupported, code: CodeNotSupported, requestID: "r1", msg: "no display or browser"},
		{name: "browser.screenshot with a url", data: obj(rid, sid, q("op", "browser.screenshot"), q("url", "https://example.com")), reason: ReasonNotSupported, code: CodeNotSupported, requestID: "r1", msg: "no display or browser"},
		{name: "browser op with a field of the wrong type", data: obj(rid, sid, q("op", "browser.click"), `"x":[1]`), reason: ReasonNotSupported, code: CodeNotSupported, requestID: "r1", msg: "no display or browser"},
		{name: "browser op with an unknown field and a bad session", data: obj(rid, q("session_id", "../x"), q("op", "browser.screenshot"), q("url", "u")), reason: ReasonInvalidSessionID, code: CodeInvalidArgument, requestID: "r1"},
		{name: "unknown file op", data: obj(rid, sid, q("op", "file.frobnicate")), reason: ReasonUnknownOp, requestID: "r1", msg: `unknown op "file.frobnicate" (want exec, session.create|get|destroy, file.read|write|delete|exists|list|find|search|replace|upload|download, process.list|kill|logs|wait|write, shell.view)`},
		{name: "unknown process op", data: obj(rid, sid, q("op", "process.start")), reason: ReasonUnknownOp, requestID: "r1", msg: `unknown op "process.start"`},
		{name: "unknown shell op", data: obj(rid, sid, q("op", "shell.exec")), reason: ReasonUnknownOp, requestID: "r1", msg: `unknown op "shell.exec"`},
		{name: "file op in capitals", data: obj(rid, sid, q("op", "FILE.READ"), q("path", "x")), reason: ReasonUnknownOp, requestID: "r1", msg: `unknown op "FILE.READ"`},
		{name: "frobnicate", data: obj(rid, sid, q("op", "frobnicate")), reason: ReasonUnknownOp, requestID: "r1",
			msg: `unknown op "frobnicate" (want exec, session.create|get|destroy, file.read|`},
		{name: "op in capitals", data: obj(rid, sid, q("op", "EXEC"), echo), reason: ReasonUnknownOp, requestID: "r1", msg: `unknown op "EXEC"`},
		{name: "long unknown op", data: obj(rid, sid, q("op", long('o', 10000))), reason: ReasonUnknownOp, requestID: "r1", msg: `unknown op "` + long('o', maxQuoted) + `"`},
		{name: "long invalid session_id", data: obj(rid, q("session_id", long('S', 10000)), opExec, echo), reason: ReasonInvalidSessionID, requestID: "r1", msg: `session_id "` + long('S', maxQuoted) + `" is`},
		{name: "long unknown field", data: obj(rid, sid, opExec, echo, q(long('f', 10000), "x")), reason: ReasonNotARequest, requestID: "r1", msg: `unknown field "` + long('f', maxQuoted) + `"`},
		{name: "long number", data: obj(rid, sid, opExec, echo, `"timeout_seconds":1`+long('0', 10000)), reason: ReasonNotARequest, requestID: "r1", msg: "out of range"},
	}...)
	return cases
}

func TestParseRequest(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ParseRequest([]byte(tc.data))
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("ParseRequest: %v", err)
				}
				if tc.want != nil && !reflect.DeepEqual(req, *tc.want) {
					t.Fatalf("ParseRequest = %+v, want %+v", req, *tc.want)
				}
				if err := req.Validate(); err != nil {
					t.Fatalf("Validate of a parsed request: %v", err)
				}
				return
			}
			var rerr *RequestError
			if !errors.As(err, &rerr) {
				t.Fatalf("ParseRequest error = %v (%T), want a *RequestError", err, err)
			}
			code := tc.code
			if code == "" {
				code = CodeInvalidArgument
			}
			if rerr.Reason != tc.reason || rerr.Code != code {
				t.Errorf("reason, code = %s, %s; want %s, %s (message %q)", rerr.Reason, rerr.Code, tc.reason, code, rerr.Message)
			}
			if rerr.RequestID != tc.requestID || rerr.Answerable() != (tc.requestID != "") {
				t.Errorf("RequestID = %q, Answerable = %v; want %q", rerr.RequestID, rerr.Answerable(), tc.requestID)
			}
			if rerr.Error() != rerr.Message || rerr.Message == "" {
				t.Errorf("Error() = %q, Message = %q", rerr.Error(), rerr.Message)
			}
			if !strings.Contains(rerr.Message, tc.msg) {
				t.Errorf("message %q does not say %q", rerr.Message, tc.msg)
			}
			checkErrorBounds(t, rerr)
		})
	}
}

// checkErrorBounds checks what every RequestError promises, whatever the
// input.
func checkErrorBounds(t testing.TB, e *RequestError) {
	t.Helper()
	if len(e.Message) > maxMessageBytes {
		t.Errorf("message is %d bytes, more than %d: %.200q...", len(e.Message), maxMessageBytes, e.Message)
	}
	if e.Answerable() && !ValidRequestID(e.RequestID) {
		t.Errorf("answerable with request id %q, which is not valid", e.RequestID)
	}
	if len(e.SessionID) > maxErrSessionID || len(e.Op) > maxErrOp {
		t.Errorf("session id of %d bytes or op of %d bytes kept", len(e.SessionID), len(e.Op))
	}
	if !isReason(e.Reason) {
		t.Errorf("reason %q is not one of the Reason constants", e.Reason)
	}
}

func isReason(r string) bool {
	switch r {
	case ReasonTooLarge, ReasonInvalidUTF8, ReasonNotARequest, ReasonInvalidRequestID, ReasonInvalidSessionID,
		ReasonInvalidOp, ReasonUnknownOp, ReasonNotSupported, ReasonInvalidField:
		return true
	}
	return false
}

// The ids an error carries are what the request said, so that the
// dispatcher can answer on the request's session.
func TestRequestErrorCarriesIDs(t *testing.T) {
	_, err := ParseRequest([]byte(obj(rid, sid, q("op", "browser.open"))))
	var rerr *RequestError
	if !errors.As(err, &rerr) {
		t.Fatalf("err = %v", err)
	}
	if rerr.RequestID != "r1" || rerr.SessionID != "s1" || rerr.Op != "browser.open" {
		t.Fatalf("ids = %q %q %q", rerr.RequestID, rerr.SessionID, rerr.Op)
	}

	_, err = ParseRequest([]byte(obj(rid, q("session_id", strings.Repeat("é", 1000)), q("op", strings.Repeat("ö", 1000)), q("shell", "x"))))
	if !errors.As(err, &rerr) {
		t.Fatalf("err = %v", err)
	}
	if rerr.SessionID != strings.Repeat("é", maxErrSessionID/2) || rerr.Op != Op(strings.Repeat("ö", maxErrOp/2)) {
		t.Fatalf("clipped ids = %q %q", rerr.SessionID, rerr.Op)
	}

	// The last of repeated ids is the one a JSON reader sees.
	_, err = ParseRequest([]byte(obj(rid, sid, opExec, echo, q("request_id", "r2"))))
	if !errors.As(err, &rerr) || rerr.RequestID != "r2" {
		t.Fatalf("err = %v", err)
	}
}

// Validate judges Go values, where a left-out field and a zero one are the
// same.
func TestValidate(t *testing.T) {
	ok := []Request{
		{RequestID: "r", SessionID: "s", Op: OpExec, Command: "ls"},
		{RequestID: "r", SessionID: "s", Op: OpSessionGet},
		{RequestID: "r", SessionID: "s", Op: OpExec, Command: "ls", Env: map[string]string{}},
		{RequestID: "r", SessionID: "s", Op: OpExec, Command: "ls", Background: true, KeepStdin: true},
		// A zero value is a field left out.
		{RequestID: "r", SessionID: "s", Op: OpFileList, MaxDepth: 0, Recursive: false},
		{RequestID: "r", SessionID: "s", Op: OpProcessLogs, PID: 1, Offset: 0, TailBytes: 5},
		{RequestID: "r", SessionID: "s", Op: OpFileReplace, Path: "a", OldString: "x", ExpectedCount: 0, ReplaceAll: true},
		{RequestID: "r", SessionID: "s", Op: OpProcessKill, PID: 3, All: false},
		{RequestID: "r", SessionID: "s", Op: OpFileWrite, Path: "a", EncodedContent: base64.StdEncoding.EncodeToString(make([]byte, MaxInlineFileBytes)), Encoding: EncodingBase64},
		{RequestID: "r", SessionID: "s", Op: OpFileWrite, Path: "a", EncodedContent: strings.Repeat("x", MaxInlineFileBytes)},
	}
	for _, r := range ok {
		if err := r.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", r, err)
		}
	}
	bad := []struct {
		req    Request
		reason string
		code   ErrorCode
	}{
		{Request{}, ReasonInvalidRequestID, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpSessionCreate, Env: map[string]string{}}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpSessionDestroy, TimeoutSeconds: 1}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpExec, Command: "ls", Env: map[string]string{"A": "\x00"}}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpExec, Command: "ls", TimeoutSeconds: math.NaN()}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpExec, Command: "ls", TTY: true}, ReasonNotSupported, CodeNotSupported},
		{Request{RequestID: "r", SessionID: "s", Op: OpFileRead, Path: "a", Command: "x"}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpFileRead, Path: "a", Env: map[string]string{}}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpProcessKill}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpProcessKill, PID: -3}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpProcessKill, GraceSeconds: math.Inf(1), All: true}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpProcessWrite, PID: 1}, ReasonInvalidField, CodeInvalidArgument},
		{Request{RequestID: "r", SessionID: "s", Op: OpFileWrite, Path: "a", Encoding: "utf8"}, ReasonInvalidField, CodeInvalidArgument},
		// Content too large to fit a request message can still be a Go value.
		{Request{RequestID: "r", SessionID: "s", Op: OpFileWrite, Path: "a", EncodedContent: base64.StdEncoding.EncodeToString(make([]byte, MaxInlineFileBytes+1)), Encoding: EncodingBase64},
			ReasonTooLarge, CodeResourceExhausted},
		{Request{RequestID: "r", SessionID: "s", Op: OpFileWrite, Path: "a", EncodedContent: strings.Repeat("x", MaxRequestBytes)}, ReasonTooLarge, CodeResourceExhausted},
	}
	for _, tc := range bad {
		var rerr *RequestError
		if err := tc.req.Validate(); !errors.As(err, &rerr) || rerr.Reason != tc.reason || rerr.Code != tc.code {
			t.Errorf("Validate(%.200v) = %v, want reason %s and code %s", tc.req, err, tc.reason, tc.code)
		}
	}
}

// One request always gets the same error, whatever the order in which Go
// walks its env.
func TestValidateIsDeterministic(t *testing.T) {
	env := map[string]string{}
	for i := range 50 {
		env[fmt.Sprintf("%d_BAD", i)] = "x"
	}
	req := Request{RequestID: "r", SessionID: "s", Op: OpExec, Command: "ls", Env: env}
	first := req.Validate().Error()
	for range 20 {
		if got := req.Validate().Error(); got != first {
			t.Fatalf("Validate said %q, then %q", first, got)
		}
	}
	if !strings.Contains(first, `"0_BAD"`) {
		t.Fatalf("Validate = %q, want the first name in order", first)
	}
}

func TestTimeout(t *testing.T) {
	for _, tc := range []struct {
		seconds float64
		want    time.Duration
	}{
		{0, DefaultTimeout},
		{-1, DefaultTimeout},
		{1.5, 1500 * time.Millisecond},
		{86400, MaxTimeout},
		{1e-12, time.Nanosecond}, // positive is never "none"
	} {
		r := Request{TimeoutSeconds: tc.seconds}
		if got := r.Timeout(); got != tc.want {
			t.Errorf("Timeout(%v) = %v, want %v", tc.seconds, got, tc.want)
		}
	}
}

func TestValidIDs(t *testing.T) {
	for id, want := range map[string]bool{"a": true, "0": true, "a-b_c": true, strings.Repeat("a", 63): true, strings.Repeat("a", 64): false, "": false, "A": false, "_a": false} {
		if ValidSessionID(id) != want {
			t.Errorf("ValidSessionID(%q) = %v", id, !want)
		}
	}
	for id, want := range map[string]bool{"a": true, "A.b:c-d_e": true, strings.Repeat("a", 128): true, strings.Repeat("a", 129): false, "": false, ":a": false, "a b": false} {
		if ValidRequestID(id) != want {
			t.Errorf("ValidRequestID(%q) = %v", id, !want)
		}
	}
}
