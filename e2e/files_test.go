package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
)

// ok fails the test unless the completion is ok.
func ok(t *testing.T, c *api.Completion) *api.Completion {
	t.Helper()
	if c.Status != api.StatusOK {
		t.Fatalf("%s: %s %+v", c.Op, c.Status, c.Error)
	}
	return c
}

// failed fails the test unless the completion is an error with code.
func failed(t *testing.T, c *api.Completion, code api.ErrorCode) {
	t.Helper()
	if c.Status != api.StatusError || c.Error.Code != code {
		t.Fatalf("%s: %s %+v, want error %s", c.Op, c.Status, c.Error, code)
	}
}

func TestFileOperations(t *testing.T) {
	w := start(t, options{})
	const s = "files"
	do := func(r api.Request) *api.Completion { r.SessionID = s; return w.do(&r) }

	// Write creates parents, relative to the session's cwd; read gives it
	// back; a mode is kept.
	w.exec(s, "mkdir -p ~/proj && cd ~/proj")
	got := ok(t, do(api.Request{Op: api.OpFileWrite, Path: "src/main.py", EncodedContent: "def foo():\n    return 1\n", Mode: "0755"}))
	if got.File == nil || got.File.Mode != "0755" || got.File.Size != 24 {
		t.Fatalf("write: %+v", got.File)
	}
	if out := w.exec(s, "stat -c %a src/main.py; cat src/main.py | head -1"); out.Stdout != "755\ndef foo():\n" {
		t.Fatalf("the shell sees %q", out.Stdout)
	}
	got = ok(t, do(api.Request{Op: api.OpFileRead, Path: "src/main.py", Offset: 4, Length: 3}))
	if got.Content != "foo" || got.Size != 24 || got.EOF {
		t.Fatalf("read: %q size %d eof %v", got.Content, got.Size, got.EOF)
	}
	ok(t, do(api.Request{Op: api.OpFileWrite, Path: "src/main.py", EncodedContent: "foo()\n", Append: true}))
	bin := []byte{0, 1, 2, 0xff}
	ok(t, do(api.Request{Op: api.OpFileWrite, Path: "data.bin", EncodedContent: base64.StdEncoding.EncodeToString(bin), Encoding: api.EncodingBase64}))
	got = ok(t, do(api.Request{Op: api.OpFileRead, Path: "data.bin"}))
	if data, _ := got.ContentData(); !bytes.Equal(data, bin) || got.ContentEncoding != api.EncodingBase64 || !got.EOF {
		t.Fatalf("binary read: %q (%s)", got.Content, got.ContentEncoding)
	}

	// Exists, list, find, search.
	got = ok(t, do(api.Request{Op: api.OpFileExists, Path: "src/main.py"}))
	if got.Exists == nil || !*got.Exists || got.File.Type != api.FileTypeFile {
		t.Fatalf("exists: %+v %+v", got.Exists, got.File)
	}
	got = ok(t, do(api.Request{Op: api.OpFileExists, Path: "nope"}))
	if got.Exists == nil || *got.Exists {
		t.Fatalf("exists of a missing file: %+v", got.Exists)
	}
	ok(t, do(api.Request{Op: api.OpFileWrite, Path: ".hidden/x.py", EncodedContent: "foo\n"}))
	got = ok(t, do(api.Request{Op: api.OpFileList, Recursive: true}))
	var paths []string
	for _, e := range got.Entries {
		paths = append(paths, e.Path)
	}
	if want := []string{"data.bin", "src", "src/main.py"}; !equal(paths, want) {
		t.Fatalf("list: %v, want %v", paths, want)
	}
	got = ok(t, do(api.Request{Op: api.OpFileFind, Pattern: "**/*.py", Hidden: true}))
	if len(got.Entries) != 2 {
		t.Fatalf("find with hidden: %+v", got.Entries)
	}
	got = ok(t, do(api.Request{Op: api.OpFileSearch, Pattern: `foo\(`, Include: "**/*.py"}))
	if len(got.Matches) != 2 || got.Matches[0].Path != "src/main.py" || got.Matches[0].LineNumber != 1 || got.Matches[1].LineNumber != 3 {
		t.Fatalf("search: %+v", got.Matches)
	}

	// Replace: exactly as many occurrences as expected, or nothing changes.
	failed(t, do(api.Request{Op: api.OpFileReplace, Path: "src/main.py", OldString: "foo", NewString: "bar"}), api.CodeFailedPrecondition)
	if got := ok(t, do(api.Request{Op: api.OpFileRead, Path: "src/main.py"})); got.Content != "def foo():\n    return 1\nfoo()\n" {
		t.Fatalf("a failed replace changed the file: %q", got.Content)
	}
	got = ok(t, do(api.Request{Op: api.OpFileReplace, Path: "src/main.py", OldString: "foo", NewString: "bar", ExpectedCount: 2}))
	if got.Replacements != 2 {
		t.Fatalf("replacements %d", got.Replacements)
	}

	// Errors.
	failed(t, do(api.Request{Op: api.OpFileRead, Path: "missing.txt"}), api.CodeNotFound)
	failed(t, do(api.Request{Op: api.OpFileDelete, Path: "src"}), api.CodeFailedPrecondition)
	failed(t, do(api.Request{Op: api.OpFileRead, Path: "src"}), api.CodeFailedPrecondition)
	failed(t, do(api.Request{Op: api.OpFileRead, Path: "a\x00b"}), api.CodeInvalidArgument)
	failed(t, do(api.Request{Op: api.OpFileSearch, Pattern: "("}), api.CodeInvalidArgument)
	ok(t, do(api.Request{Op: api.OpFileDelete, Path: "src", Recursive: true}))
	if got := ok(t, do(api.Request{Op: api.OpFileExists, Path: "src/main.py"})); *got.Exists {
		t.Fatal("a recursively deleted file still exists")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// transfer uploads size pseudo-random bytes into the session through Cloud
// Storage, downloads them again, and compares hashes.
func transfer(t *testing.T, w *world, sessionID string, size int64) {
	t.Helper()
	ctx := context.Background()
	src := io.LimitReader(rand.NewChaCha8([32]byte{byte(size), 7}), size)
	h := sha256.New()
	reqID := uuid.NewString()
	object, err := w.client.Stage(ctx, sessionID, reqID, "big.bin", io.TeeReader(src, h))
	if err != nil {
		t.Fatal(err)
	}
	want := h.Sum(nil)
	up := ok(t, w.do(&api.Request{RequestID: reqID, SessionID: sessionID, Op: api.OpFileUpload, Path: "big.bin", Object: object}))
	if up.File == nil || up.File.Size != size {
		t.Fatalf("uploaded %+v, want %d bytes", up.File, size)
	}
	down := ok(t, w.do(&api.Request{SessionID: sessionID, Op: api.OpFileDownload, Path: "big.bin"}))
	r, err := client.ReadObject(ctx, down.Object)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h.Reset()
	n, err := io.Copy(h, r)
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want) {
		t.Fatalf("downloaded %d bytes (%v) that differ from the %d uploaded", n, err, size)
	}
}

func TestUploadDownloadRoundTrip(t *testing.T) {
	w := start(t, options{})
	transfer(t, w, "transfers", 20<<20)
	failed(t, w.do(&api.Request{SessionID: "transfers", Op: api.OpFileUpload, Path: "x",
		Object: "gs://sandrun-test/sessions/transfers/transfers/nothing/here"}), api.CodeNotFound)
	failed(t, w.do(&api.Request{SessionID: "transfers", Op: api.OpFileDownload, Path: "missing"}), api.CodeNotFound)
}

// TestLargeTransferKeepsHostMemoryFlat moves SANDRUN_LARGE_MB megabytes
// (default 500; 100 under the race detector, which makes the local cloud's
// side of it slow) up and down through a session and reads the host's peak
// resident memory.
func TestLargeTransferKeepsHostMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("moves hundreds of megabytes")
	}
	mb := int64(500)
	if raceEnabled {
		mb = 100
	}
	if v, err := strconv.ParseInt(os.Getenv("SANDRUN_LARGE_MB"), 10, 64); err == nil {
		mb = v
	}
	w := start(t, options{})
	w.exec("large", "true")
	pid := w.hostPID(t, "large")
	transfer(t, w, "large", mb<<20)
	peak := peakRSS(t, pid)
	t.Logf("host peak resident memory after moving %d MB up and down: %d MB", mb, peak>>20)
	if peak > 150<<20 {
		t.Fatalf("host peak memory %d MB after streaming %d MB: it grows with the file", peak>>20, mb)
	}
}
