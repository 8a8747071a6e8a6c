package workspace

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotEmpty is wrapped by the error Restore returns when its target
// directory already holds something.
var ErrNotEmpty = errors.New("directory not empty")

// maxTrailing bounds the zero padding Restore accepts after the end of the
// tar stream (other tar writers pad to a record of 10 KiB).
const maxTrailing = 1 << 20

// Restore writes the tree archived in r (a gzip-compressed tar stream as
// Checkpoint writes it) into dir, which must be an empty directory or not
// exist yet (it is then created). Files, directories and symlinks get
// their permission bits (set-id bits are dropped), files their mtime;
// everything belongs to the user that restores.
//
// The archive is untrusted: a command of the session wrote the tree. So
// Restore writes only below dir and never through a link: every entry's
// parent must be a directory that the archive itself created earlier in
// the stream, which no symlink can be. It refuses, with an error wrapping
// ErrUnsafe and naming the entry: absolute names, names that are not
// canonical or that climb with "..", hard links, devices, FIFOs and other
// types, and duplicates. Symlink targets are kept as they are (absolute or
// dangling ones too): Restore never follows them.
//
// Content is streamed through one buffer. On error dir holds part of the
// tree; the caller should discard it.
func Restore(ctx context.Context, dir string, r io.Reader) (Stats, error) {
	var st Stats
	root, err := openTarget(dir)
	if err != nil {
		return st, err
	}
	defer root.Close()

	gz, err := gzip.NewReader(r)
	if err != nil {
		return st, fmt.Errorf("read archive: %w", err)
	}
	defer gz.Close()
	rs := restorer{
		ctx:   ctx,
		root:  root,
		stats: &st,
		dirs:  map[string]bool{".": true},
		buf:   make([]byte, copyBufferSize),
	}
	tr := tar.NewReader(gz)
	for {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("restore into %s: %w", dir, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read archive: %w", err)
		}
		if err := rs.entry(hdr, tr); err != nil {
			return st, fmt.Errorf("restore entry %q: %w", hdr.Name, err)
		}
	}
	// Read to the end of the gzip stream: only there is its checksum
	// verified.
	if err := checkTrailing(gz); err != nil {
		return st, err
	}
	// Directories whose mode would have kept their own children out get it
	// last, deepest first.
	for _, d := range slices.Backward(rs.lateModes) {
		if err := chmodDir(root, d.name, d.mode); err != nil {
			return st, fmt.Errorf("restore entry %q: %w", d.name+"/", err)
		}
	}
	return st, nil
}

// openTarget opens dir, an empty directory or one that does not exist
// yet, as the root of a restore.
func openTarget(dir string) (*os.Root, error) {
	if err := prepareTarget(dir); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open restore target %s: %w", dir, err)
	}
	return root, nil
}

// prepareTarget makes sure dir is an empty directory, creating it if it
// does not exist.
func prepareTarget(dir string) error {
	empty, err := Empty(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("create restore target: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore target: %w", err)
	}
	if !empty {
		return fmt.Errorf("restore target %s: %w", dir, ErrNotEmpty)
	}
	return nil
}

// Empty reports whether the directory dir has no entries.
func Empty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("list %s: %w", dir, err)
	}
	return len(names) == 0, nil
}

type restorer struct {
	ctx   context.Context
	root  *os.Root
	stats *Stats
	// dirs holds every directory this archive created, by name: the only
	// places an entry may be written into. It grows with the number of
	// directories, not with the size of the tree.
	dirs      map[string]bool
	lateModes []dirMode
	buf       []byte
}

type dirMode struct {
	name string
	mode fs.FileMode
}

// check returns the entry's name and permission bits, or an error wrapping
// ErrUnsafe when the name may not be written.
func (rs *restorer) check(hdr *tar.Header) (string, fs.FileMode, error) {
	name, err := entryName(hdr)
	if err != nil {
		return "", 0, err
	}
	if parent := path.Dir(name); !rs.dirs[parent] {
		return "", 0, fmt.Errorf("%w: parent %s is not a directory created by this archive", ErrUnsafe, parent)
	}
	return name, fs.FileMode(hdr.Mode).Perm(), nil
}

