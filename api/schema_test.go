package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemas compiles the two schemas once; compiling also checks them
// against the draft 2020-12 meta-schema.
var schemas = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.AssertContent()
	out := map[string]*jsonschema.Schema{}
	for name, data := range map[string][]byte{"request": RequestSchema, "completion": CompletionSchema} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		url := "mem:///" + name + ".schema.json"
		if err := c.AddResource(url, doc); err != nil {
			return nil, err
		}
		if out[name], err = c.Compile(url); err != nil {
			return nil, err
		}
	}
	return out, nil
})

// errValidatorPanicked is schemaCheck's error when the validator panics
// rather than judging: jsonschema v6.0.3 does on a number whose exponent
// math/big will not take (1e-99999999), a bug of the validator, not of the
// schema.
var errValidatorPanicked = errors.New("the schema validator panicked")

// schemaCheck validates JSON data against the named schema; data that is not
// JSON fails.
func schemaCheck(t testing.TB, name string, data []byte) (err error) {
	t.Helper()
	all, err := schemas()
	if err != nil {
		t.Fatalf("compile schemas: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer func() {
		if recover() != nil {
			err = errValidatorPanicked
		}
	}()
	return all[name].Validate(inst)
}

func TestSchemasCompile(t *testing.T) {
	if _, err := schemas(); err != nil {
		t.Fatal(err)
	}
}

// The request schema agrees with ParseRequest on every table case: it
// accepts what ParseRequest accepts and rejects what ParseRequest rejects,
// except the few rules JSON Schema cannot state, which it must then accept
// (so that the list of what it cannot state stays true).
func TestRequestSchemaAgreesWithParseRequest(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			err := schemaCheck(t, "request", []byte(tc.data))
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("ParseRequest accepts it; the schema rejects it: %v", err)
			case tc.reason != "" && !tc.schemaBlind && err == nil:
				t.Fatalf("ParseRequest rejects it (%s); the schema accepts it", tc.reason)
			case tc.schemaBlind && err == nil && tc.reason == "":
				t.Fatal("a valid case marked schemaBlind")
			case tc.schemaBlind && err != nil:
				t.Fatalf("marked as a rule the schema cannot state, but the schema rejects it: %v", err)
			}
		})
	}
}

// Requests built as Go values and marshalled validate against the schema.
func TestMarshalledRequestsMatchSchema(t *testing.T) {
	for _, r := range []Request{
		{RequestID: "r1", SessionID: "s1", Op: OpExec, Command: "ls -l"},
		{RequestID: "r2", SessionID: "s1", Op: OpExec, Command: "env", TimeoutSeconds: 2.5, Env: map[string]string{"A": "<&>"}, Cwd: "sub"},
		{RequestID: "r3", SessionID: "s1", Op: OpSessionCreate},
		{RequestID: "r4", SessionID: "s1", Op: OpSessionGet},
		{RequestID: "r5", SessionID: "s1", Op: OpSessionDestroy},
		{RequestID: "r6", SessionID: "s1", Op: OpExec, Command: "sleep 1000", Background: true, KeepStdin: true, Env: map[string]string{}},
		{RequestID: "r7", SessionID: "s1", Op: OpFileRead, Path: "a.txt", Offset: 5, Length: 10, Encoding: EncodingBase64},
		{RequestID: "r8", SessionID: "s1", Op: OpFileWrite, Path: "a.txt", EncodedContent: "AP8=", Encoding: EncodingBase64, Mode: "0600", Append: true},
		{RequestID: "r9", SessionID: "s1", Op: OpFileWrite, Path: "empty"},
		{RequestID: "r10", SessionID: "s1", Op: OpFileDelete, Path: "d", Recursive: true},
		{RequestID: "r11", SessionID: "s1", Op: OpFileExists, Path: "d"},
		{RequestID: "r12", SessionID: "s1", Op: OpFileList, Recursive: true, MaxDepth: 2, Hidden: true, MaxResults: 5},
		{RequestID: "r13", SessionID: "s1", Op: OpFileFind, Path: "src", Pattern: "**/*.go", MaxDepth: 4},
		{RequestID: "r14", SessionID: "s1", Op: OpFileSearch, Pattern: `\bfoo\b`, Include: "*.md", MaxResults: MaxResults},
		{RequestID: "r15", SessionID: "s1", Op: OpFileReplace, Path: "a", OldString: "x", ExpectedCount: 2},
		{RequestID: "r16", SessionID: "s1", Op: OpFileReplace, Path: "a", OldString: "x", NewString: "y", ReplaceAll: true},
		{RequestID: "r17", SessionID: "s1", Op: OpFileUpload, Path: "a", Object: stagedObject},
		{RequestID: "r18", SessionID: "s1", Op: OpFileDownload, Path: "a"},
		{RequestID: "r19", SessionID: "s1", Op: OpProcessList},
		{RequestID: "r20", SessionID: "s1", Op: OpProcessKill, Pattern: "server", Signal: "SIGINT", GraceSeconds: 1},
		{RequestID: "r21", SessionID: "s1", Op: OpProcessKill, All: true},
		{RequestID: "r22", SessionID: "s1", Op: OpProcessLogs, PID: 3, TailBytes: 100},
		{RequestID: "r23", SessionID: "s1", Op: OpProcessWait, PID: 3, TimeoutSeconds: 1},
		{RequestID: "r24", SessionID: "s1", Op: OpProcessWrite, PID: 3, CloseStdin: true},
		{RequestID: "r25", SessionID: "s1", Op: OpShellView},
	} {
		data, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemaCheck(t, "request", data); err != nil {
			t.Errorf("%s: %v", data, err)
		}
		if _, err := ParseRequest(data); err != nil {
			t.Errorf("%s: %v", data, err)
		}
	}
}

