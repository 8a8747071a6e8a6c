package workspace

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// entry is what a test compares of one file system entry.
type entry struct {
	kind   string // "file", "dir", "symlink"
	mode   fs.FileMode
	sum    [sha256.Size]byte // of a file's content
	size   int64
	target string    // of a symlink
	mtime  time.Time // of a file, to the second
}

// snapshot describes the tree under dir, without following links.
func snapshot(t *testing.T, dir string) map[string]entry {
	t.Helper()
	tree := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			tree[rel] = entry{kind: "dir", mode: info.Mode().Perm()}
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			tree[rel] = entry{kind: "symlink", target: target}
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			h := sha256.New()
			n, err := io.Copy(h, f)
			if err != nil {
				return err
			}
			e := entry{kind: "file", mode: info.Mode().Perm(), size: n, mtime: info.ModTime().Truncate(time.Second)}
			copy(e.sum[:], h.Sum(nil))
			tree[rel] = e
		default:
			tree[rel] = entry{kind: "other " + d.Type().String()}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func mustWrite(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// sampleTree builds a workspace with every kind of entry Checkpoint keeps.
func sampleTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	old := time.Date(2020, 2, 29, 12, 34, 56, 0, time.UTC)
	files := []struct {
		name string
		data string
		mode fs.FileMode
	}{
		{"README.md", "# hello\n", 0o644},
		{"a/b/c/deep.txt", "deep", 0o600},
		{"bin/run.sh", "#!/bin/sh\necho hi\n", 0o755},
		{"readonly.txt", "ro", 0o444},
		{"empty-file", "", 0o644},
		{"héllo/世界.txt", "unicode ✓", 0o644},
		{"spaces and\nnewline", "odd name", 0o644},
		{"bad\xffutf8", "not UTF-8 name", 0o644},
		{strings.Repeat("long", 40) + "/" + strings.Repeat("name", 40), "long path", 0o644},
		{"locked/inside.txt", "in a read-only dir", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		mustWrite(t, p, []byte(f.data), f.mode)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"empty", "a/empty"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "a/empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "a/b/c/deep.txt", filepath.Join(dir, "relative-link"))
	mustSymlink(t, "../../README.md", filepath.Join(dir, "a/b/up-link"))
	mustSymlink(t, "does/not/exist", filepath.Join(dir, "dangling"))
	mustSymlink(t, "/etc/passwd", filepath.Join(dir, "absolute"))
	mustSymlink(t, "a", filepath.Join(dir, "dir-link"))
	// Last: a directory whose mode keeps even its owner from adding to it.
	locked := filepath.Join(dir, "locked")
	if err := os.Chmod(locked, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(locked, 0o755) })
	return dir
}

func checkpoint(t *testing.T, dir string) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Checkpoint(context.Background(), &buf, dir)
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	return buf.Bytes(), st
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	src := sampleTree(t)
	archive, cst := checkpoint(t, src)
	dst := filepath.Join(t.TempDir(), "restored")
	rst, err := Restore(context.Background(), dst, bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "locked"), 0o755) })
	sameTree(t, src, dst)
	if cst.Files != 10 || cst.Symlinks != 5 || cst.SkippedCount != 0 {
		t.Errorf("checkpoint stats %+v", cst)
	}
	if rst.Files != cst.Files || rst.Dirs != cst.Dirs || rst.Symlinks != cst.Symlinks || rst.Bytes != cst.Bytes {
		t.Errorf("restore stats %+v differ from checkpoint stats %+v", rst, cst)
	}
}

func TestCheckpointIsDeterministic(t *testing.T) {
	t.Parallel()
	src := sampleTree(t)
	a, _ := checkpoint(t, src)
	b, _ := checkpoint(t, src)
	if !bytes.Equal(a, b) {
		t.Fatal("two checkpoints of the same tree differ")
	}
}

func TestCheckpointSkipsSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "kept"), []byte("x"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are short: listen from inside dir.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })

	archive, st := checkpoint(t, dir)
	want := []Skip{{"fifo", "named pipe"}, {"sock", "socket"}}
	if !slices.Equal(st.Skipped, want) || st.SkippedCount != 2 || st.Files != 1 {
		t.Fatalf("stats %+v, want skipped %v", st, want)
	}
	dst := filepath.Join(t.TempDir(), "r")
	if _, err := Restore(context.Background(), dst, bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, dst); len(got) != 1 || got["kept"].kind != "file" {
		t.Fatalf("restored %v", got)
	}
}

