package files

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bmatcuk/doublestar/v4"
)

// walkTree is the tree the List and Find tests walk. It holds hidden
// entries, symlink loops (loop → ., b/up → ..), a link to a directory and
// unicode names.
var walkTree = []string{
	"a.txt=aaaa",
	"b/c.txt=c",
	"b/d/e.txt=e",
	"b/d/f.go=package f",
	"b/up->..",
	"b/.cache/x.txt=x",
	".hidden=h",
	".hdir/y.txt=y",
	"loop->.",
	"ln->b",
	"日本/ファイル.txt=ü",
	"z.go=package z",
}

func paths(entries []FileInfo) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Path
	}
	return out
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, walkTree...)
	tests := []struct {
		name, cwd, path string
		opt             ListOptions
		want            []string
		truncated       bool
		err             error
		msg             string
	}{
		{name: "entries", path: ".", want: []string{"a.txt", "b", "ln", "loop", "z.go", "日本"}},
		{name: "empty path is the cwd", path: "", want: []string{"a.txt", "b", "ln", "loop", "z.go", "日本"}},
		{name: "relative to the cwd", cwd: "b", path: "d", want: []string{"e.txt", "f.go"}},
		{name: "absolute", cwd: "b", path: filepath.Join(dir, "b/d"), want: []string{"e.txt", "f.go"}},
		{name: "hidden", path: ".", opt: ListOptions{Hidden: true},
			want: []string{".hdir", ".hidden", "a.txt", "b", "ln", "loop", "z.go", "日本"}},
		{name: "recursive, in tree order, links not entered", path: ".", opt: ListOptions{Recursive: true},
			want: []string{"a.txt", "b", "b/c.txt", "b/d", "b/d/e.txt", "b/d/f.go", "b/up", "ln", "loop", "z.go", "日本", "日本/ファイル.txt"}},
		{name: "recursive with hidden", path: "b", opt: ListOptions{Recursive: true, Hidden: true},
			want: []string{".cache", ".cache/x.txt", "c.txt", "d", "d/e.txt", "d/f.go", "up"}},
		{name: "max depth 1", path: ".", opt: ListOptions{Recursive: true, MaxDepth: 1},
			want: []string{"a.txt", "b", "ln", "loop", "z.go", "日本"}},
		{name: "max depth 2", path: ".", opt: ListOptions{Recursive: true, MaxDepth: 2},
			want: []string{"a.txt", "b", "b/c.txt", "b/d", "b/up", "ln", "loop", "z.go", "日本", "日本/ファイル.txt"}},
		{name: "max depth without recursive", path: ".", opt: ListOptions{MaxDepth: 3},
			want: []string{"a.txt", "b", "ln", "loop", "z.go", "日本"}},
		{name: "max results", path: ".", opt: ListOptions{Recursive: true, MaxResults: 3},
			want: []string{"a.txt", "b", "b/c.txt"}, truncated: true},
		{name: "max results exactly all", path: "b/d", opt: ListOptions{MaxResults: 2}, want: []string{"e.txt", "f.go"}},
		{name: "a symlink root is followed", path: "ln", want: []string{"c.txt", "d", "up"}},
		{name: "a loop root is followed once", path: "loop", want: []string{"a.txt", "b", "ln", "loop", "z.go", "日本"}},
		{name: "unicode root", path: "日本", want: []string{"ファイル.txt"}},
		{name: "a file", path: "a.txt", err: ErrPrecondition, msg: "not a directory"},
		{name: "missing", path: "nope", err: ErrNotFound},
		{name: "NUL", path: "a\x00", err: ErrInvalid},
		{name: "negative depth", path: ".", opt: ListOptions{MaxDepth: -1}, err: ErrInvalid},
		{name: "too many results", path: ".", opt: ListOptions{MaxResults: MaxResults + 1}, err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Ops{Cwd: filepath.Join(dir, tt.cwd)}.List(context.Background(), tt.path, tt.opt)
			wantErr(t, err, tt.err, tt.msg)
			if p := paths(got.Entries); !slices.Equal(p, tt.want) || got.Truncated != tt.truncated {
				t.Fatalf("List = %q truncated %v\nwant   %q truncated %v", p, got.Truncated, tt.want, tt.truncated)
			}
		})
	}

	// Entries are described as Stat describes them.
	got, err := Ops{Cwd: dir}.List(context.Background(), "", ListOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got.Entries {
		st, err := Ops{Cwd: dir}.Stat(context.Background(), e.Path)
		if err != nil || st != e {
			t.Errorf("entry %+v, Stat gives %+v, %v", e, st, err)
		}
	}
}

