package files

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestResolvePath(t *testing.T) {
	long := "/" + strings.Repeat("d", MaxPathBytes-1)
	tests := []struct {
		name, cwd, path, want string
		home                  string
		err                   error
		msg                   string
	}{
		{name: "absolute", cwd: "/home/u", path: "/etc/hosts", want: "/etc/hosts"},
		{name: "absolute without cwd", cwd: "", path: "/etc/hosts", want: "/etc/hosts"},
		{name: "absolute is cleaned", cwd: "/x", path: "//etc/./a/../hosts/", want: "/etc/hosts"},
		{name: "relative", cwd: "/home/u", path: "src/main.go", want: "/home/u/src/main.go"},
		{name: "dot", cwd: "/home/u", path: ".", want: "/home/u"},
		{name: "parent", cwd: "/home/u/sub", path: "../a.txt", want: "/home/u/a.txt"},
		{name: "above the root stops at the root", cwd: "/a", path: "../../../x", want: "/x"},
		{name: "trailing slash dropped", cwd: "/home/u", path: "dir/", want: "/home/u/dir"},
		{name: "unicode", cwd: "/home/ü", path: "日本/ファイル.txt", want: "/home/ü/日本/ファイル.txt"},
		{name: "longest path", cwd: "/", path: long, want: long},
		{name: "empty", cwd: "/home/u", path: "", err: ErrInvalid, msg: "path is empty"},
		{name: "NUL byte", cwd: "/home/u", path: "a\x00b", err: ErrInvalid, msg: "NUL byte at byte 1"},
		{name: "NUL byte in absolute path", cwd: "/", path: "/etc/\x00", err: ErrInvalid, msg: "NUL"},
		{name: "too long", cwd: "/", path: long + "d", err: ErrInvalid, msg: "4097 bytes"},
		{name: "resolves too long", cwd: "/home", path: long[1:], err: ErrInvalid, msg: "resolves to"},
		{name: "relative without cwd", cwd: "", path: "a.txt", err: ErrInvalid, msg: "absolute working directory"},
		{name: "relative against relative cwd", cwd: "home", path: "a.txt", err: ErrInvalid, msg: "absolute working directory"},
		{name: "cwd with NUL", cwd: "/a\x00", path: "a.txt", err: ErrInvalid},
		{name: "tilde is home", home: "/workspace", cwd: "/tmp", path: "~", want: "/workspace"},
		{name: "under tilde", home: "/workspace", cwd: "/tmp", path: "~/g.txt", want: "/workspace/g.txt"},
		{name: "under tilde, cleaned", home: "/workspace/", cwd: "/tmp", path: "~//a/../b/", want: "/workspace/b"},
		{name: "tilde then parent", home: "/workspace", cwd: "/tmp", path: "~/../etc", want: "/etc"},
		{name: "tilde user is a name", home: "/workspace", cwd: "/tmp", path: "~root/x", want: "/tmp/~root/x"},
		{name: "tilde inside is a name", home: "/workspace", cwd: "/tmp", path: "a/~/b", want: "/tmp/a/~/b"},
		{name: "tilde without home", cwd: "/tmp", path: "~/g.txt", err: ErrInvalid, msg: "no home directory"},
		{name: "tilde with relative home", home: "ws", cwd: "/tmp", path: "~", err: ErrInvalid, msg: "no home directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolvePath(tt.home, tt.cwd, tt.path)
			wantErr(t, err, tt.err, tt.msg)
			if got != tt.want {
				t.Fatalf("ResolvePath(%q, %q, %q) = %q, want %q", tt.home, tt.cwd, tt.path, got, tt.want)
			}
		})
	}
}

