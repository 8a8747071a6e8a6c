package api

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestControlOp(t *testing.T) {
	control := map[Op]bool{OpProcessList: true, OpProcessKill: true, OpProcessLogs: true, OpProcessWait: true, OpProcessWrite: true, OpShellView: true}
	for _, op := range servedOps {
		if ControlOp(op) != control[op] {
			t.Errorf("ControlOp(%s) = %v", op, !control[op])
		}
	}
	for _, op := range []Op{"", "process.", "process.start", "shell.exec", "browser.open", "PROCESS.LIST"} {
		if ControlOp(op) {
			t.Errorf("ControlOp(%q) = true", op)
		}
	}
}

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*.py", "a.py", true},
		{"*.py", "src/a.py", false}, // the whole path, not the base name
		{"**/*.py", "a.py", true},
		{"**/*.py", "src/a.py", true},
		{"**/*.py", "src/x/y/a.py", true},
		{"**/*.py", "src/x/y/a.pyc", false},
		{"src/**", "src", true}, // "**" matches no name too
		{"src/**", "src/a", true},
		{"src/**", "src/a/b", true},
		{"src/**/test_*.go", "src/test_a.go", true},
		{"src/**/test_*.go", "src/p/q/test_a.go", true},
		{"src/**/test_*.go", "lib/src/test_a.go", false},
		{"**", "a/b/c", true},
		{"**/**/**/x", "x", true},
		{"**/**/**/x", "a/b/c/d/x", true},
		{"**/**/**/x", "a/b/c/d/y", false},
		{"a/*/c", "a/b/c", true},
		{"a/*/c", "a/b/b/c", false},
		{"?.txt", "a.txt", true},
		{"?.txt", "ab.txt", false},
		{"[a-c]*", "banana", true},
		{"[^a-c]*", "banana", false},
		{`\*`, "*", true},
		{`\*`, "a", false},
		{"*", ".hidden", true}, // hidden decides, not the glob
		{"a**b", "axxb", true}, // a '**' inside a segment is a '*'
		{"a**b", "ax/xb", false},
	} {
		got, err := MatchGlob(tc.pattern, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("MatchGlob(%q, %q) = %v, %v; want %v", tc.pattern, tc.name, got, err, tc.want)
		}
	}
	for _, p := range []string{"", "/a", "a/", "a//b", "[", "a/[b-", `x\`, "[]", "[^]"} {
		if _, err := MatchGlob(p, "a"); err == nil {
			t.Errorf("MatchGlob(%q) takes a malformed glob", p)
		}
		if ValidGlob(p) == nil {
			t.Errorf("ValidGlob(%q) = nil", p)
		}
	}
	// Many '**' against a deep path stays quick.
	deep := strings.Repeat("d/", 2000) + "x"
	start := time.Now()
	if ok, _ := MatchGlob(strings.Repeat("**/", 1000)+"y", deep); ok {
		t.Error("matched")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("MatchGlob took %v", d)
	}
}

func TestParseSignal(t *testing.T) {
	for name, want := range map[string]int{"TERM": 15, "SIGTERM": 15, "INT": 2, "SIGINT": 2, "HUP": 1, "KILL": 9, "SIGKILL": 9, "QUIT": 3, "USR1": 10, "SIGUSR1": 10, "USR2": 12, "SIGUSR2": 12} {
		got, err := ParseSignal(name)
		if err != nil || got != syscall.Signal(want) {
			t.Errorf("ParseSignal(%q) = %v, %v; want %d", name, got, err, want)
		}
	}
	for _, name := range []string{"", "term", "SIG", "SIGSIGTERM", "SEGV", "15", " TERM", "TERM "} {
		if _, err := ParseSignal(name); err == nil {
			t.Errorf("ParseSignal(%q) takes it", name)
		}
	}
	for _, s := range killSignals {
		if got, _ := ParseSignal(s); SignalName(got) != s {
			t.Errorf("SignalName(ParseSignal(%s)) = %s", s, SignalName(got))
		}
	}
	if SignalName(syscall.Signal(11)) != "SEGV" || SignalName(syscall.Signal(40)) != "40" || SignalName(0) != "0" {
		t.Errorf("SignalName: %s %s %s", SignalName(11), SignalName(40), SignalName(0))
	}
	if r := (Request{}); r.KillSignal() != syscall.Signal(15) {
		t.Errorf("default KillSignal = %v", r.KillSignal())
	}
	if r := (Request{Signal: "SIGUSR2"}); r.KillSignal() != syscall.Signal(12) {
		t.Errorf("KillSignal = %v", r.KillSignal())
	}
}

func TestParseAndFormatMode(t *testing.T) {
	for s, want := range map[string]fs.FileMode{
		"0644": 0o644, "644": 0o644, "755": 0o755, "0": 0, "7": 0o7, "00": 0, "0777": 0o777,
		"4755": fs.ModeSetuid | 0o755, "02750": fs.ModeSetgid | 0o750, "1777": fs.ModeSticky | 0o777,
		"07777": fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky | 0o777,
	} {
		got, err := ParseMode(s)
		if err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "8", "0o644", "0x1ff", "-644", "17777", "12345", "644 ", "rwxr-xr-x", "000000"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) takes it", s)
		}
	}
	for m, want := range map[fs.FileMode]string{
		0o644: "0644", 0o7: "0007", fs.ModeDir | 0o755: "0755", fs.ModeSetuid | 0o755: "4755",
		fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky | 0o777: "7777", fs.ModeSymlink | 0o777: "0777",
	} {
		if got := FormatMode(m); got != want {
			t.Errorf("FormatMode(%v) = %s, want %s", m, got, want)
		}
		if back, err := ParseMode(want); err != nil || back != m&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) {
			t.Errorf("ParseMode(FormatMode(%v)) = %v, %v", m, back, err)
		}
	}
}

func TestRequestContent(t *testing.T) {
	for _, tc := range []struct {
		content  string
		encoding Encoding
		want     []byte
		err      string
	}{
		{"héllo\n", "", []byte("héllo\n"), ""},
		{"héllo\n", EncodingUTF8, []byte("héllo\n"), ""},
		{"", EncodingBase64, []byte{}, ""},
		{"AP8=", EncodingBase64, []byte{0, 0xff}, ""},
		{"AP8", EncodingBase64, nil, "decode content"},
		{"AP8=\n", EncodingBase64, nil, "no line breaks"},
		{"x", "hex", nil, `unknown encoding "hex"`},
	} {
		r := Request{EncodedContent: tc.content, Encoding: tc.encoding}
		got, err := r.Content()
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Content(%q, %q) error %v, want %q", tc.content, tc.encoding, err, tc.err)
		case tc.err == "" && (err != nil || !bytes.Equal(got, tc.want)):
			t.Errorf("Content(%q, %q) = %q, %v; want %q", tc.content, tc.encoding, got, err, tc.want)
		}
	}
}

func TestCompletionContentData(t *testing.T) {
	raw := []byte{0, 0xff, 'a'}
	c := Completion{}
	c.Content, c.ContentEncoding = InlineOutput(raw)
	if got, err := c.ContentData(); err != nil || !bytes.Equal(got, raw) {
		t.Errorf("ContentData = %q, %v", got, err)
	}
	c = Completion{Content: "%%", ContentEncoding: EncodingBase64}
	if _, err := c.ContentData(); err == nil || !strings.Contains(err.Error(), "decode content") {
		t.Errorf("ContentData = %v, want a decode error", err)
	}
}

func TestDefaults(t *testing.T) {
	if got := (&Request{Op: OpProcessWait}).Timeout(); got != DefaultWaitTimeout {
		t.Errorf("process.wait default timeout %v", got)
	}
	if got := (&Request{Op: OpProcessWait, TimeoutSeconds: 2}).Timeout(); got != 2*time.Second {
		t.Errorf("process.wait timeout %v", got)
	}
	if got := (&Request{Op: OpExec}).Timeout(); got != DefaultTimeout {
		t.Errorf("exec default timeout %v", got)
	}
	for secs, want := range map[float64]time.Duration{0: DefaultKillGrace, 0.25: 250 * time.Millisecond, 1e-12: time.Nanosecond} {
		if got := (&Request{GraceSeconds: secs}).KillGrace(); got != want {
			t.Errorf("KillGrace(%v) = %v, want %v", secs, got, want)
		}
	}
	for n, want := range map[int]int{0: DefaultMaxResults, 1: 1, MaxResults: MaxResults} {
		if got := (&Request{MaxResults: n}).ResultLimit(); got != want {
			t.Errorf("ResultLimit(%d) = %d", n, got)
		}
	}
	for _, tc := range []struct {
		r    Request
		want int
	}{{Request{}, 1}, {Request{ExpectedCount: 3}, 3}, {Request{ReplaceAll: true}, 0}} {
		if got := tc.r.Occurrences(); got != tc.want {
			t.Errorf("Occurrences(%+v) = %d, want %d", tc.r, got, tc.want)
		}
	}
	for n, want := range map[int64]int64{0: MaxInlineFileBytes, 10: 10, MaxInlineFileBytes: MaxInlineFileBytes} {
		if got := (&Request{Length: n}).ReadLength(); got != want {
			t.Errorf("ReadLength(%d) = %d", n, got)
		}
	}
}

func TestParseInteger(t *testing.T) {
	for _, tc := range []struct {
		lit            string
		n              int64
		isInt, inRange bool
	}{
		{"0", 0, true, true}, {"-0", 0, true, true}, {"0.000", 0, true, true}, {"0e999999999999", 0, true, true},
		{"42", 42, true, true}, {"42.0", 42, true, true}, {"4.2e1", 42, true, true}, {"4200e-2", 42, true, true}, {"4.2E+1", 42, true, true},
		{"-7", -7, true, true}, {"1.5", 0, false, false}, {"1e-5", 0, false, false}, {"10e-2", 0, false, false},
		{"9223372036854775807", math.MaxInt64, true, true}, {"-9223372036854775808", math.MinInt64, true, true},
		{"9223372036854775808", 0, true, false}, {"-9223372036854775809", 0, true, false},
		{"1e19", 0, true, false}, {"1e18", 1e18, true, true}, {"1e400", 0, true, false}, {"1e9999999999", 0, true, false},
		{"1e-9999999999", 0, false, false}, {"123456789012345678901234567890e-20", 0, false, false},
		{"123456789000000000000000000000e-20", 1234567890, true, true},
	} {
		n, isInt, inRange := parseInteger(tc.lit)
		if n != tc.n || isInt != tc.isInt || inRange != tc.inRange {
			t.Errorf("parseInteger(%s) = %d, %v, %v; want %d, %v, %v", tc.lit, n, isInt, inRange, tc.n, tc.isInt, tc.inRange)
		}
	}
}

// Validate's checks of every op stay inside its message bounds, whatever
// the sizes involved.
func TestLongInputsStayClipped(t *testing.T) {
	long := strings.Repeat("é", 3000)
	for _, r := range []Request{
		{RequestID: "r", SessionID: "s", Op: OpFileFind, Pattern: long + "["},
		{RequestID: "r", SessionID: "s", Op: OpFileSearch, Pattern: long + "("},
		{RequestID: "r", SessionID: "s", Op: OpFileSearch, Pattern: "x", Include: "/" + long},
		{RequestID: "r", SessionID: "s", Op: OpFileUpload, Path: "a", Object: "gs://" + long},
		{RequestID: "r", SessionID: "s", Op: OpFileWrite, Path: "a", Mode: long},
		{RequestID: "r", SessionID: "s", Op: OpFileRead, Path: "a", Encoding: Encoding(long)},
		{RequestID: "r", SessionID: "s", Op: OpProcessKill, PID: 1, Signal: long},
		{RequestID: "r", SessionID: "s", Op: OpProcessKill, Pattern: "(" + long},
	} {
		var rerr *RequestError
		if err := r.Validate(); !errors.As(err, &rerr) {
			t.Fatalf("Validate(%.80v) = %v", r, err)
		}
		checkErrorBounds(t, rerr)
	}
}