func TestListManyEntries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i := range 1500 {
		makeTree(t, dir, fmt.Sprintf("f%04d=", i))
	}
	got, err := Ops{Cwd: dir}.List(context.Background(), "", ListOptions{})
	if err != nil || len(got.Entries) != DefaultMaxResults || !got.Truncated || got.Entries[999].Path != "f0999" {
		t.Fatalf("List of 1500 entries: %d entries, truncated %v, %v", len(got.Entries), got.Truncated, err)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, walkTree...)
	tests := []struct {
		name, path string
		opt        FindOptions
		want       []string
		truncated  bool
		err        error
		msg        string
	}{
		{name: "any depth", opt: FindOptions{Pattern: "**/*.txt"}, want: []string{"a.txt", "b/c.txt", "b/d/e.txt", "日本/ファイル.txt"}},
		{name: "top level only", opt: FindOptions{Pattern: "*.txt"}, want: []string{"a.txt"}},
		{name: "leading ./ dropped", opt: FindOptions{Pattern: "./*.txt"}, want: []string{"a.txt"}},
		{name: "hidden", opt: FindOptions{Pattern: "**/*.txt", Hidden: true},
			want: []string{".hdir/y.txt", "a.txt", "b/.cache/x.txt", "b/c.txt", "b/d/e.txt", "日本/ファイル.txt"}},
		{name: "a literal hidden directory is entered", opt: FindOptions{Pattern: ".hdir/*"}, want: []string{".hdir/y.txt"}},
		{name: "question mark", opt: FindOptions{Pattern: "?.go"}, want: []string{"z.go"}},
		{name: "class", opt: FindOptions{Pattern: "[ab]*"}, want: []string{"a.txt", "b"}},
		{name: "negated class", opt: FindOptions{Pattern: "[!ab]*"}, want: []string{"ln", "loop", "z.go", "日本"}},
		{name: "alternatives", opt: FindOptions{Pattern: "**/*.{go,txt}"},
			want: []string{"a.txt", "b/c.txt", "b/d/e.txt", "b/d/f.go", "z.go", "日本/ファイル.txt"}},
		{name: "under a literal base", opt: FindOptions{Pattern: "b/**"}, want: []string{"b", "b/c.txt", "b/d", "b/d/e.txt", "b/d/f.go", "b/up"}},
		{name: "middle wildcard", opt: FindOptions{Pattern: "b/*/e.txt"}, want: []string{"b/d/e.txt"}},
		{name: "doublestar in the middle", opt: FindOptions{Pattern: "b/**/*.go"}, want: []string{"b/d/f.go"}},
		{name: "exact name", opt: FindOptions{Pattern: "b/d/f.go"}, want: []string{"b/d/f.go"}},
		{name: "a symlink to a dir is found, not entered", opt: FindOptions{Pattern: "ln/**"}, want: []string{"ln"}},
		{name: "nothing below a link", opt: FindOptions{Pattern: "ln/*"}},
		{name: "nothing below a file", opt: FindOptions{Pattern: "a.txt/*"}},
		{name: "missing base", opt: FindOptions{Pattern: "nope/**"}},
		{name: "loops end", opt: FindOptions{Pattern: "**"},
			want: []string{"a.txt", "b", "b/c.txt", "b/d", "b/d/e.txt", "b/d/f.go", "b/up", "ln", "loop", "z.go", "日本", "日本/ファイル.txt"}},
		{name: "unicode", opt: FindOptions{Pattern: "日本/*.txt"}, want: []string{"日本/ファイル.txt"}},
		{name: "unicode wildcard", opt: FindOptions{Pattern: "**/????.txt"}, want: []string{"日本/ファイル.txt"}},
		{name: "max depth", opt: FindOptions{Pattern: "**/*.txt", MaxDepth: 2}, want: []string{"a.txt", "b/c.txt", "日本/ファイル.txt"}},
		{name: "max depth below a base", opt: FindOptions{Pattern: "b/d/*", MaxDepth: 2}},
		{name: "max depth at a base", opt: FindOptions{Pattern: "b/d/**", MaxDepth: 2}, want: []string{"b/d"}},
		{name: "max results", opt: FindOptions{Pattern: "**/*.txt", MaxResults: 2}, want: []string{"a.txt", "b/c.txt"}, truncated: true},
		{name: "relative root", path: "b", opt: FindOptions{Pattern: "**/*.go"}, want: []string{"d/f.go"}},
		{name: "root through a symlink", path: "ln", opt: FindOptions{Pattern: "*.txt"}, want: []string{"c.txt"}},
		{name: "empty pattern", opt: FindOptions{Pattern: ""}, err: ErrInvalid, msg: "pattern is empty"},
		{name: "bad pattern", opt: FindOptions{Pattern: "[a"}, err: ErrInvalid, msg: "not a valid glob"},
		{name: "absolute pattern", opt: FindOptions{Pattern: "/etc/*"}, err: ErrInvalid, msg: "absolute"},
		{name: "pattern going up", opt: FindOptions{Pattern: "../*"}, err: ErrInvalid, msg: `".."`},
		{name: "root is a file", path: "a.txt", opt: FindOptions{Pattern: "*"}, err: ErrPrecondition},
		{name: "missing root", path: "nope", opt: FindOptions{Pattern: "*"}, err: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Ops{Cwd: dir}.Find(context.Background(), tt.path, tt.opt)
			wantErr(t, err, tt.err, tt.msg)
			if p := paths(got.Entries); !slices.Equal(p, tt.want) || got.Truncated != tt.truncated {
				t.Fatalf("Find(%q) = %q truncated %v\nwant %q truncated %v", tt.opt.Pattern, p, got.Truncated, tt.want, tt.truncated)
			}
		})
	}
}