func TestCheckpointNeverFollowsRootLinks(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(outside, "secret"), []byte("secret"), 0o600)
	dir := t.TempDir()
	mustSymlink(t, outside, filepath.Join(dir, "out"))
	archive, st := checkpoint(t, dir)
	if st.Files != 0 || st.Symlinks != 1 {
		t.Fatalf("stats %+v", st)
	}
	if bytes.Contains(gunzip(t, archive), []byte("secret\x00")) {
		t.Fatal("content behind a symlink was archived")
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheckpointHonoursContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Checkpoint(ctx, io.Discard, sampleTree(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestRestoreRefusesNonEmptyTarget(t *testing.T) {
	t.Parallel()
	archive, _ := checkpoint(t, sampleTree(t))
	dst := t.TempDir()
	mustWrite(t, filepath.Join(dst, "already"), nil, 0o644)
	if _, err := Restore(context.Background(), dst, bytes.NewReader(archive)); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("err = %v, want ErrNotEmpty", err)
	}
}

// patternReader yields n bytes of a cheap, half compressible pattern, so a
// large file costs little to make yet exercises deflate.
func patternReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(&pattern{rng: rand.New(rand.NewPCG(seed, seed))}, n)
}

type pattern struct{ rng *rand.Rand }

func (p *pattern) Read(b []byte) (int, error) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := p.rng.Uint64()
		if v&1 == 0 {
			v &= 0x0f0f0f0f0f0f0f0f // low entropy half the time
		}
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return len(b) &^ 7, nil
}

// blockReader yields n bytes of zeros in which every 4 KiB block starts
// with its own offset: cheap to compress even under the race detector,
// and any block restored in the wrong place changes the checksum.
func blockReader(n int64) io.Reader {
	return io.LimitReader(&blocks{}, n)
}

type blocks struct{ off int64 }

func (b *blocks) Read(p []byte) (int, error) {
	p = p[:len(p)&^4095] // whole blocks only, so b.off stays aligned
	if len(p) == 0 {
		return 0, io.ErrShortBuffer
	}
	clear(p)
	for i := 0; i < len(p); i += 4096 {
		binary.LittleEndian.PutUint64(p[i:], uint64(b.off+int64(i)))
	}
	b.off += int64(len(p))
	return len(p), nil
}

func TestLargeFileStreams(t *testing.T) {
	// Not parallel: it measures the allocations of the whole test binary.
	const size = 50 << 20
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), blockReader(size), make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wantSum := h.Sum(nil)

	// Checkpoint into a pipe that Restore reads at the same time: neither
	// side can hold the archive.
	dst := filepath.Join(t.TempDir(), "r")
	pr, pw := io.Pipe()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	errc := make(chan error, 1)
	go func() {
		_, err := Checkpoint(context.Background(), pw, src)
		pw.CloseWithError(err)
		errc <- err
	}()
	rst, err := Restore(context.Background(), dst, pr)
	pr.Close()
	if cerr := <-errc; cerr != nil {
		t.Fatalf("Checkpoint: %v", cerr)
	}
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if rst.Bytes != size {
		t.Fatalf("restored %d bytes, want %d", rst.Bytes, size)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("allocated %d bytes to move a %d-byte file", grew, size)
	}
	got, err := os.Open(filepath.Join(dst, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	h.Reset()
	if _, err := io.Copy(h, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), wantSum) {
		t.Fatal("restored content differs")
	}
}

// hostile is an archive entry a test writes by hand.
type hostile struct {
	hdr  tar.Header
	data string
}

