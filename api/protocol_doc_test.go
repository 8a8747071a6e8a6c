package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// protocolDoc is the backend author's page, which this package's tests keep
// true.
const protocolDoc = "../docs/protocol.md"

// docBlock is a fenced code block of the protocol page.
type docBlock struct {
	line   int    // of the opening fence
	lang   string // after the fence
	marker string // of the `<!-- example: ... -->` line just before, if any
	body   string
}

func readDocBlocks(t *testing.T) []docBlock {
	t.Helper()
	data, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks []docBlock
		cur    *docBlock
		body   strings.Builder
		prev   string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &docBlock{line: n, lang: strings.TrimPrefix(line, "```")}
			if m, ok := strings.CutPrefix(prev, "<!-- example: "); ok {
				cur.marker = strings.TrimSuffix(m, " -->")
			}
			body.Reset()
		case cur != nil && line == "```":
			cur.body = body.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(line + "\n")
		}
		prev = line
	}
	if cur != nil {
		t.Fatalf("%s:%d: unclosed code block", protocolDoc, cur.line)
	}
	return blocks
}

// Every JSON, Python and Go example of the protocol page is checked: JSON
// against the schemas and the Go types, programs against the files that
// the build compiles.
func TestProtocolDocExamples(t *testing.T) {
	var lastRequest *Request
	counts := map[string]int{}
	for _, b := range readDocBlocks(t) {
		where := fmt.Sprintf("%s:%d", protocolDoc, b.line)
		if b.lang != "json" && b.lang != "python" && b.lang != "go" {
			continue
		}
		kind, _, _ := strings.Cut(b.marker, " ")
		counts[kind]++
		switch kind {
		case "request":
			req, err := ParseRequest([]byte(b.body))
			if err != nil {
				t.Errorf("%s: ParseRequest: %v", where, err)
			}
			if err := schemaCheck(t, "request", []byte(b.body)); err != nil {
				t.Errorf("%s: request schema: %v", where, err)
			}
			lastRequest = &req
		case "invalid":
			req, err := ParseRequest([]byte(b.body))
			var rerr *RequestError
			if !errors.As(err, &rerr) || !rerr.Answerable() {
				t.Errorf("%s: an invalid request example that ParseRequest takes as %v", where, err)
			}
			if schemaCheck(t, "request", []byte(b.body)) == nil {
				t.Errorf("%s: the request schema accepts an invalid request example", where)
			}
			req.RequestID, req.SessionID, req.Op = rerr.RequestID, rerr.SessionID, rerr.Op
			lastRequest = &req
		case "completion":
			c := checkDocCompletion(t, where, b.body)
			// A completion shown after a request answers it.
			if lastRequest != nil && c != nil {
				if c.RequestID != lastRequest.RequestID || c.SessionID != lastRequest.SessionID || c.Op != lastRequest.Op {
					t.Errorf("%s: completion of %s/%s/%s follows request %s/%s/%s", where,
						c.RequestID, c.SessionID, c.Op, lastRequest.RequestID, lastRequest.SessionID, lastRequest.Op)
				}
				lastRequest = nil
			}
		case "file":
			path := strings.TrimPrefix(b.marker, "file ")
			want, err := os.ReadFile("../" + path)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if b.body != string(want) {
				t.Errorf("%s: the example differs from %s, which the build checks; copy the file into the page", where, path)
			}
		default:
			t.Errorf("%s: a %s block without an `<!-- example: request|invalid request|completion|file PATH -->` line before it", where, b.lang)
		}
	}
	for _, kind := range []string{"request", "invalid", "completion", "file"} {
		if counts[kind] == 0 {
			t.Errorf("%s has no %s example", protocolDoc, kind)
		}
	}
}