// TestFindEqualsFilteredList checks that walking from a pattern's literal
// base finds exactly what filtering a whole listing finds.
func TestFindEqualsFilteredList(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, walkTree...)
	makeTree(t, dir, "b/d/g/h/i.txt=i", "b/d/g/h.go=h", "c/b/d/e.txt=e", "[x]/y=y", "b/f=file")
	o := Ops{Cwd: dir}
	all, err := o.List(context.Background(), "", ListOptions{Recursive: true, Hidden: true, MaxResults: MaxResults})
	if err != nil {
		t.Fatal(err)
	}
	patterns := []string{"**", "*", "**/*", "b/**", "b/d/**", "b/d/*", "b/d/g/h/*", "b/*/*.txt", "b/**/h*",
		"**/d/**", "b/d", "b", "b/d/g/**/*.txt", "\\[x\\]/*", "[[]x]/*", "b/f/**", "b/f", "b/.cache/*", "c/b/**",
		"b/up/**", "loop/**", "{b,c}/**", "b/{d,up}/*", "**/h", "b//d/*", "b/./d/*", "b/d/"}
	for _, pat := range patterns {
		for _, depth := range []int{0, 1, 2, 3, 4} {
			got, err := o.Find(context.Background(), "", FindOptions{Pattern: pat, Hidden: true, MaxDepth: depth, MaxResults: MaxResults})
			if err != nil {
				t.Fatalf("Find(%q): %v", pat, err)
			}
			var want []string
			for _, e := range all.Entries {
				if ok, _ := doublestar.Match(strings.TrimPrefix(pat, "./"), e.Path); ok && (depth == 0 || strings.Count(e.Path, "/") < depth) {
					want = append(want, e.Path)
				}
			}
			if p := paths(got.Entries); !slices.Equal(p, want) {
				t.Errorf("Find(%q, depth %d) = %q\nfiltered list gives %q", pat, depth, p, want)
			}
		}
	}
}

func TestWalkSkipsUnreadableDirectories(t *testing.T) {
	if isRoot() {
		t.Skip("root reads every directory")
	}
	dir := t.TempDir()
	makeTree(t, dir, "a/x=1", "locked/y=2", "z=3")
	if err := os.Chmod(filepath.Join(dir, "locked"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "locked"), 0o755) })
	got, err := Ops{Cwd: dir}.List(context.Background(), "", ListOptions{Recursive: true})
	if err != nil || !slices.Equal(paths(got.Entries), []string{"a", "a/x", "locked", "z"}) {
		t.Fatalf("List = %q, %v", paths(got.Entries), err)
	}
}