// opCompletions are completions of the file, process and shell operations,
// as a host fills them in.
func opCompletions() map[string]*Completion {
	ok := func(op Op, edit func(c *Completion)) *Completion {
		c := &Completion{RequestID: "r1", SessionID: "s1", Op: op, Status: StatusOK, Cwd: "/workspace", ExecutionID: "e-1"}
		edit(c)
		return c
	}
	zero, killed := 0, 143
	file := FileInfo{Path: "a.txt", Type: FileTypeFile, Size: 6, Mode: "0644", ModifiedAt: testTime}
	running := ProcessInfo{PID: 42, Command: "python3 -m http.server 8000", Status: ProcessRunning, StartedAt: testTime, Host: "e-1"}
	binary, enc := InlineOutput([]byte{0, 0xff, 0xfe})
	return map[string]*Completion{
		"file.read text":   ok(OpFileRead, func(c *Completion) { c.Content, c.Size, c.EOF = "hello\n", 6, true }),
		"file.read binary": ok(OpFileRead, func(c *Completion) { c.Content, c.ContentEncoding, c.Size = binary, enc, 1<<20 }),
		"file.read at the limit": ok(OpFileRead, func(c *Completion) {
			c.Content, c.Size = strings.Repeat("x", MaxInlineFileBytes), 1<<20
		}),
		"file.read base64 at the limit": ok(OpFileRead, func(c *Completion) {
			c.Content, c.ContentEncoding, c.Size = base64.StdEncoding.EncodeToString(make([]byte, MaxInlineFileBytes)), EncodingBase64, MaxInlineFileBytes
		}),
		"file.write":            ok(OpFileWrite, func(c *Completion) { c.File = &file }),
		"file.exists true":      ok(OpFileExists, func(c *Completion) { c.Exists, c.File = new(true), &file }),
		"file.exists false":     ok(OpFileExists, func(c *Completion) { c.Exists = new(false) }),
		"file.exists rejected":  ErrorCompletion("r2", "s1", OpFileExists, CodeInvalidArgument, "path contains a NUL byte"),
		"file.delete not found": ErrorCompletion("r3", "s1", OpFileDelete, CodeNotFound, "no such file"),
		"file.replace mismatch": ErrorCompletion("r4", "s1", OpFileReplace, CodeFailedPrecondition, "old_string occurs 3 times, expected 1; nothing changed"),
		"file.list": ok(OpFileList, func(c *Completion) {
			c.Entries = []FileInfo{{Path: "src", Type: FileTypeDir, Size: 4096, Mode: "0755"}, {Path: "link", Type: FileTypeSymlink, Mode: "0777", Target: "src"}, file}
			c.Truncated = true
		}),
		"file.list empty": ok(OpFileList, func(c *Completion) {}),
		"file.search": ok(OpFileSearch, func(c *Completion) {
			c.Matches = []Match{{Path: "a.go", LineNumber: 1, Line: "package a"}, {Path: "b.go", LineNumber: 9, Line: strings.Repeat("é", MaxMatchLineBytes/2)}}
		}),
		"file.replace":      ok(OpFileReplace, func(c *Completion) { c.Replacements = 2 }),
		"file.upload":       ok(OpFileUpload, func(c *Completion) { c.File = &file }),
		"file.download":     ok(OpFileDownload, func(c *Completion) { c.Object, c.Size = "gs://b/sessions/s1/transfers/r1/a.txt", 6 }),
		"exec background":   ok(OpExec, func(c *Completion) { c.PID = 42 }),
		"exec left running": ok(OpExec, func(c *Completion) { c.BackgroundPIDs = []int{42, 43} }),
		"process.list": ok(OpProcessList, func(c *Completion) {
			c.Processes = []ProcessInfo{running, {PID: 7, Command: "make", Status: ProcessExited, ExitCode: &zero, StartedAt: testTime, FinishedAt: testTime, Host: "e-0"},
				{PID: 8, Command: "sleep 9", Status: ProcessKilled, ExitCode: &killed, Signal: "TERM"}, {PID: 9, Command: "x", Status: ProcessLost}}
		}),
		"process.kill": ok(OpProcessKill, func(c *Completion) { c.Killed = []int{42, 43} }),
		"process.logs": ok(OpProcessLogs, func(c *Completion) { c.Stdout, c.StdoutBytes = "Serving HTTP\n", 1000 }),
		"process.wait": ok(OpProcessWait, func(c *Completion) {
			c.PID, c.ExitCode, c.Processes = 7, 0, []ProcessInfo{{PID: 7, Command: "make", Status: ProcessExited, ExitCode: &zero}}
		}),
		"process.wait timeout": ErrorCompletion("r5", "s1", OpProcessWait, CodeTimeout, "process 7 still runs after 30s"),
		"shell.view": ok(OpShellView, func(c *Completion) {
			fg := running
			fg.Foreground = true
			c.Running, c.Stdout, c.StdoutBytes = &fg, "compiling...\n", 13
		}),
		"shell.view idle": ok(OpShellView, func(c *Completion) {}),
		"exec aborted by process.kill": ok(OpExec, func(c *Completion) {
			c.ExitCode = 143
			c.Fail(CodeAborted, "process.kill r9 ended the command")
		}),
	}
}