func (rs *restorer) entry(hdr *tar.Header, tr io.Reader) error {
	name, mode, err := rs.check(hdr)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := rs.root.Mkdir(name, 0o700); err != nil {
			return existsIsUnsafe(err)
		}
		rs.dirs[name] = true
		rs.stats.Dirs++
		if mode&0o700 != 0o700 {
			rs.lateModes = append(rs.lateModes, dirMode{name, mode})
			return nil
		}
		return chmodDir(rs.root, name, mode)
	case tar.TypeReg: // tar.Reader already turned the old TypeRegA into this
		f, n, err := rs.file(name, mode, hdr, tr, rs.buf)
		if err != nil {
			return err
		}
		rs.stats.Files++
		rs.stats.Bytes += n
		return f.Close()
	case tar.TypeSymlink:
		if err := rs.root.Symlink(hdr.Linkname, name); err != nil {
			return existsIsUnsafe(err)
		}
		rs.stats.Symlinks++
		return nil
	case tar.TypeLink:
		return fmt.Errorf("%w: hard link to %q", ErrUnsafe, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: device", ErrUnsafe)
	case tar.TypeFifo:
		return fmt.Errorf("%w: named pipe", ErrUnsafe)
	default:
		return fmt.Errorf("%w: entry type %q", ErrUnsafe, hdr.Typeflag)
	}
}

// file writes a regular file of hdr.Size bytes from r through buf and
// returns it open, for the caller to close. O_EXCL refuses a name that
// exists, a symlink included, so nothing is written through a link or over
// an earlier entry.
func (rs *restorer) file(name string, mode fs.FileMode, hdr *tar.Header, r io.Reader, buf []byte) (*os.File, int64, error) {
	f, err := rs.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, 0, existsIsUnsafe(err)
	}
	n, err := io.CopyBuffer(onlyWriter{f}, ctxReader{rs.ctx, r}, buf)
	if err == nil && n != hdr.Size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = setMtime(f, hdr.ModTime)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// onlyWriter hides os.File's ReadFrom, so that the copy goes through the
// restorer's one buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// entryName returns the entry's name as a path below the root, or an error
// wrapping ErrUnsafe. Only canonical relative names pass: no leading "/",
// no "." or ".." element, no empty element, a trailing "/" only on a
// directory.
func entryName(hdr *tar.Header) (string, error) {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	switch {
	case name == "" || name == ".":
		return "", fmt.Errorf("%w: empty name", ErrUnsafe)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%w: absolute name", ErrUnsafe)
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafe)
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == ".." {
			return "", fmt.Errorf("%w: name climbs with ..", ErrUnsafe)
		}
	}
	if path.Clean(name) != name {
		return "", fmt.Errorf("%w: name is not canonical", ErrUnsafe)
	}
	return name, nil
}

func existsIsUnsafe(err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: duplicate entry", ErrUnsafe)
	}
	return err
}

// chmodDir sets a directory's mode through a descriptor opened without
// following links.
func chmodDir(root *os.Root, name string, mode fs.FileMode) error {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	err = f.Chmod(mode)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func setMtime(f *os.File, mtime time.Time) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	// UnixNano covers years 1678 to 2262; an archive's mtime outside that
	// is clamped rather than wrapped.
	var ns int64
	switch {
	case mtime.Before(time.Unix(0, math.MinInt64)):
		ns = math.MinInt64
	case mtime.After(time.Unix(0, math.MaxInt64)):
		ns = math.MaxInt64
	default:
		ns = mtime.UnixNano()
	}
	tv := unix.NsecToTimeval(ns)
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Futimes(int(fd), []unix.Timeval{tv, tv})
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set mtime: %w", serr)
	}
	return nil
}

// checkTrailing reads what follows the tar stream to the end of the gzip
// stream, which verifies its checksum, and accepts only zero padding.
func checkTrailing(gz io.Reader) error {
	var buf [32 << 10]byte
	var total int64
	for {
		n, err := gz.Read(buf[:])
		total += int64(n)
		if bytes.Count(buf[:n], []byte{0}) != n {
			return fmt.Errorf("read archive: %w: data after the end of the tar stream", ErrUnsafe)
		}
		if total > maxTrailing {
			return fmt.Errorf("read archive: %w: more than %d bytes of padding", ErrUnsafe, maxTrailing)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
	}
}
