package files

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

func TestSearch(t *testing.T) {
	dir := t.TempDir()
	longLine := "foo " + strings.Repeat("x", SearchLineBytes) + " needle\n"
	makeTree(t, dir,
		"a.go=package a\nfunc Foo() {}\n// foo bar\n",
		"b/c.py=def foo():\r\n    return 1\r\n",
		"b/d/e.py=import foo",
		"bin.dat=foo\x00bar\n",
		"late-nul.txt=foo\n"+strings.Repeat("y", BinarySniffBytes)+"\x00",
		".hidden.txt=foo hidden",
		".git/config=foo git",
		"link.txt->a.go",
		"loop->.",
		"long.txt="+longLine+"after foo\nneedle\n",
		"invalid.txt=foo \xff\xfe bar",
		"日本.txt=foo 日本語",
	)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.txt"), 0o644); err != nil {
		t.Fatal(err)
	}
	type m = Match
	tests := []struct {
		name, path string
		opt        SearchOptions
		want       []Match
		truncated  bool
		searched   int
		skipped    int
		err        error
		msg        string
	}{
		{name: "every text file, binary skipped", opt: SearchOptions{Pattern: "foo"}, want: []m{
			{"a.go", 3, "// foo bar"}, {"b/c.py", 1, "def foo():"}, {"b/d/e.py", 1, "import foo"}, {"invalid.txt", 1, "foo \uFFFD bar"},
			{"late-nul.txt", 1, "foo"}, {"long.txt", 1, cutLine([]byte(longLine))}, {"long.txt", 2, "after foo"}, {"日本.txt", 1, "foo 日本語"},
		}, searched: 7, skipped: 1},
		{name: "case-insensitive", opt: SearchOptions{Pattern: "(?i)^func foo"}, want: []m{{"a.go", 2, "func Foo() {}"}}},
		{name: "line endings are not part of the line", opt: SearchOptions{Pattern: `\):$`}, want: []m{{"b/c.py", 1, "def foo():"}}},
		{name: "a long line is matched on its first part only", opt: SearchOptions{Pattern: "needle"}, want: []m{{"long.txt", 3, "needle"}}},
		{name: "include at any depth", opt: SearchOptions{Pattern: "foo", Include: "**/*.py"}, want: []m{
			{"b/c.py", 1, "def foo():"}, {"b/d/e.py", 1, "import foo"}}},
		{name: "include of the root's own files", opt: SearchOptions{Pattern: "foo", Include: "*.py"}, want: nil},
		{name: "include by path", opt: SearchOptions{Pattern: "foo", Include: "b/*.py"}, want: []m{{"b/c.py", 1, "def foo():"}}},
		{name: "include with doublestar", opt: SearchOptions{Pattern: "foo", Include: "b/**/*.py"}, want: []m{
			{"b/c.py", 1, "def foo():"}, {"b/d/e.py", 1, "import foo"}}},
		{name: "hidden", opt: SearchOptions{Pattern: "hidden|git", Hidden: true}, want: []m{{".git/config", 1, "foo git"}, {".hidden.txt", 1, "foo hidden"}}},
		{name: "no hidden", opt: SearchOptions{Pattern: "hidden|git"}},
		{name: "max depth", opt: SearchOptions{Pattern: "foo", Include: "**/*.py", MaxDepth: 2}, want: []m{{"b/c.py", 1, "def foo():"}}},
		{name: "max results", opt: SearchOptions{Pattern: "foo", MaxResults: 2}, want: []m{{"a.go", 3, "// foo bar"}, {"b/c.py", 1, "def foo():"}}, truncated: true},
		{name: "max results exactly all", opt: SearchOptions{Pattern: "foo", Include: "**/*.py", MaxResults: 2}, want: []m{
			{"b/c.py", 1, "def foo():"}, {"b/d/e.py", 1, "import foo"}}},
		{name: "a file root", path: "b/c.py", opt: SearchOptions{Pattern: "return"}, want: []m{{"b/c.py", 2, "    return 1"}}},
		{name: "a file root through a symlink", path: "link.txt", opt: SearchOptions{Pattern: "package"}, want: []m{{"link.txt", 1, "package a"}}},
		{name: "a directory root", path: "b", opt: SearchOptions{Pattern: "foo"}, want: []m{{"c.py", 1, "def foo():"}, {"d/e.py", 1, "import foo"}}},
		{name: "unicode pattern", opt: SearchOptions{Pattern: "日本."}, want: []m{{"日本.txt", 1, "foo 日本語"}}},
		{name: "empty pattern", opt: SearchOptions{}, err: ErrInvalid, msg: "pattern is empty"},
		{name: "bad pattern", opt: SearchOptions{Pattern: "(foo"}, err: ErrInvalid, msg: "missing closing )"},
		{name: "bad include", opt: SearchOptions{Pattern: "foo", Include: "[x"}, err: ErrInvalid, msg: "include"},
		{name: "missing root", path: "nope", opt: SearchOptions{Pattern: "foo"}, err: ErrNotFound},
		{name: "named pipe root", path: "fifo.txt", opt: SearchOptions{Pattern: "foo"}, err: ErrPrecondition},
		{name: "negative depth", opt: SearchOptions{Pattern: "foo", MaxDepth: -1}, err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Ops{Cwd: dir}.Search(context.Background(), tt.path, tt.opt)
			wantErr(t, err, tt.err, tt.msg)
			if !slices.Equal(got.Matches, tt.want) || got.Truncated != tt.truncated {
				t.Fatalf("Search(%q) = %+v truncated %v\nwant %+v truncated %v", tt.opt.Pattern, got.Matches, got.Truncated, tt.want, tt.truncated)
			}
			if tt.searched != 0 && (got.FilesSearched != tt.searched || got.FilesSkipped != tt.skipped) {
				t.Fatalf("searched %d, skipped %d files; want %d, %d", got.FilesSearched, got.FilesSkipped, tt.searched, tt.skipped)
			}
		})
	}
}