// testTime is a fixed instant with nanoseconds, as time.Now gives.
var testTime = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// fullCompletion has every field set.
func fullCompletion() *Completion {
	return &Completion{
		RequestID: "r1", SessionID: "s1", Op: OpExec, Status: StatusOK, ExitCode: 0,
		Stdout: strings.Repeat("x", InlineOutputBytes), Stderr: "warning\n",
		StdoutBytes: 1 << 20, StderrBytes: 8,
		StdoutObject: "gs://sandrun-local/sessions/s1/results/r1/stdout", StderrObject: "gs://b/o",
		Cwd: "/home/user", ColdStart: true, ExecutionID: "projects/p/locations/l/jobs/sandrun-executor/executions/e-1",
		DurationSeconds: 0.25,
		Session: &SessionInfo{SessionID: "s1", Status: "active", CreatedAt: testTime, LastActiveAt: testTime.Add(time.Second),
			Host: "e-1", Queued: 2, Cwd: "/home/user"},
		Timing: Timing{AcceptedAt: testTime, StartedAt: testTime.Add(time.Second), FinishedAt: testTime.Add(2 * time.Second),
			QueueSeconds: 1, LaunchSeconds: 0.8, RestoreSeconds: 0.1, RunSeconds: 0.25, TotalSeconds: 2},
	}
}