func buildArchive(t testing.TB, entries []hostile, trailing []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("write header %q: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := gz.Write(trailing); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func dirEntry(name string) hostile {
	return hostile{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func fileEntry(name, data string) hostile {
	return hostile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name}, data: data}
}

func linkEntry(name, target string) hostile {
	return hostile{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
}

// restoreContained restores archive into a target inside a sandbox
// directory and checks that nothing was written outside the target.
func restoreContained(t *testing.T, archive []byte) (Stats, error) {
	t.Helper()
	sandbox := t.TempDir()
	outside := filepath.Join(sandbox, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(outside, "victim"), []byte("untouched"), 0o644)
	target := filepath.Join(sandbox, "target")
	st, err := Restore(context.Background(), target, bytes.NewReader(archive))
	// Let cleanup remove what a hostile archive made read-only.
	filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	// Whatever was restored is a plain file, directory or symlink, and no
	// file is a hard link.
	filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, ierr := d.Info()
		if ierr != nil {
			return nil
		}
		switch typ := info.Mode().Type(); {
		case typ == 0:
			if sys, ok := info.Sys().(*syscall.Stat_t); ok && sys.Nlink != 1 {
				t.Errorf("%s has %d links", p, sys.Nlink)
			}
		case typ == fs.ModeDir, typ == fs.ModeSymlink:
		default:
			t.Errorf("%s restored as %v", p, typ)
		}
		return nil
	})
	names, rerr := os.ReadDir(sandbox)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if len(names) != 2 || names[0].Name() != "outside" || names[1].Name() != "target" {
		t.Fatalf("restore wrote next to its target: %v", names)
	}
	if got := snapshot(t, outside); len(got) != 1 || got["victim"].size != int64(len("untouched")) {
		t.Fatalf("restore changed the outside directory: %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "untouched" {
		t.Fatalf("restore wrote through to the outside: %q", b)
	}
	return st, err
}

func TestRestoreRejectsHostileArchives(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		entries  []hostile
		trailing []byte
		entry    string // the entry the error must name
	}{
		{"absolute name", []hostile{fileEntry("/etc/evil", "x")}, nil, "/etc/evil"},
		{"dot-dot escape", []hostile{fileEntry("../outside/victim", "x")}, nil, "../outside/victim"},
		{"dot-dot inside", []hostile{dirEntry("a/"), fileEntry("a/../../outside/victim", "x")}, nil, "a/../../outside/victim"},
		{"not canonical", []hostile{dirEntry("a/"), fileEntry("a//b", "x")}, nil, "a//b"},
		{"dot element", []hostile{fileEntry("./a", "x")}, nil, "./a"},
		{"root entry", []hostile{dirEntry("./")}, nil, "./"},
		{"through a symlink to outside", []hostile{linkEntry("l", "../outside"), fileEntry("l/victim", "x")}, nil, "l/victim"},
		{"through an absolute symlink", []hostile{linkEntry("l", "/tmp"), fileEntry("l/evil", "x")}, nil, "l/evil"},
		{"through a symlink to inside", []hostile{dirEntry("d/"), linkEntry("l", "d"), fileEntry("l/x", "x")}, nil, "l/x"},
		{"dir through a symlink", []hostile{linkEntry("l", "../outside"), dirEntry("l/sub/")}, nil, "l/sub/"},
		{"symlink through a symlink", []hostile{linkEntry("l", "../outside"), linkEntry("l/victim", "/etc/passwd")}, nil, "l/victim"},
		{"file over a symlink", []hostile{linkEntry("l", "../outside/victim"), fileEntry("l", "x")}, nil, "l"},
		{"parent never declared", []hostile{fileEntry("nodir/x", "x")}, nil, "nodir/x"},
		{"parent is a file", []hostile{fileEntry("f", "x"), fileEntry("f/x", "x")}, nil, "f/x"},
		{"duplicate file", []hostile{fileEntry("f", "x"), fileEntry("f", "y")}, nil, "f"},
		{"duplicate dir", []hostile{dirEntry("d/"), dirEntry("d/")}, nil, "d/"},
		{"hard link", []hostile{{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../outside/victim"}}}, nil, "h"},
		{"char device", []hostile{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}}, nil, "null"},
		{"block device", []hostile{{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}}}, nil, "sda"},
		{"fifo", []hostile{{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}}}, nil, "p"},
		{"unknown type", []hostile{{hdr: tar.Header{Typeflag: 'Z', Name: "z"}}}, nil, "z"},
		{"data after the tar stream", []hostile{fileEntry("f", "x")}, []byte("smuggled"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := restoreContained(t, buildArchive(t, tt.entries, tt.trailing))
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("err = %v, want ErrUnsafe", err)
			}
			if tt.entry != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.entry)) {
				t.Errorf("error %q does not name entry %q", err, tt.entry)
			}
		})
	}
}

