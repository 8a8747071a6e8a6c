package files

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, "a.txt=hello world", "empty=", "d/", "link->a.txt", "loop1->loop2", "loop2->loop1",
		"日本/ファイル.txt=こんにちは")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Ops{Cwd: dir}
	tests := []struct {
		name, path string
		opt        ReadOptions
		want       string
		size       int64
		eof        bool
		err        error
		msg        string
	}{
		{name: "whole file", path: "a.txt", want: "hello world", size: 11, eof: true},
		{name: "absolute", path: filepath.Join(dir, "a.txt"), want: "hello world", size: 11, eof: true},
		{name: "offset", path: "a.txt", opt: ReadOptions{Offset: 6}, want: "world", size: 11, eof: true},
		{name: "offset and length", path: "a.txt", opt: ReadOptions{Offset: 2, Length: 3}, want: "llo", size: 11},
		{name: "length to the end", path: "a.txt", opt: ReadOptions{Offset: 6, Length: 5}, want: "world", size: 11, eof: true},
		{name: "length past the end", path: "a.txt", opt: ReadOptions{Offset: 6, Length: 50}, want: "world", size: 11, eof: true},
		{name: "max inline caps", path: "a.txt", opt: ReadOptions{MaxInline: 4}, want: "hell", size: 11},
		{name: "max inline caps length", path: "a.txt", opt: ReadOptions{Length: 8, MaxInline: 4}, want: "hell", size: 11},
		{name: "offset at the end", path: "a.txt", opt: ReadOptions{Offset: 11}, want: "", size: 11, eof: true},
		{name: "offset past the end", path: "a.txt", opt: ReadOptions{Offset: 100}, want: "", size: 11, eof: true},
		{name: "empty file", path: "empty", want: "", size: 0, eof: true},
		{name: "symlink is followed", path: "link", want: "hello world", size: 11, eof: true},
		{name: "unicode", path: "日本/ファイル.txt", want: "こんにちは", size: 15, eof: true},
		{name: "missing", path: "nope", err: ErrNotFound, msg: "no such file"},
		{name: "below a file", path: "a.txt/b", err: ErrNotFound},
		{name: "directory", path: "d", err: ErrPrecondition, msg: "is a directory"},
		{name: "named pipe does not block", path: "fifo", err: ErrPrecondition, msg: "not a regular file (named pipe)"},
		{name: "symlink loop", path: "loop1", err: ErrPrecondition, msg: "too many levels of symbolic links"},
		{name: "negative offset", path: "a.txt", opt: ReadOptions{Offset: -1}, err: ErrInvalid},
		{name: "negative length", path: "a.txt", opt: ReadOptions{Length: -1}, err: ErrInvalid},
		{name: "NUL", path: "a\x00.txt", err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := o.Read(context.Background(), tt.path, tt.opt)
			wantErr(t, err, tt.err, tt.msg)
			if string(got.Content) != tt.want || got.Size != tt.size || got.EOF != tt.eof {
				t.Fatalf("Read = %q size %d eof %v, want %q size %d eof %v", got.Content, got.Size, got.EOF, tt.want, tt.size, tt.eof)
			}
		})
	}
}