// Completions built as Go values validate against the schema.
func TestCompletionsMatchSchema(t *testing.T) {
	binary := &Completion{RequestID: "r2", SessionID: "s1", Op: OpExec, Status: StatusOK, ExitCode: 1}
	raw := make([]byte, InlineOutputBytes)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	binary.Stdout, binary.StdoutEncoding = InlineOutput(raw)
	binary.Stderr, binary.StderrEncoding = InlineOutput([]byte{0xff, 0xfe, 'x'})
	binary.StdoutBytes, binary.StderrBytes = int64(len(raw)), 3

	timedOut := &Completion{RequestID: "r3", SessionID: "s1", Op: OpExec, Status: StatusOK, ExitCode: 124, Stdout: "partial", StdoutBytes: 7}
	timedOut.Fail(CodeTimeout, "the command ran longer than its timeout of 1s and was killed")

	// A request rejected for its ids is answered with what could be read.
	_, err := ParseRequest([]byte(obj(rid, q("session_id", strings.Repeat("É", 300)), q("op", strings.Repeat("ø", 100)), q("x", ""))))
	var rerr *RequestError
	if !errors.As(err, &rerr) || !rerr.Answerable() {
		t.Fatalf("err = %v, want an answerable RequestError", err)
	}

	for name, c := range opCompletions() {
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemaCheck(t, "completion", data); err != nil {
			t.Errorf("%s: %v\n%.300s", name, err, data)
		}
	}
	for name, c := range map[string]*Completion{
		"full":                        fullCompletion(),
		"base64 output":               binary,
		"timeout":                     timedOut,
		"error":                       ErrorCompletion("r4", "s1", OpExec, CodeHostLost, "the host stopped"),
		"rejected with long ids":      ErrorCompletion(rerr.RequestID, rerr.SessionID, rerr.Op, rerr.Code, rerr.Message),
		"rejected with missing ids":   ErrorCompletion("r5", "", "", CodeInvalidArgument, "session_id is missing"),
		"zero timing":                 {RequestID: "r6", SessionID: "s1", Op: OpSessionGet, Status: StatusOK, Session: &SessionInfo{SessionID: "s1", Status: "active"}},
		"destroyed session":           {RequestID: "r7", SessionID: "s1", Op: OpSessionDestroy, Status: StatusOK, Session: &SessionInfo{SessionID: "s1", Status: "destroyed"}},
		"exit by signal with cut out": {RequestID: "r8", SessionID: "s1", Op: OpExec, Status: StatusOK, ExitCode: 137, StderrBytes: 1 << 30, StderrObject: "gs://b/sessions/s1/results/r8/stderr"},
	} {
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemaCheck(t, "completion", data); err != nil {
			t.Errorf("%s: %v\n%.300s", name, err, data)
		}
	}
}

