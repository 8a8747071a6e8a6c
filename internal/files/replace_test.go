package files

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplace(t *testing.T) {
	tests := []struct {
		name    string
		content string
		opt     ReplaceOptions
		want    string // the content afterwards
		n       int
		err     error
		msg     string
	}{
		{name: "one occurrence", content: "a := 1\nb := 2\n", opt: ReplaceOptions{OldString: "b := 2", NewString: "b := 3"},
			want: "a := 1\nb := 3\n", n: 1},
		{name: "expected two", content: "x x", opt: ReplaceOptions{OldString: "x", NewString: "yy", ExpectedCount: 2}, want: "yy yy", n: 2},
		{name: "two found, one expected: nothing changes", content: "x x", opt: ReplaceOptions{OldString: "x", NewString: "y"},
			want: "x x", err: ErrPrecondition, msg: "found 2 occurrences of old_string, expected 1; nothing changed"},
		{name: "one found, two expected", content: "x", opt: ReplaceOptions{OldString: "x", NewString: "y", ExpectedCount: 2},
			want: "x", err: ErrPrecondition, msg: "found 1 occurrence of old_string, expected 2"},
		{name: "none found", content: "abc", opt: ReplaceOptions{OldString: "z", NewString: "y"},
			want: "abc", err: ErrPrecondition, msg: "found 0 occurrences"},
		{name: "replace all", content: "a-a-a", opt: ReplaceOptions{OldString: "a", NewString: "b", ReplaceAll: true}, want: "b-b-b", n: 3},
		{name: "replace all ignores the count", content: "a-a-a", opt: ReplaceOptions{OldString: "a", NewString: "b", ReplaceAll: true, ExpectedCount: 1},
			want: "b-b-b", n: 3},
		{name: "replace all with none", content: "abc", opt: ReplaceOptions{OldString: "z", NewString: "y", ReplaceAll: true},
			want: "abc", err: ErrPrecondition, msg: "old_string not found; nothing changed"},
		{name: "non-overlapping", content: "aaa", opt: ReplaceOptions{OldString: "aa", NewString: "b"}, want: "ba", n: 1},
		{name: "delete text", content: "keep this, drop this", opt: ReplaceOptions{OldString: ", drop this"}, want: "keep this", n: 1},
		{name: "bytes, not characters", content: "caf\xc3\xa9 \xff", opt: ReplaceOptions{OldString: "\xa9 \xff", NewString: "!"}, want: "caf\xc3!", n: 1},
		{name: "newlines and CRLF", content: "a\r\nb\r\n", opt: ReplaceOptions{OldString: "\r\n", NewString: "\n", ReplaceAll: true}, want: "a\nb\n", n: 2},
		{name: "unicode", content: "こんにちは世界", opt: ReplaceOptions{OldString: "世界", NewString: "🌍"}, want: "こんにちは🌍", n: 1},
		{name: "empty old string", content: "abc", opt: ReplaceOptions{NewString: "x"}, want: "abc", err: ErrInvalid, msg: "old_string is empty"},
		{name: "negative count", content: "abc", opt: ReplaceOptions{OldString: "a", ExpectedCount: -1}, want: "abc", err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f.txt")
			if err := os.WriteFile(p, []byte(tt.content), 0o640); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(p)
			n, err := Ops{Cwd: dir}.Replace(context.Background(), "f.txt", tt.opt)
			wantErr(t, err, tt.err, tt.msg)
			if n != tt.n {
				t.Errorf("replacements = %d, want %d", n, tt.n)
			}
			if got := content(t, p); got != tt.want {
				t.Errorf("content %q, want %q", got, tt.want)
			}
			after, _ := os.Stat(p)
			if tt.err != nil && !os.SameFile(before, after) {
				t.Errorf("the file was rewritten although nothing changed")
			}
			if m := after.Mode().Perm(); m != 0o640 {
				t.Errorf("mode %v after replace, want 0640", m)
			}
			noTempFiles(t, dir)
		})
	}
}

