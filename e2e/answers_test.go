package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
	"github.com/sandrun/sandrun/internal/session"
)

// TestEveryAnswerFits sends ordinary requests whose answers are over what a
// Firestore document and a completion message carry once JSON-escaped
// (issue 19): each answers ok, the Go client hands back the whole result
// from the completion's result object, the message itself stays within
// api.MaxCompletionBytes, and the host that answered serves the next
// request.
func TestEveryAnswerFits(t *testing.T) {
	w := start(t, options{})
	tp := w.subscribe(w.sys.Names.Completions)
	const s = "big-answers"
	long := strings.Repeat("d", 250)
	first := w.exec(s, `head -c 196608 /dev/zero > zeros
mkdir tree && cd tree && for i in $(seq 0 100); do mkdir d$i && (cd d$i && touch $(seq -f f%g 0 99)); done && cd ..
p=long; for i in $(seq 12); do p="$p/`+long+`"; done; mkdir -p "$p" && (cd "$p" && touch $(seq -f "`+strings.Repeat("f", 200)+`%g" 0 999))`)

	cases := []struct {
		name  string
		req   api.Request
		check func(*api.Completion) string
	}{
		{"file.read of 192 KiB of NUL", api.Request{Op: api.OpFileRead, Path: "zeros"}, func(c *api.Completion) string {
			b, err := c.ContentData()
			if err != nil || !bytes.Equal(b, make([]byte, 196608)) || !c.EOF {
				return "content is not the file's 196608 NUL bytes"
			}
			return ""
		}},
		{"recursive file.list of 10,201 entries", api.Request{Op: api.OpFileList, Path: "tree", Recursive: true, MaxResults: api.MaxResults}, func(c *api.Completion) string {
			if len(c.Entries) != api.MaxResults || !c.Truncated {
				return "not 10000 entries, truncated"
			}
			return ""
		}},
		{"file.find over long paths", api.Request{Op: api.OpFileFind, Path: "long", Pattern: "**/f*"}, func(c *api.Completion) string {
			if len(c.Entries) != api.DefaultMaxResults || len(c.Entries[0].Path) < 3000 {
				return "not 1000 long entries"
			}
			return ""
		}},
		{"exec printing 64 KiB of NUL to each stream", api.Request{Op: api.OpExec, Command: "head -c 65536 /dev/zero; head -c 65536 /dev/zero >&2"}, func(c *api.Completion) string {
			out, _ := c.StdoutData()
			errb, _ := c.StderrData()
			if !bytes.Equal(out, make([]byte, 65536)) || !bytes.Equal(errb, make([]byte, 65536)) || c.ExitCode != 0 {
				return "the streams are not 65536 NUL bytes each"
			}
			return ""
		}},
	}
	for _, tc := range cases {
		req := tc.req
		req.SessionID, req.RequestID = s, uuid.NewString()
		got := w.do(&req)
		if got.Status != api.StatusOK {
			t.Fatalf("%s: %s %+v", tc.name, got.Status, got.Error)
		}
		if got.ResultObject != "" {
			t.Errorf("%s: the client handed back the summary, not the whole completion", tc.name)
		}
		if msg := tc.check(got); msg != "" {
			t.Errorf("%s: %s", tc.name, msg)
		}
		if got.ExecutionID != first.ExecutionID {
			t.Errorf("%s: served by %s, not by the session's host %s", tc.name, got.ExecutionID, first.ExecutionID)
		}
		msgs := tp.waitFor(t, tc.name+"'s completion", 30*time.Second, func(ms []*pubsub.Message) bool { return len(byRequest(ms)[req.RequestID]) > 0 })
		data := byRequest(msgs)[req.RequestID][0].Data
		if len(data) > api.MaxCompletionBytes || !bytes.Contains(data, []byte(`"result_object":"gs://`)) {
			t.Errorf("%s: the message is %d bytes (limit %d), result object named: %v", tc.name, len(data), api.MaxCompletionBytes, bytes.Contains(data, []byte("result_object")))
		}
	}
	// The host is alive and keeps the session.
	if next := w.exec(s, "ls zeros"); next.ExecutionID != first.ExecutionID || next.Stdout != "zeros\n" {
		t.Fatalf("next request: %q on %s, want zeros on %s", next.Stdout, next.ExecutionID, first.ExecutionID)
	}
}

// TestSessionDestroyPrintsTheSession: `sandrun session destroy` says which
// session is gone instead of printing null (issue 19).
func TestSessionDestroyPrintsTheSession(t *testing.T) {
	w := start(t, options{})
	w.exec("cli-destroy", "true")
	out := runSandrun(t, w, "session", "destroy", "cli-destroy")
	var got api.SessionInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.SessionID != "cli-destroy" || got.Status != session.StatusDestroyed {
		t.Fatalf("session destroy printed %q", out)
	}
}

// TestOutputIsBounded: a command printing 3 GiB answers ok; its object
// keeps the first api.MaxOutputBytes, the completion says the rest was cut
// and counts it, and the host serves on (issue 19). Cloud Storage is on
// disk, as sandrun dev keeps it: in memory, taking the object stalls the
// local cloud past the host's lease.
func TestOutputIsBounded(t *testing.T) {
	w := start(t, options{storageDir: t.TempDir()})
	const s = "bounded-output"
	got := w.do(&api.Request{SessionID: s, Op: api.OpExec, Command: "yes | head -c 3G", TimeoutSeconds: 300})
	if got.Status != api.StatusOK || got.ExitCode != 0 {
		t.Fatalf("yes | head -c 3G: %s %+v exit %d", got.Status, got.Error, got.ExitCode)
	}
	if got.StdoutBytes != 3<<30 || !got.StdoutCut || got.StderrCut || got.StdoutObject == "" || len(got.Stdout) != api.InlineOutputBytes {
		t.Fatalf("stdout: %d bytes, cut %v, object %q, %d inline; stderr cut %v", got.StdoutBytes, got.StdoutCut, got.StdoutObject, len(got.Stdout), got.StderrCut)
	}
	r, err := client.ReadObject(t.Context(), got.StdoutObject)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err != nil || n != api.MaxOutputBytes {
		t.Fatalf("the object holds %d bytes (%v), want %d", n, err, api.MaxOutputBytes)
	}
	if next := w.exec(s, "echo alive"); next.ExecutionID != got.ExecutionID {
		t.Fatalf("next request served by %s, not %s", next.ExecutionID, got.ExecutionID)
	}
}