// The completion schema rejects completions that break the contract.
func TestCompletionSchemaRejects(t *testing.T) {
	good := func() map[string]any {
		var m map[string]any
		data, _ := json.Marshal(&Completion{RequestID: "r1", SessionID: "s1", Op: OpExec, Status: StatusOK, Stdout: "hi\n", StdoutBytes: 3})
		json.Unmarshal(data, &m)
		return m
	}
	for name, edit := range map[string]func(m map[string]any){
		"no request_id":       func(m map[string]any) { delete(m, "request_id") },
		"bad request_id":      func(m map[string]any) { m["request_id"] = "a b" },
		"unknown status":      func(m map[string]any) { m["status"] = "done" },
		"error without error": func(m map[string]any) { m["status"] = "error" },
		"ok with error":       func(m map[string]any) { m["error"] = map[string]any{"code": "INTERNAL", "message": "x"} },
		"unknown code": func(m map[string]any) {
			m["status"], m["error"] = "error", map[string]any{"code": "OOPS", "message": "x"}
		},
		"error without message":      func(m map[string]any) { m["status"], m["error"] = "error", map[string]any{"code": "INTERNAL"} },
		"exit code 256":              func(m map[string]any) { m["exit_code"] = 256 },
		"exit code -2":               func(m map[string]any) { m["exit_code"] = -2 },
		"fractional exit code":       func(m map[string]any) { m["exit_code"] = 1.5 },
		"unknown encoding":           func(m map[string]any) { m["stdout_encoding"] = "hex" },
		"base64 that is not":         func(m map[string]any) { m["stdout"], m["stdout_encoding"] = "not base64!", "base64" },
		"text output too long":       func(m map[string]any) { m["stderr"] = strings.Repeat("x", InlineOutputBytes+1) },
		"object not gs://":           func(m map[string]any) { m["stdout_object"] = "https://storage/x" },
		"negative size":              func(m map[string]any) { m["stdout_bytes"] = -1 },
		"no timing":                  func(m map[string]any) { delete(m, "timing") },
		"timing without total":       func(m map[string]any) { delete(m["timing"].(map[string]any), "total_seconds") },
		"bad timestamp":              func(m map[string]any) { m["timing"].(map[string]any)["accepted_at"] = "yesterday" },
		"session without status":     func(m map[string]any) { m["session"] = map[string]any{"session_id": "s1", "queued": 0} },
		"cold_start a string":        func(m map[string]any) { m["cold_start"] = "yes" },
		"exists on exec":             func(m map[string]any) { m["exists"] = false },
		"file.exists without exists": func(m map[string]any) { m["op"] = "file.exists" },
		"content base64 that is not": func(m map[string]any) { m["content"], m["content_encoding"] = "%%%", "base64" },
		"content text too long":      func(m map[string]any) { m["content"] = strings.Repeat("x", MaxInlineFileBytes+1) },
		"content_encoding utf-8":     func(m map[string]any) { m["content"], m["content_encoding"] = "x", "utf-8" },
		"negative file size":         func(m map[string]any) { m["size"] = -1 },
		"file without mode":          func(m map[string]any) { m["file"] = map[string]any{"path": "a", "type": "file", "size": 1} },
		"file of unknown type": func(m map[string]any) {
			m["file"] = map[string]any{"path": "a", "type": "pipe", "size": 1, "mode": "0644"}
		},
		"file mode of 3 digits": func(m map[string]any) {
			m["file"] = map[string]any{"path": "a", "type": "file", "size": 1, "mode": "644"}
		},
		"entry without path": func(m map[string]any) { m["entries"] = []any{map[string]any{"type": "dir", "size": 0, "mode": "0755"}} },
		"match line 0": func(m map[string]any) {
			m["matches"] = []any{map[string]any{"path": "a", "line_number": 0, "line": "x"}}
		},
		"match line too long": func(m map[string]any) {
			m["matches"] = []any{map[string]any{"path": "a", "line_number": 1, "line": strings.Repeat("x", MaxMatchLineBytes+1)}}
		},
		"pid 0":                  func(m map[string]any) { m["pid"] = 0 },
		"process without status": func(m map[string]any) { m["processes"] = []any{map[string]any{"pid": 1, "command": "x"}} },
		"process of unknown status": func(m map[string]any) {
			m["running"] = map[string]any{"pid": 1, "command": "x", "status": "zombie"}
		},
		"killed pid 0":              func(m map[string]any) { m["killed"] = []any{0} },
		"background pid 0":          func(m map[string]any) { m["background_pids"] = []any{0} },
		"download object not gs://": func(m map[string]any) { m["object"] = "/tmp/x" },
		"replacements -1":           func(m map[string]any) { m["replacements"] = -1 },
		"eof a string":              func(m map[string]any) { m["eof"] = "true" },
		"unknown FAILED": func(m map[string]any) {
			m["status"], m["error"] = "error", map[string]any{"code": "FAILED", "message": "x"}
		},
	} {
		m := good()
		data, _ := json.Marshal(m)
		if err := schemaCheck(t, "completion", data); err != nil {
			t.Fatalf("the unedited completion fails: %v", err)
		}
		edit(m)
		data, _ = json.Marshal(m)
		if schemaCheck(t, "completion", data) == nil {
			t.Errorf("%s: the schema accepts %s", name, data)
		}
	}
}

// schemaDoc is a schema as plain JSON, for looking inside it.
func schemaDoc(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// at walks a path of object keys.
func at(t *testing.T, m map[string]any, path ...string) any {
	t.Helper()
	var v any = m
	for _, k := range path {
		o, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: %s is not in an object", path, k)
		}
		if v, ok = o[k]; !ok {
			t.Fatalf("%v: no %s", path, k)
		}
	}
	return v
}

