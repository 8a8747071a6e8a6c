package files

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeTree creates entries under dir, each spelt as one of:
//
//	"name/"          a directory
//	"name=content"   a file with that content
//	"name->target"   a symlink
//
// Parents are created as needed.
func makeTree(t testing.TB, dir string, entries ...string) {
	t.Helper()
	for _, e := range entries {
		var err error
		switch {
		case strings.Contains(e, "->"):
			name, target, _ := strings.Cut(e, "->")
			p := filepath.Join(dir, name)
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.Symlink(target, p)
			}
		case strings.Contains(e, "="):
			name, content, _ := strings.Cut(e, "=")
			p := filepath.Join(dir, name)
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, []byte(content), 0o644)
			}
		case strings.HasSuffix(e, "/"):
			err = os.MkdirAll(filepath.Join(dir, e), 0o755)
		default:
			t.Fatalf("bad tree entry %q", e)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// content reads a file, or "<missing>".
func content(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantErr checks that err wraps want (nil: no error) and, when msg is not
// empty, that its text holds msg.
func wantErr(t testing.TB, err, want error, msg string) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error %v, want one wrapping %v", err, want)
	case msg != "" && (err == nil || !strings.Contains(err.Error(), msg)):
		t.Fatalf("error %v, want one saying %q", err, msg)
	}
}

// noTempFiles fails if a write left a temporary file in dir.
func noTempFiles(t testing.TB, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".sandrun-write-") {
			t.Errorf("temporary file left behind: %s", filepath.Join(dir, e.Name()))
		}
	}
}

func perm(t testing.TB, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode() & modeBits
}

func ptr[T any](v T) *T { return &v }

func isRoot() bool { return os.Geteuid() == 0 }