// TestSearchHugeLine searches an 8 MiB file without a newline: memory is
// the buffer's, not the file's.
func TestSearchHugeLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "one-line.txt")
	line := []byte(strings.Repeat("abcdefghij", (8<<20)/10))
	copy(line, "start")
	if err := os.WriteFile(p, append(line, "\nend\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := Ops{Cwd: dir}.Search(context.Background(), "", SearchOptions{Pattern: "^start|^end$"})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Matches) != 2 || got.Matches[0].LineNumber != 1 || len(got.Matches[0].Line) != MaxLineBytes ||
		got.Matches[1] != (Match{"one-line.txt", 2, "end"}) {
		t.Fatalf("matches %+v", got.Matches)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	if alloc > 1<<20 {
		t.Errorf("searching an 8 MiB line allocated %d bytes", alloc)
	}
	t.Logf("searching an 8 MiB line allocated %d bytes", alloc)
}

func TestCutLine(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxLineBytes)
	tests := []struct{ name, in, want string }{
		{"short", "hello", "hello"},
		{"empty", "", ""},
		{"exactly the limit", long, long},
		{"one over", long + "b", long},
		{"a character straddling the limit", long[:MaxLineBytes-1] + "日", long[:MaxLineBytes-1]},
		{"a character ending at the limit", long[:MaxLineBytes-3] + "日x", long[:MaxLineBytes-3] + "日"},
		{"a 4-byte character straddling the limit", long[:MaxLineBytes-3] + "😀", long[:MaxLineBytes-3]},
		{"invalid bytes", "a\xffb\xfe\xfdc", "a\uFFFDb\uFFFDc"},
		{"invalid bytes near the limit", long[:MaxLineBytes-2] + "\xff\xff\xff", long[:MaxLineBytes-2]},
	}
	for _, tt := range tests {
		if got := cutLine([]byte(tt.in)); got != tt.want {
			t.Errorf("%s: cutLine = %q (%d bytes), want %q", tt.name, clip(got, 20), len(got), clip(tt.want, 20))
		}
	}
	// Any bytes: valid UTF-8, within the limit.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(2*MaxLineBytes))
		for i := range b {
			b[i] = byte(rng.IntN(256))
			if rng.IntN(3) == 0 {
				b[i] = 'a'
			}
		}
		got := cutLine(b)
		if !utf8.ValidString(got) || len(got) > MaxLineBytes {
			t.Fatalf("cutLine(%q) = %q: %d bytes, valid %v", b, got, len(got), utf8.ValidString(got))
		}
	}
}

// searchTree writes n source-like files of about 4 KiB in directories of
// 50, with "needle" on one line of every tenth file.
func searchTree(tb testing.TB, n int) string {
	dir := tb.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	words := strings.Fields("func return if else for range var const type struct package import err nil the of and to in")
	var sb strings.Builder
	for i := range n {
		sb.Reset()
		for sb.Len() < 4<<10 {
			for range 8 + rng.IntN(8) {
				sb.WriteString(words[rng.IntN(len(words))])
				sb.WriteByte(' ')
			}
			sb.WriteByte('\n')
		}
		if i%10 == 0 {
			sb.WriteString("x := needle(42)\n")
		}
		p := filepath.Join(dir, fmt.Sprintf("pkg%03d/file%05d.go", i/50, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

func TestSearchTree(t *testing.T) {
	t.Parallel()
	dir := searchTree(t, 200)
	got, err := Ops{Cwd: dir}.Search(context.Background(), "", SearchOptions{Pattern: `needle\(\d+\)`, Include: "**/*.go"})
	if err != nil || len(got.Matches) != 20 || got.FilesSearched != 200 || got.Truncated {
		t.Fatalf("Search: %d matches, %d files, %v", len(got.Matches), got.FilesSearched, err)
	}
}

// BenchmarkSearch searches a tree of 2,000 files of 4 KiB (8 MB) for a
// regular expression, as file.search does.
func BenchmarkSearch(b *testing.B) {
	dir := searchTree(b, 2000)
	o := Ops{Cwd: dir}
	var files int
	var bytes int64 = 2000 * 4 << 10
	b.SetBytes(bytes)
	for b.Loop() {
		res, err := o.Search(context.Background(), "", SearchOptions{Pattern: `needle\(\d+\)`, MaxResults: MaxResults})
		if err != nil || len(res.Matches) != 200 {
			b.Fatalf("%d matches, %v", len(res.Matches), err)
		}
		files += res.FilesSearched
	}
	b.ReportMetric(float64(files)/b.Elapsed().Seconds(), "files/s")
}