func keys(v any) []string {
	var out []string
	for k := range v.(map[string]any) {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// jsonKeys are the JSON names of a struct's fields.
func jsonKeys(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func number(t *testing.T, v any) float64 {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v is not a number", v)
	}
	return f
}

// The schemas say what the Go code says: the same fields, patterns, limits
// and enums.
func TestSchemasStateTheGoContract(t *testing.T) {
	req := schemaDoc(t, RequestSchema)
	props := at(t, req, "properties").(map[string]any)
	if got, want := keys(props), jsonKeys(reflect.TypeFor[Request]()); !slices.Equal(got, want) {
		t.Errorf("request schema properties %v, Go fields %v", got, want)
	}
	var decoded []string
	for _, f := range requestFields {
		decoded = append(decoded, f.name)
	}
	sort.Strings(decoded)
	if want := keys(props); !slices.Equal(decoded, want) {
		t.Errorf("ParseRequest reads fields %v, schema has %v", decoded, want)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"request_id pattern", at(t, props, "request_id", "pattern"), requestIDPattern.String()},
		{"session_id pattern", at(t, props, "session_id", "pattern"), sessionIDPattern.String()},
		{"env name pattern", at(t, props, "env", "propertyNames", "pattern"), envNamePattern.String()},
		{"env reserved prefix", at(t, props, "env", "propertyNames", "not", "pattern"), "^" + ReservedEnvPrefix},
		{"command maxLength", number(t, at(t, props, "command", "maxLength")), float64(MaxCommandBytes)},
		{"cwd maxLength", number(t, at(t, props, "cwd", "maxLength")), float64(MaxPathBytes)},
		{"env value maxLength", number(t, at(t, props, "env", "additionalProperties", "maxLength")), float64(MaxEnvBytes)},
		{"timeout maximum", number(t, at(t, props, "timeout_seconds", "maximum")), MaxTimeout.Seconds()},
		{"required", at(t, req, "required"), []any{"request_id", "session_id", "op"}},
		{"closed", at(t, req, "additionalProperties"), false},
		{"ops", at(t, props, "op", "enum"), anys(servedOps)},
		{"path maxLength", number(t, at(t, props, "path", "maxLength")), float64(MaxPathBytes)},
		{"path pattern", at(t, props, "path", "pattern"), at(t, props, "cwd", "pattern")},
		{"pattern maxLength", number(t, at(t, props, "pattern", "maxLength")), float64(MaxPatternBytes)},
		{"include maxLength", number(t, at(t, props, "include", "maxLength")), float64(MaxPatternBytes)},
		{"encoding enum", at(t, props, "encoding", "enum"), []any{string(EncodingUTF8), string(EncodingBase64)}},
		{"mode pattern", at(t, props, "mode", "pattern"), modePattern.String()},
		{"object pattern", at(t, props, "object", "pattern"), objectPattern.String()},
		{"length maximum", number(t, at(t, props, "length", "maximum")), float64(MaxInlineFileBytes)},
		{"offset maximum", number(t, at(t, props, "offset", "maximum")), float64(1<<63 - 1)},
		{"tail_bytes maximum", number(t, at(t, props, "tail_bytes", "maximum")), float64(1<<63 - 1)},
		{"max_depth maximum", number(t, at(t, props, "max_depth", "maximum")), float64(MaxDepth)},
		{"max_results maximum", number(t, at(t, props, "max_results", "maximum")), float64(MaxResults)},
		{"pid minimum", number(t, at(t, props, "pid", "minimum")), 1.0},
		{"pid maximum", number(t, at(t, props, "pid", "maximum")), float64(maxPID)},
		{"expected_count minimum", number(t, at(t, props, "expected_count", "minimum")), 1.0},
		{"expected_count maximum", number(t, at(t, props, "expected_count", "maximum")), float64(maxExpectedCount)},
		{"grace_seconds maximum", number(t, at(t, props, "grace_seconds", "maximum")), MaxTimeout.Seconds()},
		{"signal enum", at(t, props, "signal", "enum"), signalEnum()},
		{"file.find glob", at(t, opDef(t, req, OpFileFind), "properties", "pattern", "pattern"), globShape.String()},
		{"file.search include glob", at(t, opDef(t, req, OpFileSearch), "properties", "include", "pattern"), globShape.String()},
		{"file.write content maxLength", number(t, at(t, opDef(t, req, OpFileWrite), "else", "properties", "content", "maxLength")), float64(MaxInlineFileBytes)},
		{"file.write base64 maxLength", number(t, at(t, opDef(t, req, OpFileWrite), "then", "properties", "content", "maxLength")), float64(base64.StdEncoding.EncodedLen(MaxInlineFileBytes))},
		{"process.write content maxLength", number(t, at(t, opDef(t, req, OpProcessWrite), "else", "properties", "content", "maxLength")), float64(MaxProcessWriteBytes)},
		{"process.write base64 maxLength", number(t, at(t, opDef(t, req, OpProcessWrite), "then", "properties", "content", "maxLength")), float64(base64.StdEncoding.EncodedLen(MaxProcessWriteBytes))},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: schema says %v, Go says %v", c.name, c.got, c.want)
		}
	}
	desc := at(t, req, "description").(string)
	for _, limit := range []int{MaxRequestBytes} {
		if !strings.Contains(desc, strconv.Itoa(limit)) {
			t.Errorf("request schema description does not state the limit %d", limit)
		}
	}
	for _, d := range []struct {
		field string
		says  []string
	}{
		{"timeout_seconds", []string{strconv.Itoa(int(DefaultTimeout.Seconds())), strconv.Itoa(int(DefaultWaitTimeout.Seconds())), strconv.Itoa(int(MaxTimeout.Seconds()))}},
		{"grace_seconds", []string{"means " + strconv.Itoa(int(DefaultKillGrace.Seconds())), strconv.Itoa(int(MaxTimeout.Seconds()))}},
		{"max_results", []string{"means " + strconv.Itoa(DefaultMaxResults), strconv.Itoa(MaxResults)}},
		{"length", []string{strconv.Itoa(MaxInlineFileBytes)}},
		{"content", []string{strconv.Itoa(MaxInlineFileBytes), strconv.Itoa(MaxProcessWriteBytes), "RESOURCE_EXHAUSTED", "file.upload"}},
		{"pattern", []string{"RE2", "'**'", strconv.Itoa(MaxPatternBytes)}},
		{"tty", []string{"NOT_SUPPORTED", ttyMessage}},
		{"path", []string{strconv.Itoa(MaxPathBytes)}},
	} {
		desc := at(t, props, d.field, "description").(string)
		for _, w := range d.says {
			if !strings.Contains(desc, w) {
				t.Errorf("%s description does not say %q", d.field, w)
			}
		}
	}
	if base := at(t, req, "allOf").([]any)[len(servedOps)].(map[string]any); !reflect.DeepEqual(at(t, base, "then", "properties", "content", "pattern"), base64Pattern.String()) {
		t.Errorf("base64 content pattern %v, Go's %s", at(t, base, "then", "properties", "content", "pattern"), base64Pattern)
	}
	checkOpDefs(t, req)

	comp := schemaDoc(t, CompletionSchema)
	cprops := at(t, comp, "properties").(map[string]any)
	defs := at(t, comp, "$defs").(map[string]any)
	for _, c := range []struct {
		name   string
		schema any
		typ    reflect.Type
	}{
		{"completion", cprops, reflect.TypeFor[Completion]()},
		{"error", at(t, defs, "error", "properties"), reflect.TypeFor[Error]()},
		{"session", at(t, defs, "session", "properties"), reflect.TypeFor[SessionInfo]()},
		{"timing", at(t, defs, "timing", "properties"), reflect.TypeFor[Timing]()},
		{"file_info", at(t, defs, "file_info", "properties"), reflect.TypeFor[FileInfo]()},
		{"match", at(t, defs, "match", "properties"), reflect.TypeFor[Match]()},
		{"process_info", at(t, defs, "process_info", "properties"), reflect.TypeFor[ProcessInfo]()},
	} {
		if got, want := keys(c.schema), jsonKeys(c.typ); !slices.Equal(got, want) {
			t.Errorf("%s schema properties %v, Go fields %v", c.name, got, want)
		}
	}
	if got, want := at(t, defs, "error", "properties", "code", "enum"), errorCodes(t); !reflect.DeepEqual(got, want) {
		t.Errorf("error codes: schema %v, api.go %v", got, want)
	}
	if got := at(t, cprops, "status", "enum"); !reflect.DeepEqual(got, []any{string(StatusOK), string(StatusError)}) {
		t.Errorf("status enum %v", got)
	}
	for _, f := range []string{"stdout_encoding", "stderr_encoding", "content_encoding"} {
		if got := at(t, cprops, f, "enum"); !reflect.DeepEqual(got, []any{string(EncodingBase64)}) {
			t.Errorf("%s enum %v", f, got)
		}
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"file types", at(t, defs, "file_info", "properties", "type", "enum"), anys([]FileType{FileTypeFile, FileTypeDir, FileTypeSymlink, FileTypeOther})},
		{"process states", at(t, defs, "process_info", "properties", "status", "enum"), anys([]ProcessStatus{ProcessRunning, ProcessExited, ProcessKilled, ProcessLost})},
		{"match line maxLength", number(t, at(t, defs, "match", "properties", "line", "maxLength")), float64(MaxMatchLineBytes)},
		{"entries maxItems", number(t, at(t, cprops, "entries", "maxItems")), float64(MaxResults)},
		{"matches maxItems", number(t, at(t, cprops, "matches", "maxItems")), float64(MaxResults)},
		{"mode pattern", at(t, defs, "file_info", "properties", "mode", "pattern"), "^[0-7]{4}$"},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: schema says %v, Go says %v", c.name, c.got, c.want)
		}
	}
	content := at(t, comp, "allOf").([]any)[3].(map[string]any)
	if got := number(t, at(t, content, "else", "properties", "content", "maxLength")); got != MaxInlineFileBytes {
		t.Errorf("text content maxLength %v, MaxInlineFileBytes %d", got, MaxInlineFileBytes)
	}
	if got := number(t, at(t, content, "then", "properties", "content", "maxLength")); got != float64(base64.StdEncoding.EncodedLen(MaxInlineFileBytes)) {
		t.Errorf("base64 content maxLength %v", got)
	}
	if got := at(t, cprops, "request_id", "pattern"); got != requestIDPattern.String() {
		t.Errorf("completion request_id pattern %v", got)
	}
	if got := number(t, at(t, cprops, "session_id", "maxLength")); got != maxErrSessionID {
		t.Errorf("completion session_id maxLength %v, RequestError keeps %d", got, maxErrSessionID)
	}
	if got := number(t, at(t, cprops, "op", "maxLength")); got != maxErrOp {
		t.Errorf("completion op maxLength %v, RequestError keeps %d", got, maxErrOp)
	}
	outputs := at(t, comp, "allOf").([]any)[1].(map[string]any)
	if got := number(t, at(t, outputs, "else", "properties", "stdout", "maxLength")); got != InlineOutputBytes {
		t.Errorf("text stdout maxLength %v, InlineOutputBytes %d", got, InlineOutputBytes)
	}
	if got := number(t, at(t, outputs, "then", "properties", "stdout", "maxLength")); got != float64(base64.StdEncoding.EncodedLen(InlineOutputBytes)) {
		t.Errorf("base64 stdout maxLength %v", got)
	}
}