func TestRestoreRejectsCorruptArchives(t *testing.T) {
	t.Parallel()
	good := buildArchive(t, []hostile{fileEntry("f", strings.Repeat("data", 1000))}, nil)
	corrupt := slices.Clone(good)
	corrupt[len(corrupt)-6] ^= 0xff // inside the gzip CRC
	tests := map[string][]byte{
		"not gzip":  []byte("plain text"),
		"truncated": good[:len(good)/2],
		"bad crc":   corrupt,
		"empty":     nil,
	}
	for name, archive := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := restoreContained(t, archive); err == nil {
				t.Fatal("corrupt archive restored without error")
			}
		})
	}
}

func TestRestoreAcceptsZeroPadding(t *testing.T) {
	t.Parallel()
	archive := buildArchive(t, []hostile{fileEntry("f", "x")}, make([]byte, 9*1024))
	if _, err := restoreContained(t, archive); err != nil {
		t.Fatal(err)
	}
}

// FuzzRestore feeds Restore arbitrary archives and checks that it never
// panics, never writes outside its target, and never creates anything but
// files, directories and symlinks. The input is read in one of three ways,
// so that the fuzzer gets past each layer's checksums: raw bytes as the
// compressed archive, raw bytes as the tar stream (compressed here), or
// entries described by the bytes and written with archive/tar.
func FuzzRestore(f *testing.F) {
	dir := f.TempDir()
	mustWriteTB(f, filepath.Join(dir, "a/b.txt"), "b")
	if err := os.Symlink("a/b.txt", filepath.Join(dir, "l")); err != nil {
		f.Fatal(err)
	}
	var valid bytes.Buffer
	if _, err := Checkpoint(context.Background(), &valid, dir); err != nil {
		f.Fatal(err)
	}
	f.Add(valid.Bytes(), uint8(0))
	f.Add(gunzipTB(f, valid.Bytes()), uint8(1))
	for _, entries := range [][]hostile{
		{linkEntry("l", "../outside"), fileEntry("l/victim", "x")},
		{dirEntry("d/"), linkEntry("d/l", ".."), dirEntry("d/l/x/")},
		{fileEntry("../outside/victim", "x")},
		{{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "../outside/victim"}}},
		{dirEntry("d/"), fileEntry("d/f", "content"), linkEntry("d/g", "f")},
	} {
		f.Add(gunzipTB(f, buildArchive(f, entries, nil)), uint8(1))
	}
	f.Add([]byte("dd\nfd/f\x00data\nsd/l\x00..\nfd/l/x\x00y"), uint8(2))
	f.Add([]byte("sl\x00../outside\nfl/victim\x00x\ndl/sub"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		switch mode % 3 {
		case 1:
			data = gzipBytes(data)
		case 2:
			entries := describedEntries(data)
			if entries == nil {
				return
			}
			data = gzipBytes(entries)
		}
		st, err := restoreContained(t, data)
		if err == nil && (st.Files < 0 || st.Bytes < 0) {
			t.Fatalf("stats %+v", st)
		}
	})
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// describedEntries writes a tar stream from lines "<type><name>\x00<arg>":
// type d (dir), f (file, arg is its content), s (symlink, arg is its
// target), h (hard link), p (fifo), c (device). It returns nil for what
// archive/tar refuses to write.
func describedEntries(desc []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for line := range bytes.SplitSeq(desc, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		name, arg, _ := strings.Cut(string(line[1:]), "\x00")
		hdr := &tar.Header{Name: name, Mode: 0o755}
		switch line[0] {
		case 'd':
			hdr.Typeflag = tar.TypeDir
		case 'f':
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(arg))
		case 's':
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, arg
		case 'h':
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, arg
		case 'p':
			hdr.Typeflag = tar.TypeFifo
		case 'c':
			hdr.Typeflag = tar.TypeChar
		default:
			return nil
		}
		if tw.WriteHeader(hdr) != nil {
			return nil
		}
		if hdr.Typeflag == tar.TypeReg {
			io.WriteString(tw, arg)
		}
	}
	if tw.Close() != nil {
		return nil
	}
	return buf.Bytes()
}

func mustWriteTB(tb testing.TB, path, data string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func gunzipTB(tb testing.TB, b []byte) []byte {
	tb.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestRestoreClampsFarMtimes(t *testing.T) {
	t.Parallel()
	far := fileEntry("future", "x")
	far.hdr.ModTime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	past := fileEntry("past", "x")
	past.hdr.ModTime = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := restoreContained(t, buildArchive(t, []hostile{far, past}, nil)); err != nil {
		t.Fatal(err)
	}
}