func FuzzResolvePath(f *testing.F) {
	for _, seed := range [][3]string{
		{"/w", "/home/u", "a.txt"}, {"/w", "/home/u", "/etc/hosts"}, {"", "", "a"}, {"/w", "/", "../.."},
		{"/w", "/a", "a\x00b"}, {"/w", "rel", "x"}, {"/w", "/a/b", "./../c//d/"}, {"/w", "/", ""},
		{"/w", "/x", strings.Repeat("a/", 2100)},
		{"/w", "/x", "~"}, {"/w", "/x", "~/a/../b"}, {"", "/x", "~/a"}, {"w", "/x", "~"}, {"/w", "/x", "~u/a"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, home, cwd, path string) {
		got, err := ResolvePath(home, cwd, path)
		// "~" and "~/..." are path "." and "./..." from home.
		if path == "~" || strings.HasPrefix(path, "~/") {
			if !filepath.IsAbs(home) || len(home) > MaxPathBytes || strings.Contains(home, "\x00") {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ResolvePath(%q, %q, %q) = %q, %v; want ErrInvalid without a home", home, cwd, path, got, err)
				}
				return
			}
			cwd, path = home, "."+path[1:]
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ResolvePath(%q, %q): error %v does not wrap ErrInvalid", cwd, path, err)
			}
			if got != "" {
				t.Fatalf("ResolvePath(%q, %q) returned %q with an error", cwd, path, got)
			}
			valid := path != "" && len(path) <= MaxPathBytes && !strings.Contains(path, "\x00") &&
				(filepath.IsAbs(path) || (filepath.IsAbs(cwd) && !strings.Contains(cwd, "\x00") && len(cwd) <= MaxPathBytes &&
					len(filepath.Join(cwd, path)) <= MaxPathBytes))
			if valid {
				t.Fatalf("ResolvePath(%q, %q) refused a valid path: %v", cwd, path, err)
			}
			return
		}
		switch {
		case !filepath.IsAbs(got):
			t.Fatalf("ResolvePath(%q, %q) = %q: not absolute", cwd, path, got)
		case filepath.Clean(got) != got:
			t.Fatalf("ResolvePath(%q, %q) = %q: not clean", cwd, path, got)
		case strings.Contains(got, "\x00"):
			t.Fatalf("ResolvePath(%q, %q) = %q: holds NUL", cwd, path, got)
		case len(got) > MaxPathBytes:
			t.Fatalf("ResolvePath(%q, %q) = %d bytes", cwd, path, len(got))
		case strings.Contains(path, "\x00") || path == "" || len(path) > MaxPathBytes:
			t.Fatalf("ResolvePath(%q, %q) accepted an invalid path", cwd, path)
		}
		want := filepath.Clean(path)
		if !filepath.IsAbs(path) {
			want = filepath.Join(cwd, path)
		}
		if got != want {
			t.Fatalf("ResolvePath(%q, %q) = %q, want %q", cwd, path, got, want)
		}
	})
}