// checkDocCompletion checks a completion example against the schema and the
// Go type, which must read it exactly and write it back the same.
func checkDocCompletion(t *testing.T, where, body string) *Completion {
	t.Helper()
	if err := schemaCheck(t, "completion", []byte(body)); err != nil {
		t.Errorf("%s: completion schema: %v", where, err)
	}
	var c Completion
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Errorf("%s: decode as api.Completion: %v", where, err)
		return nil
	}
	again, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	var shown, written any
	json.Unmarshal([]byte(body), &shown)
	json.Unmarshal(again, &written)
	if !reflect.DeepEqual(shown, written) {
		t.Errorf("%s: sandrun would write this completion as\n%s", where, again)
	}
	// Output shown whole is as long as the completion says (process.logs
	// and shell.view show a part of a longer log).
	if c.Op == OpProcessLogs || c.Op == OpShellView {
		return &c
	}
	if b, err := c.ContentData(); err != nil {
		t.Errorf("%s: %v", where, err)
	} else if c.EOF && c.Size < int64(len(b)) {
		t.Errorf("%s: content is %d bytes, more than the file's size %d", where, len(b), c.Size)
	}
	for _, o := range []struct {
		name   string
		data   func() ([]byte, error)
		size   int64
		object string
	}{{"stdout", c.StdoutData, c.StdoutBytes, c.StdoutObject}, {"stderr", c.StderrData, c.StderrBytes, c.StderrObject}} {
		b, err := o.data()
		if err != nil {
			t.Errorf("%s: %v", where, err)
		} else if o.object == "" && int64(len(b)) != o.size {
			t.Errorf("%s: %s is %d bytes, %s_bytes says %d", where, o.name, len(b), o.name, o.size)
		}
	}
	return &c
}

// The protocol page names every code, reason, op and limit of the Go
// contract, and what a backend needs to reach sandrun.
func TestProtocolDocCoversContract(t *testing.T) {
	data, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	var want []string
	for _, c := range errorCodes(t) {
		want = append(want, "`"+c.(string)+"`")
	}
	for _, r := range []string{ReasonTooLarge, ReasonInvalidUTF8, ReasonNotARequest, ReasonInvalidRequestID, ReasonInvalidSessionID,
		ReasonInvalidOp, ReasonUnknownOp, ReasonNotSupported, ReasonInvalidField, ReasonAttributeMismatch} {
		want = append(want, "| `"+r+"` |")
	}
	for _, op := range servedOps {
		want = append(want, "### "+string(op))
	}
	for _, n := range []int{MaxRequestBytes, MaxCommandBytes, MaxEnvBytes, MaxPathBytes, InlineOutputBytes, int(DefaultTimeout.Seconds()), int(MaxTimeout.Seconds()),
		MaxInlineFileBytes, MaxProcessWriteBytes, MaxPatternBytes, MaxResults, DefaultMaxResults, MaxMatchLineBytes, MaxDepth} {
		want = append(want, strconv.Itoa(n))
	}
	for _, s := range killSignals {
		want = append(want, "`"+s+"`")
	}
	want = append(want, ttyMessage, "absent or 0 means "+strconv.Itoa(int(DefaultWaitTimeout.Seconds())), "absent or 0 means "+strconv.Itoa(int(DefaultKillGrace.Seconds())),
		"sessions/SESSION_ID/transfers/REQUEST_ID/NAME", "STORAGE_EMULATOR_HOST", "google-cloud-storage", "SANDRUN_BUCKET",
		"sessions/SESSION_ID/processes/", "`**`", "RE2", "control operation", "`lost`", "checkpoint", "HOME")
	want = append(want, ReservedEnvPrefix, sessionIDPattern.String(), envNamePattern.String(),
		"`"+AttrSessionID+"`", "`"+AttrRequestID+"`", "`"+AttrOp+"`", "`"+AttrStatus+"`", "`"+AttrTraceparent+"`",
		"ordering key = `session_id`", "PUBSUB_EMULATOR_HOST", "sandrun emulator", "sandrun dev",
		"enable_message_ordering=True", "ordering_key=", `attributes.session_id = `, "cloud.google.com/go/pubsub/v2",
		"De-duplicate by\n  `request_id`", "dead-letter topic", "`reason`", "**124**", "**128+n**", "**-1 when no command ran to an end**",
		"base64", "7 days")
	for _, w := range want {
		if !strings.Contains(doc, w) {
			t.Errorf("%s does not say %q", protocolDoc, w)
		}
	}
}

// The Python examples are at least valid Python, where Python is at hand.
func TestPythonExampleParses(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	for _, file := range []string{"examples/python/backend.py", "examples/python/transfer.py"} {
		out, err := exec.Command(py, "-c", "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])", file).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", file, err, out)
		}
	}
}