// TestReadPseudoFile reads a /proc file, which reports size 0. (The
// host's own /proc entries are refused: TestOwnProcEntriesAreRefused.)
func TestReadPseudoFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	o := Ops{}
	got, err := o.Read(context.Background(), "/proc/meminfo", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got.Content, []byte("MemTotal:")) || !got.EOF || got.Size != int64(len(got.Content)) {
		t.Fatalf("Read(/proc/meminfo) = %d bytes, size %d, eof %v", len(got.Content), got.Size, got.EOF)
	}
	part, err := o.Read(context.Background(), "/proc/meminfo", ReadOptions{Length: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(part.Content) != 10 || part.EOF {
		t.Fatalf("Read(/proc/meminfo, length 10) = %q, eof %v", part.Content, part.EOF)
	}
}

// TestReadReadsOnlyWhatItReturns reads 16 bytes from the middle of a 4 GiB
// sparse file: memory and time stay those of 16 bytes.
func TestReadReadsOnlyWhatItReturns(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 30); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("0123456789abcdef"), 2<<30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	o := Ops{Cwd: dir}
	var res ReadResult
	allocs := testing.AllocsPerRun(10, func() {
		res, err = o.Read(context.Background(), "big", ReadOptions{Offset: 2 << 30, Length: 16})
	})
	if err != nil || string(res.Content) != "0123456789abcdef" || res.Size != 4<<30 || res.EOF {
		t.Fatalf("Read = %q size %d eof %v, %v", res.Content, res.Size, res.EOF, err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := o.Read(context.Background(), "big", ReadOptions{Offset: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > DefaultMaxInline+16<<10 {
		t.Errorf("a default Read of a 4 GiB file allocated %d bytes", n)
	}
	t.Logf("%.0f allocations per 16-byte read", allocs)
}

func TestWrite(t *testing.T) {
	type check struct {
		path    string      // relative to the test's directory
		content string      // "<missing>" when it must not exist
		mode    fs.FileMode // 0: not checked
	}
	tests := []struct {
		name  string
		tree  []string
		cwd   string // relative to the test's directory
		path  string
		data  string
		opt   WriteOptions
		err   error
		msg   string
		info  FileInfo // Path, Type, Size, Mode of the result
		check []check
	}{
		{name: "new file", path: "a.txt", data: "hi",
			info:  FileInfo{Path: "a.txt", Type: TypeFile, Size: 2, Mode: 0o644},
			check: []check{{"a.txt", "hi", 0o644}}},
		{name: "new file with parents", path: "x/y/z.txt", data: "deep",
			info:  FileInfo{Path: "x/y/z.txt", Type: TypeFile, Size: 4, Mode: 0o644},
			check: []check{{"x/y/z.txt", "deep", 0o644}}},
		{name: "new file with a mode", path: "run.sh", data: "#!/bin/sh", opt: WriteOptions{Mode: ptr(fs.FileMode(0o755))},
			info:  FileInfo{Path: "run.sh", Type: TypeFile, Size: 9, Mode: 0o755},
			check: []check{{"run.sh", "#!/bin/sh", 0o755}}},
		{name: "overwrite keeps the mode", tree: []string{"a.txt=old content"}, path: "a.txt", data: "new",
			info:  FileInfo{Path: "a.txt", Type: TypeFile, Size: 3, Mode: 0o600},
			check: []check{{"a.txt", "new", 0o600}}},
		{name: "overwrite with a mode", tree: []string{"a.txt=old"}, path: "a.txt", data: "new", opt: WriteOptions{Mode: ptr(fs.FileMode(0o640))},
			info:  FileInfo{Path: "a.txt", Type: TypeFile, Size: 3, Mode: 0o640},
			check: []check{{"a.txt", "new", 0o640}}},
		{name: "setuid mode", path: "suid", data: "x", opt: WriteOptions{Mode: ptr(0o755 | fs.ModeSetuid)},
			info:  FileInfo{Path: "suid", Type: TypeFile, Size: 1, Mode: 0o755 | fs.ModeSetuid},
			check: []check{{"suid", "x", 0o755 | fs.ModeSetuid}}},
		{name: "empty content", tree: []string{"a.txt=old"}, path: "a.txt", data: "",
			info:  FileInfo{Path: "a.txt", Type: TypeFile, Size: 0, Mode: 0o600},
			check: []check{{"a.txt", "", 0}}},
		{name: "append", tree: []string{"log=one\n"}, path: "log", data: "two\n", opt: WriteOptions{Append: true},
			info:  FileInfo{Path: "log", Type: TypeFile, Size: 8, Mode: 0o600},
			check: []check{{"log", "one\ntwo\n", 0o600}}},
		{name: "append creates", path: "new/log", data: "one\n", opt: WriteOptions{Append: true},
			info:  FileInfo{Path: "new/log", Type: TypeFile, Size: 4, Mode: 0o644},
			check: []check{{"new/log", "one\n", 0o644}}},
		{name: "append with a mode", tree: []string{"log=a"}, path: "log", data: "b", opt: WriteOptions{Append: true, Mode: ptr(fs.FileMode(0o444))},
			info:  FileInfo{Path: "log", Type: TypeFile, Size: 2, Mode: 0o444},
			check: []check{{"log", "ab", 0o444}}},
		{name: "relative to the cwd", tree: []string{"sub/"}, cwd: "sub", path: "../up.txt", data: "u",
			info:  FileInfo{Path: "../up.txt", Type: TypeFile, Size: 1, Mode: 0o644},
			check: []check{{"up.txt", "u", 0}, {"sub/up.txt", "<missing>", 0}}},
		{name: "unicode", path: "日本/ファイル.txt", data: "ü",
			info:  FileInfo{Path: "日本/ファイル.txt", Type: TypeFile, Size: 2, Mode: 0o644},
			check: []check{{"日本/ファイル.txt", "ü", 0o644}}},
		{name: "through a symlink", tree: []string{"real.txt=old", "link->real.txt"}, path: "link", data: "new",
			info:  FileInfo{Path: "link", Type: TypeFile, Size: 3, Mode: 0o600},
			check: []check{{"real.txt", "new", 0o600}, {"link", "new", 0o777}}},
		{name: "through a chain of symlinks into another directory", tree: []string{"d/real.txt=old", "d/l2->real.txt", "l1->d/l2"}, path: "l1", data: "new",
			info:  FileInfo{Path: "l1", Type: TypeFile, Size: 3, Mode: 0o600},
			check: []check{{"d/real.txt", "new", 0o600}, {"d/l2", "new", 0o777}}},
		{name: "through a dangling symlink", tree: []string{"link->sub/target.txt"}, path: "link", data: "t",
			info:  FileInfo{Path: "link", Type: TypeFile, Size: 1, Mode: 0o644},
			check: []check{{"sub/target.txt", "t", 0o644}, {"link", "t", 0o777}}},
		{name: "a directory", tree: []string{"d/"}, path: "d", data: "x", err: ErrPrecondition, msg: "is a directory"},
		{name: "append to a directory", tree: []string{"d/"}, path: "d", data: "x", opt: WriteOptions{Append: true}, err: ErrPrecondition, msg: "is a directory"},
		{name: "parent is a file", tree: []string{"f=x"}, path: "f/a.txt", data: "x", err: ErrPrecondition, msg: "not a directory",
			check: []check{{"f", "x", 0}}},
		{name: "grandparent is a file", tree: []string{"f=x"}, path: "f/g/a.txt", data: "x", err: ErrPrecondition},
		{name: "symlink loop", tree: []string{"l1->l2", "l2->l1"}, path: "l1", data: "x", err: ErrPrecondition, msg: "too many levels"},
		{name: "NUL", path: "a\x00", data: "x", err: ErrInvalid},
		{name: "empty path", path: "", data: "x", err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			makeTree(t, dir, tt.tree...)
			for _, e := range tt.tree { // existing files get 0600 to tell "kept" from "default"
				if name, _, ok := strings.Cut(e, "="); ok {
					os.Chmod(filepath.Join(dir, name), 0o600)
				}
			}
			o := Ops{Cwd: filepath.Join(dir, tt.cwd)}
			got, err := o.Write(context.Background(), tt.path, []byte(tt.data), tt.opt)
			wantErr(t, err, tt.err, tt.msg)
			got.ModifiedAt = tt.info.ModifiedAt
			if got != tt.info {
				t.Errorf("Write returned %+v, want %+v", got, tt.info)
			}
			for _, c := range tt.check {
				p := filepath.Join(dir, c.path)
				if got := content(t, p); got != c.content {
					t.Errorf("%s = %q, want %q", c.path, got, c.content)
				}
				if c.mode != 0 && perm(t, p) != c.mode {
					t.Errorf("%s has mode %v, want %v", c.path, perm(t, p), c.mode)
				}
			}
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if d != nil && d.IsDir() {
					noTempFiles(t, p)
				}
				return nil
			})
		})
	}
}

// TestWriteCreatesParentsWithDirMode checks the mode of created parents
// (the umask may only take bits away).
func TestWriteCreatesParentsWithDirMode(t *testing.T) {
	dir := t.TempDir()
	if _, err := (Ops{Cwd: dir}).Write(context.Background(), "a/b/c", nil, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "a/b"} {
		if m := perm(t, filepath.Join(dir, d)); m&^DirMode != 0 || m&0o700 != 0o700 {
			t.Errorf("%s has mode %v", d, m)
		}
	}
}

// TestWriteIsAtomic rewrites a file over and over with contents of
// different sizes while readers read it: every read sees one whole
// content, never a mix or a prefix.
func TestWriteIsAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	contents := []string{strings.Repeat("a", 96<<10), strings.Repeat("b", 7), strings.Repeat("c", 20<<10)}
	o := Ops{Cwd: dir}
	if _, err := o.Write(context.Background(), "f", []byte(contents[0]), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Errorf("read during writes: %v", err)
					return
				}
				reads.Add(1)
				ok := false
				for _, c := range contents {
					ok = ok || string(b) == c
				}
				if !ok {
					t.Errorf("a reader saw %d bytes that are none of the contents written", len(b))
					return
				}
			}
		})
	}
	for i := range 100 {
		if _, err := o.Write(context.Background(), "f", []byte(contents[i%len(contents)]), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	noTempFiles(t, dir)
	t.Logf("%d reads saw whole contents", reads.Load())
}

// failingReader yields n bytes, then fails.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func TestWriteFrom(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, "keep.txt=old", "d/")
	o := Ops{Cwd: dir}
	ctx := context.Background()

	info, err := o.WriteFrom(ctx, "up/load.bin", strings.NewReader("streamed"), nil)
	if err != nil || info.Size != 8 || info.Mode != DefaultMode || info.Path != "up/load.bin" {
		t.Fatalf("WriteFrom = %+v, %v", info, err)
	}
	if got := content(t, filepath.Join(dir, "up/load.bin")); got != "streamed" {
		t.Fatalf("content %q", got)
	}

	// The source fails half way: the file is as it was.
	boom := errors.New("connection reset")
	_, err = o.WriteFrom(ctx, "keep.txt", &failingReader{n: 1 << 20, err: boom}, nil)
	if !errors.Is(err, boom) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrPrecondition) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) {
		t.Fatalf("WriteFrom with a failing source: %v", err)
	}
	if !strings.Contains(err.Error(), "read source: connection reset") {
		t.Errorf("error %q does not name the source", err)
	}
	if got := content(t, filepath.Join(dir, "keep.txt")); got != "old" {
		t.Fatalf("keep.txt = %q after a failed WriteFrom", got)
	}

	// The context ends half way: the same.
	cctx, cancel := context.WithCancel(ctx)
	r := io.MultiReader(strings.NewReader(strings.Repeat("y", copyBufferSize*2)), readerFunc(func(p []byte) (int, error) {
		cancel()
		return copy(p, "z"), nil
	}), strings.NewReader(strings.Repeat("y", copyBufferSize*2)))
	_, err = o.WriteFrom(cctx, "keep.txt", r, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteFrom with a context ended mid-stream: %v", err)
	}
	if got := content(t, filepath.Join(dir, "keep.txt")); got != "old" {
		t.Fatalf("keep.txt = %q after a cancelled WriteFrom", got)
	}

	_, err = o.WriteFrom(ctx, "d", strings.NewReader("x"), nil)
	wantErr(t, err, ErrPrecondition, "is a directory")
	_, err = o.WriteFrom(ctx, "keep.txt/x", strings.NewReader("x"), nil)
	wantErr(t, err, ErrPrecondition, "not a directory")
	_, err = o.WriteFrom(ctx, "x\x00", strings.NewReader("x"), nil)
	wantErr(t, err, ErrInvalid, "")
	info, err = o.WriteFrom(ctx, "keep.txt", strings.NewReader("new"), ptr(fs.FileMode(0o700)))
	if err != nil || info.Mode != 0o700 || content(t, filepath.Join(dir, "keep.txt")) != "new" {
		t.Fatalf("WriteFrom with a mode = %+v, %v", info, err)
	}
	noTempFiles(t, dir)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestOpenForRead(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, "a.txt=hello", "d/", "link->a.txt")
	o := Ops{Cwd: dir}
	f, info, err := o.OpenForRead(context.Background(), "link")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}
	info.ModifiedAt = FileInfo{}.ModifiedAt
	if want := (FileInfo{Path: "link", Type: TypeFile, Size: 5, Mode: 0o644}); info != want {
		t.Fatalf("info %+v, want %+v", info, want)
	}
	for path, want := range map[string]error{"d": ErrPrecondition, "nope": ErrNotFound, "a\x00": ErrInvalid} {
		f, _, err := o.OpenForRead(context.Background(), path)
		if f != nil || !errors.Is(err, want) {
			t.Errorf("OpenForRead(%q) = %v, %v; want %v", path, f, err, want)
		}
	}
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name      string
		tree      []string
		path      string
		recursive bool
		err       error
		msg       string
		gone      []string // must not exist afterwards (Lstat)
		kept      []string // must still exist
	}{
		{name: "file", tree: []string{"a.txt=x"}, path: "a.txt", gone: []string{"a.txt"}},
		{name: "empty dir", tree: []string{"d/"}, path: "d", gone: []string{"d"}},
		{name: "non-empty dir without recursive", tree: []string{"d/a=x"}, path: "d", err: ErrPrecondition,
			msg: "directory not empty; set recursive", kept: []string{"d/a"}},
		{name: "non-empty dir with recursive", tree: []string{"d/a=x", "d/e/f/g=y"}, path: "d", recursive: true, gone: []string{"d"}},
		{name: "symlink to a file", tree: []string{"a.txt=x", "l->a.txt"}, path: "l", gone: []string{"l"}, kept: []string{"a.txt"}},
		{name: "symlink to a dir, recursive", tree: []string{"d/a=x", "l->d"}, path: "l", recursive: true, gone: []string{"l"}, kept: []string{"d/a"}},
		{name: "symlink with a trailing slash", tree: []string{"d/a=x", "l->d"}, path: "l/", recursive: true, gone: []string{"l"}, kept: []string{"d/a"}},
		{name: "dir holding a symlink out", tree: []string{"out/a=x", "d/l->../out", "d/f=y"}, path: "d", recursive: true,
			gone: []string{"d"}, kept: []string{"out/a"}},
		{name: "dir holding a symlink loop", tree: []string{"d/loop->.", "d/l1->l2", "d/l2->l1"}, path: "d", recursive: true, gone: []string{"d"}},
		{name: "dangling symlink", tree: []string{"l->nowhere"}, path: "l", gone: []string{"l"}},
		{name: "unicode", tree: []string{"日本/ファイル.txt=x"}, path: "日本/ファイル.txt", gone: []string{"日本/ファイル.txt"}, kept: []string{"日本"}},
		{name: "missing", path: "nope", err: ErrNotFound},
		{name: "below a file", tree: []string{"f=x"}, path: "f/x", err: ErrNotFound},
		{name: "NUL", path: "a\x00", err: ErrInvalid},
		{name: "the root", path: "/", err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			makeTree(t, dir, tt.tree...)
			err := Ops{Cwd: dir}.Delete(context.Background(), tt.path, tt.recursive)
			wantErr(t, err, tt.err, tt.msg)
			for _, p := range tt.gone {
				if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s still exists (%v)", p, err)
				}
			}
			for _, p := range tt.kept {
				if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
					t.Errorf("%s is gone: %v", p, err)
				}
			}
		})
	}
}