func TestParseAndFormatMode(t *testing.T) {
	tests := []struct {
		in     string
		want   fs.FileMode
		format string
		bad    bool
	}{
		{in: "644", want: 0o644, format: "0644"},
		{in: "0644", want: 0o644, format: "0644"},
		{in: "755", want: 0o755, format: "0755"},
		{in: "0", want: 0, format: "0000"},
		{in: "4755", want: 0o755 | fs.ModeSetuid, format: "4755"},
		{in: "02750", want: 0o750 | fs.ModeSetgid, format: "2750"},
		{in: "1777", want: 0o777 | fs.ModeSticky, format: "1777"},
		{in: "7777", want: 0o777 | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky, format: "7777"},
		{in: "", bad: true},
		{in: "8", bad: true},
		{in: "0o644", bad: true},
		{in: "-644", bad: true},
		{in: " 644", bad: true},
		{in: "17777", bad: true},
		{in: "000644", bad: true},
		{in: "rwx", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseMode(%q) = %v, %v; want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if f := FormatMode(got); f != tt.format {
			t.Errorf("FormatMode(%v) = %q, want %q", got, f, tt.format)
		}
	}
}

func TestStatAndExists(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, "a.txt=hello", "d/", "link->a.txt", "dangling->nowhere", "loop1->loop2", "loop2->loop1",
		"日本/ファイル.txt=ü", "d/.hidden=x")
	if err := os.Chmod(filepath.Join(dir, "a.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Ops{Cwd: dir}
	tests := []struct {
		name, path string
		want       FileInfo // ModifiedAt not compared
		err        error
	}{
		{name: "file", path: "a.txt", want: FileInfo{Path: "a.txt", Type: TypeFile, Size: 5, Mode: 0o600}},
		{name: "absolute", path: filepath.Join(dir, "a.txt"), want: FileInfo{Path: filepath.Join(dir, "a.txt"), Type: TypeFile, Size: 5, Mode: 0o600}},
		{name: "dir", path: "d", want: FileInfo{Path: "d", Type: TypeDir, Mode: 0o755}},
		{name: "hidden", path: "d/.hidden", want: FileInfo{Path: "d/.hidden", Type: TypeFile, Size: 1, Mode: 0o644}},
		{name: "symlink is not followed", path: "link", want: FileInfo{Path: "link", Type: TypeSymlink, Size: 5, Mode: 0o777, Target: "a.txt"}},
		{name: "dangling symlink", path: "dangling", want: FileInfo{Path: "dangling", Type: TypeSymlink, Size: 7, Mode: 0o777, Target: "nowhere"}},
		{name: "symlink loop", path: "loop1", want: FileInfo{Path: "loop1", Type: TypeSymlink, Size: 5, Mode: 0o777, Target: "loop2"}},
		{name: "fifo", path: "fifo", want: FileInfo{Path: "fifo", Type: TypeOther, Mode: 0o644}},
		{name: "unicode", path: "日本/ファイル.txt", want: FileInfo{Path: "日本/ファイル.txt", Type: TypeFile, Size: 2, Mode: 0o644}},
		{name: "missing", path: "nope", err: ErrNotFound},
		{name: "below a file", path: "a.txt/x", err: ErrNotFound},
		{name: "through a loop", path: "loop1/x", err: ErrPrecondition},
		{name: "NUL", path: "a\x00", err: ErrInvalid},
		{name: "empty", path: "", err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := o.Stat(context.Background(), tt.path)
			wantErr(t, err, tt.err, "")
			got.ModifiedAt = tt.want.ModifiedAt
			if got != tt.want {
				t.Fatalf("Stat(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
			info, ok, err := o.Exists(context.Background(), tt.path)
			switch {
			case tt.err == ErrNotFound:
				if ok || err != nil {
					t.Fatalf("Exists(%q) = %v, %v; want false, nil", tt.path, ok, err)
				}
			case tt.err != nil:
				wantErr(t, err, tt.err, "")
			default:
				info.ModifiedAt = tt.want.ModifiedAt
				if !ok || err != nil || info != tt.want {
					t.Fatalf("Exists(%q) = %+v, %v, %v", tt.path, info, ok, err)
				}
			}
		})
	}
	// A not-found error still says what the system said.
	_, err := o.Stat(context.Background(), "nope")
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != "stat "+filepath.Join(dir, "nope")+": no such file or directory" {
		t.Fatalf("Stat of a missing file: %v", err)
	}
}

func TestContextEnded(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, "a.txt=x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := Ops{Cwd: dir}
	errs := map[string]error{}
	_, errs["stat"] = o.Stat(ctx, "a.txt")
	_, errs["read"] = o.Read(ctx, "a.txt", ReadOptions{})
	_, errs["write"] = o.Write(ctx, "a.txt", []byte("y"), WriteOptions{})
	errs["delete"] = o.Delete(ctx, "a.txt", false)
	_, errs["list"] = o.List(ctx, "", ListOptions{})
	_, errs["find"] = o.Find(ctx, "", FindOptions{Pattern: "*"})
	_, errs["search"] = o.Search(ctx, "", SearchOptions{Pattern: "x"})
	_, errs["replace"] = o.Replace(ctx, "a.txt", ReplaceOptions{OldString: "x", NewString: "y"})
	for op, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with an ended context: %v", op, err)
		}
		for _, s := range []error{ErrInvalid, ErrNotFound, ErrPrecondition, ErrTooLarge} {
			if errors.Is(err, s) {
				t.Errorf("%s with an ended context: %v wraps %v", op, err, s)
			}
		}
	}
	if got := content(t, filepath.Join(dir, "a.txt")); got != "x" {
		t.Errorf("a.txt = %q after operations with an ended context", got)
	}
}

func TestPermissionDenied(t *testing.T) {
	if isRoot() {
		t.Skip("root reads and writes whatever the mode says")
	}
	dir := t.TempDir()
	makeTree(t, dir, "secret=x", "ro/a=y")
	if err := os.Chmod(filepath.Join(dir, "secret"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "ro"), 0o755) })
	o := Ops{Cwd: dir}
	_, err := o.Read(context.Background(), "secret", ReadOptions{})
	wantErr(t, err, ErrPrecondition, "permission denied")
	_, err = o.Write(context.Background(), "ro/a", []byte("z"), WriteOptions{})
	wantErr(t, err, ErrPrecondition, "permission denied")
	noTempFiles(t, filepath.Join(dir, "ro"))
}
