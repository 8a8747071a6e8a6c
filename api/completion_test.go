package api

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// roundTrip puts output in a completion as the host does, sends the
// completion through JSON and reads the output back.
func roundTrip(t testing.TB, stdout, stderr []byte) (gotOut, gotErr []byte, c Completion) {
	t.Helper()
	in := Completion{RequestID: "r1", SessionID: "s1", Op: OpExec, Status: StatusOK,
		StdoutBytes: int64(len(stdout)), StderrBytes: int64(len(stderr))}
	in.Stdout, in.StdoutEncoding = InlineOutput(stdout)
	in.Stderr, in.StderrEncoding = InlineOutput(stderr)
	data, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if gotOut, err = c.StdoutData(); err != nil {
		t.Fatal(err)
	}
	if gotErr, err = c.StderrData(); err != nil {
		t.Fatal(err)
	}
	return gotOut, gotErr, c
}

func TestInlineOutputRoundTrip(t *testing.T) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	for _, tc := range []struct {
		name   string
		out    []byte
		base64 bool
	}{
		{"empty", nil, false},
		{"ASCII", []byte("hello\nworld\n"), false},
		{"UTF-8", []byte("héllo ✓ 😀\n"), false},
		{"control characters", []byte("a\x00b\x1b[31mred\x1b[0m\r\n"), false},
		{"every byte", binary, true},
		{"one invalid byte", []byte("caf\xe9\n"), true},
		{"cut inside a rune", []byte("✓")[:2], true},
		{"lone surrogate encoded", []byte("\xed\xa0\x80"), true},
		{"NUL only", []byte{0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, enc := InlineOutput(tc.out)
			if (enc == EncodingBase64) != tc.base64 {
				t.Fatalf("encoding = %q, want base64 %v", enc, tc.base64)
			}
			if !tc.base64 && text != string(tc.out) {
				t.Fatalf("text = %q, want the output itself", text)
			}
			gotOut, gotErr, c := roundTrip(t, tc.out, tc.out)
			if !bytes.Equal(gotOut, tc.out) || !bytes.Equal(gotErr, tc.out) {
				t.Fatalf("round trip: stdout %q, stderr %q, want %q", gotOut, gotErr, tc.out)
			}
			data, _ := json.Marshal(&c)
			if err := schemaCheck(t, "completion", data); err != nil {
				t.Fatalf("schema: %v", err)
			}
		})
	}
}

func FuzzInlineOutput(f *testing.F) {
	f.Add([]byte("hello\n"), []byte{0xff})
	f.Add([]byte{}, []byte("é"))
	f.Fuzz(func(t *testing.T, stdout, stderr []byte) {
		gotOut, gotErr, _ := roundTrip(t, stdout, stderr)
		if !bytes.Equal(gotOut, stdout) || !bytes.Equal(gotErr, stderr) {
			t.Fatalf("round trip of %q, %q gave %q, %q", stdout, stderr, gotOut, gotErr)
		}
	})
}

func TestOutputDataErrors(t *testing.T) {
	c := Completion{Stdout: "not base64!", StdoutEncoding: EncodingBase64, Stderr: "x", StderrEncoding: "hex"}
	if _, err := c.StdoutData(); err == nil || !strings.Contains(err.Error(), "decode stdout") {
		t.Errorf("StdoutData = %v, want a decode error", err)
	}
	if _, err := c.StderrData(); err == nil || !strings.Contains(err.Error(), `unknown encoding "hex"`) {
		t.Errorf("StderrData = %v, want an unknown encoding error", err)
	}
}

func TestAttributes(t *testing.T) {
	r := Request{RequestID: "r1", SessionID: "s1", Op: OpExec, Command: "ls"}
	if got, want := r.Attributes(), map[string]string{"request_id": "r1", "session_id": "s1", "op": "exec"}; !maps.Equal(got, want) {
		t.Errorf("request attributes %v, want %v", got, want)
	}
	c := ErrorCompletion("r1", "s1", OpExec, CodeNotFound, "no such session")
	if got, want := c.Attributes(), map[string]string{"request_id": "r1", "session_id": "s1", "op": "exec", "status": "error"}; !maps.Equal(got, want) {
		t.Errorf("completion attributes %v, want %v", got, want)
	}
}

func TestErrorCompletionAndFail(t *testing.T) {
	c := ErrorCompletion("r1", "s1", OpSessionGet, CodeNotFound, "session s1 does not exist")
	if c.Status != StatusError || c.ExitCode != -1 || c.Error == nil || c.Error.Code != CodeNotFound || c.Error.Message != "session s1 does not exist" {
		t.Fatalf("ErrorCompletion = %+v", c)
	}
	// A command that ran keeps its own exit code.
	ran := &Completion{RequestID: "r2", SessionID: "s1", Op: OpExec, Status: StatusOK, ExitCode: 124}
	ran.Fail(CodeTimeout, "timed out")
	if ran.Status != StatusError || ran.ExitCode != 124 || ran.Error.Code != CodeTimeout {
		t.Fatalf("Fail = %+v", ran)
	}
}

// A completion survives JSON unchanged: what sandrun records is what the
// caller reads.
func TestCompletionJSONRoundTrip(t *testing.T) {
	in := fullCompletion()
	in.Fail(CodeInternal, "x")
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Completion
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(&out)
	if !bytes.Equal(data, again) {
		t.Fatalf("round trip changed the completion:\n%s\n%s", data, again)
	}
}

// Completions of every op survive JSON unchanged, exists: false included,
// and are read back exactly by a strict reader.
func TestOpCompletionsJSONRoundTrip(t *testing.T) {
	for name, in := range opCompletions() {
		data, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out Completion
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, _ := json.Marshal(&out)
		if !bytes.Equal(data, again) {
			t.Errorf("%s: round trip changed the completion:\n%s\n%s", name, data, again)
		}
		if in.Op == OpFileExists && in.Status == StatusOK && !bytes.Contains(data, []byte(`"exists":`)) {
			t.Errorf("%s: no exists in %s", name, data)
		}
		if in.Op != OpFileExists && bytes.Contains(data, []byte(`"exists"`)) {
			t.Errorf("%s: exists in %s", name, data)
		}
	}
}
