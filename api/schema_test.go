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
		"error without message":  func(m map[string]any) { m["status"], m["error"] = "error", map[string]any{"code": "INTERNAL"} },
		"exit code 256":          func(m map[string]any) { m["exit_code"] = 256 },
		"exit code -2":           func(m map[string]any) { m["exit_code"] = -2 },
		"fractional exit code":   func(m map[string]any) { m["exit_code"] = 1.5 },
		"unknown encoding":       func(m map[string]any) { m["stdout_encoding"] = "hex" },
		"base64 that is not":     func(m map[string]any) { m["stdout"], m["stdout_encoding"] = "not base64!", "base64" },
		"text output too long":   func(m map[string]any) { m["stderr"] = strings.Repeat("x", InlineOutputBytes+1) },
		"object not gs://":       func(m map[string]any) { m["stdout_object"] = "https://storage/x" },
		"negative size":          func(m map[string]any) { m["stdout_bytes"] = -1 },
		"no timing":              func(m map[string]any) { delete(m, "timing") },
		"timing without total":   func(m map[string]any) { delete(m["timing"].(map[string]any), "total_seconds") },
		"bad timestamp":          func(m map[string]any) { m["timing"].(map[string]any)["accepted_at"] = "yesterday" },
		"session without status": func(m map[string]any) { m["session"] = map[string]any{"session_id": "s1", "queued": 0} },
		"cold_start a string":    func(m map[string]any) { m["cold_start"] = "yes" },
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
	for k := range requestFields {
		decoded = append(decoded, k)
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
		{"ops", at(t, props, "op", "enum"), []any{string(OpExec), string(OpSessionCreate), string(OpSessionGet), string(OpSessionDestroy)}},
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
	if d := at(t, props, "timeout_seconds", "description").(string); !strings.Contains(d, strconv.Itoa(int(DefaultTimeout.Seconds()))) {
		t.Errorf("timeout_seconds description does not state the default %v", DefaultTimeout)
	}

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
	if got := at(t, cprops, "stdout_encoding", "enum"); !reflect.DeepEqual(got, []any{string(EncodingBase64)}) {
		t.Errorf("encoding enum %v", got)
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