// errorCodes are the ErrorCode constants of api.go, in order.
func errorCodes(t *testing.T) []any {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "ErrorCode" {
				continue
			}
			v, err := strconv.Unquote(vs.Values[0].(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		t.Fatal("no ErrorCode constants in api.go")
	}
	return out
}

// anys turns a list of strings into JSON's []any.
func anys[S ~[]E, E ~string](list S) []any {
	var out []any
	for _, v := range list {
		out = append(out, string(v))
	}
	return out
}

// signalEnum is what the schema must allow as signal.
func signalEnum() []any {
	out := anys(killSignals)
	for _, s := range killSignals {
		out = append(out, "SIG"+s)
	}
	return out
}

// opDef is the request schema's definition of op.
func opDef(t *testing.T, req map[string]any, op Op) map[string]any {
	t.Helper()
	return at(t, req, "$defs", string(op)).(map[string]any)
}

// The request schema applies one definition per op, which allows exactly
// the fields the op takes and requires what Go requires.
func checkOpDefs(t *testing.T, req map[string]any) {
	t.Helper()
	allOf := at(t, req, "allOf").([]any)
	if len(allOf) != len(servedOps)+1 {
		t.Fatalf("request schema allOf has %d entries, want one per op and the base64 rule", len(allOf))
	}
	for i, op := range servedOps {
		rule := allOf[i].(map[string]any)
		if got := at(t, rule, "if", "properties", "op", "const"); got != string(op) {
			t.Errorf("allOf[%d] is for op %v, want %s", i, got, op)
		}
		if got := at(t, rule, "then", "$ref"); got != "#/$defs/"+string(op) {
			t.Errorf("allOf[%d] refers to %v", i, got)
		}
		want := anys(append(slices.Clone(commonFields), opFields[op]...))
		if got := at(t, opDef(t, req, op), "propertyNames", "enum"); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: schema allows fields %v, Go %v", op, got, want)
		}
	}
	if got, want := len(at(t, req, "$defs").(map[string]any)), len(servedOps); got != want {
		t.Errorf("request schema has %d definitions, want %d (one per op)", got, want)
	}
}

// Every op's own fields are in Request, each once.
func TestOpFieldsAreRequestFields(t *testing.T) {
	if len(opFields) != len(servedOps) {
		t.Fatalf("opFields has %d ops, servedOps %d", len(opFields), len(servedOps))
	}
	for _, op := range servedOps {
		seen := map[string]bool{}
		for _, f := range opFields[op] {
			if _, ok := fieldsByName[f]; !ok || seen[f] || slices.Contains(commonFields, f) {
				t.Errorf("%s: field %q is unknown, common or listed twice", op, f)
			}
			seen[f] = true
		}
	}
	for _, f := range requestFields {
		used := slices.Contains(commonFields, f.name)
		for _, op := range servedOps {
			used = used || takesField(op, f.name)
		}
		if !used {
			t.Errorf("no op takes field %s", f.name)
		}
	}
}