func TestReplaceFiles(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, "real.txt=old text", "link->real.txt", "d/", "loop1->loop2", "loop2->loop1", "日本/ファイル.txt=古い")
	o := Ops{Cwd: dir}
	ctx := context.Background()
	repl := func(path, old, new string) (int, error) {
		return o.Replace(ctx, path, ReplaceOptions{OldString: old, NewString: new})
	}

	n, err := repl("link", "old", "new")
	if err != nil || n != 1 || content(t, filepath.Join(dir, "real.txt")) != "new text" {
		t.Fatalf("Replace through a symlink = %d, %v; real.txt = %q", n, err, content(t, filepath.Join(dir, "real.txt")))
	}
	if fi, _ := os.Lstat(filepath.Join(dir, "link")); fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced by a file")
	}
	n, err = repl(filepath.Join(dir, "日本/ファイル.txt"), "古い", "新しい")
	if err != nil || n != 1 || content(t, filepath.Join(dir, "日本/ファイル.txt")) != "新しい" {
		t.Fatalf("Replace of a unicode name: %d, %v", n, err)
	}
	_, err = repl("nope", "a", "b")
	wantErr(t, err, ErrNotFound, "")
	_, err = repl("d", "a", "b")
	wantErr(t, err, ErrPrecondition, "is a directory")
	_, err = repl("loop1", "a", "b")
	wantErr(t, err, ErrPrecondition, "too many levels")
	_, err = repl("a\x00", "a", "b")
	wantErr(t, err, ErrInvalid, "")

	// Too large to edit: a sparse file one byte over the bound.
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxReplaceBytes+1); err != nil {
		t.Fatal(err)
	}
	_, err = repl("big", "\x00", "x")
	wantErr(t, err, ErrTooLarge, "replace edits files up to")

	// A result too large: 1 MiB of zeros where each 16 bytes grow to 2 KiB.
	if err := os.Truncate(big, 1<<20); err != nil {
		t.Fatal(err)
	}
	_, err = o.Replace(ctx, "big", ReplaceOptions{OldString: strings.Repeat("\x00", 16), NewString: strings.Repeat("x", 2<<10), ReplaceAll: true})
	wantErr(t, err, ErrTooLarge, "the result would be")
	if fi, _ := os.Stat(big); fi.Size() != 1<<20 {
		t.Fatalf("big is %d bytes after a refused replace", fi.Size())
	}
	noTempFiles(t, dir)
}

func FuzzReplace(f *testing.F) {
	f.Add("hello world", "o", "0", uint8(2), false)
	f.Add("aaaa", "aa", "a", uint8(2), false)
	f.Add("aaa", "aa", "b", uint8(1), false)
	f.Add("x\r\ny\r\n", "\r\n", "\n", uint8(0), true)
	f.Add("abc", "", "x", uint8(1), false)
	f.Add("abc", "z", "x", uint8(0), true)
	f.Add("\xff\xfe\x00", "\xfe", "", uint8(1), false)
	// Each run writes, syncs and renames a file: on a memory file system,
	// when there is one, that costs no disk flush.
	dir := f.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "files-fuzz-"); err == nil {
		dir = shm
		f.Cleanup(func() { os.RemoveAll(shm) })
	}
	p := filepath.Join(dir, "f")
	f.Fuzz(func(t *testing.T, data, old, new string, expected uint8, all bool) {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := Ops{Cwd: dir}.Replace(context.Background(), "f", ReplaceOptions{OldString: old, NewString: new, ExpectedCount: int(expected), ReplaceAll: all})
		got := content(t, p)
		want := int(expected)
		if want == 0 {
			want = 1
		}
		count := 0
		if old != "" {
			count = strings.Count(data, old)
		}
		switch {
		case old == "":
			if !errors.Is(err, ErrInvalid) || got != data {
				t.Fatalf("empty old_string: %v, content %q", err, got)
			}
		case (all && count > 0) || (!all && count == want):
			if err != nil || n != count || got != strings.Replace(data, old, new, -1) {
				t.Fatalf("Replace(%q, %q, %q, %d, %v) = %d, %v; content %q", data, old, new, expected, all, n, err, got)
			}
		default:
			if !errors.Is(err, ErrPrecondition) || n != 0 || got != data {
				t.Fatalf("Replace(%q, %q, %q, %d, %v) with %d occurrences = %d, %v; content %q", data, old, new, expected, all, count, n, err, got)
			}
		}
		if m := perm(t, p); m != 0o600 {
			t.Fatalf("mode %v", m)
		}
	})
}
