package workspace

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
)

// Stats counts what a Checkpoint archived or a Restore wrote.
type Stats struct {
	Files    int64 // regular files
	Dirs     int64 // directories below the root
	Symlinks int64
	Bytes    int64 // content of the regular files
	// Skipped lists entries that Checkpoint left out (sockets, named pipes,
	// devices, entries it may not read), at most MaxSkippedListed of them;
	// SkippedCount counts them all.
	Skipped      []Skip
	SkippedCount int64
	// Changed lists regular files whose size changed while they were read
	// (a log a background process writes): the archive holds their first
	// Size bytes as they were, padded with zeros if the file shrank. At
	// most MaxSkippedListed are listed.
	Changed []string
}

// Skip is an entry that Checkpoint left out, and why.
type Skip struct {
	Path   string // slash-separated, relative to the workspace root
	Reason string
}

// MaxSkippedListed bounds Stats.Skipped and Stats.Changed, so that a
// workspace full of sockets cannot grow memory.
const MaxSkippedListed = 100

// Level is the gzip level of a checkpoint: the fastest. A checkpoint is on
// the path of every idle host exit and every cold start; the few percent a
// higher level saves cost more in CPU time than they save in transfer.
const Level = gzip.BestSpeed

// ErrUnsafe is wrapped by the errors Restore returns for an entry it
// refuses to write: an absolute or escaping name, a name through a symlink
// or through anything the archive did not create as a directory, a hard
// link, a device, a duplicate.
var ErrUnsafe = errors.New("unsafe archive entry")

// copyBufferSize is the size of the one buffer each call copies file
// content through.
const copyBufferSize = 256 << 10

func (s *Stats) skip(path, reason string) {
	s.SkippedCount++
	if len(s.Skipped) < MaxSkippedListed {
		s.Skipped = append(s.Skipped, Skip{Path: path, Reason: reason})
	}
}

// Checkpoint writes the tree under dir to w as a gzip-compressed tar
// stream. It keeps regular files (content, permission bits, mtime to the
// second), directories (permission bits) and symlinks (as links: it never
// follows one, the root included only if dir itself is not a link). It
// skips sockets, named pipes, devices and what it may not read, and
// reports them in Stats. Entries are written parents first, in lexical
// order, so equal trees give equal archives. Memory does not depend on
// the size of the tree: content is streamed through one buffer.
//
// Checkpoint does not flush or close w; it closes the gzip stream it
// wrote. On error, what was written to w is not a usable archive.
func Checkpoint(ctx context.Context, w io.Writer, dir string) (Stats, error) {
	var st Stats
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, fmt.Errorf("open workspace %s: %w", dir, err)
	}
	defer root.Close()

	gz, err := gzip.NewWriterLevel(w, Level)
	if err != nil {
		return st, fmt.Errorf("start gzip: %w", err)
	}
	tw := tar.NewWriter(gz)
	c := checkpointer{ctx: ctx, tw: tw, stats: &st, buf: make([]byte, copyBufferSize)}

	err = walk(ctx, root, &st, c.add)
	if err != nil {
		return st, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return st, fmt.Errorf("finish tar stream: %w", err)
	}
	if err := gz.Close(); err != nil {
		return st, fmt.Errorf("finish gzip stream: %w", err)
	}
	return st, nil
}

// walk calls visit for every entry below root, parents first in lexical
// order, never following a link. An entry that vanished or may not be read
// is skipped and counted in st: a workspace that commands keep changing
// must still checkpoint. The root itself is not visited: its mode belongs
// to whoever restores. visit returns fs.SkipDir to leave a directory's
// content out.
//
// Each entry is stat'ed once, by its name in its open parent directory:
// resolving every path from the root again (os.Root opens each directory
// on the way) cost a workspace of 200,000 files more than the stats
// themselves. One directory per level of the tree is open at a time.
func walk(ctx context.Context, root *os.Root, st *Stats, visit func(walkEntry) error) error {
	names, err := readNames(root)
	if err != nil {
		return err
	}
	return walkDir(ctx, root, "", names, st, visit)
}

// walkEntry is one entry walk visits.
type walkEntry struct {
	name string // slash-separated, below the root
	base string // the last element of name
	// dir is the entry's parent directory, open while the entry is
	// visited: open the entry as dir's base, never by name from the root.
	dir  *os.Root
	info fs.FileInfo // as lstat saw it: a link is a link
}

func walkDir(ctx context.Context, dir *os.Root, prefix string, names []string, st *Stats, visit func(walkEntry) error) error {
	for _, base := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := prefix + base
		info, err := dir.Lstat(base)
		if err != nil {
			st.skip(name, skipReason(err))
			continue
		}
		err = visit(walkEntry{name: name, base: base, dir: dir, info: info})
		if err == fs.SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if !info.IsDir() {
			continue
		}
		sub, subNames, err := openDir(dir, base, info)
		if err != nil {
			st.skip(name, skipReason(err))
			continue
		}
		err = walkDir(ctx, sub, name+"/", subNames, st, visit)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// openDir opens the directory base of dir that lstat described as info,
// and lists it. A directory swapped for something else (a link to another
// directory of the workspace, which os.Root would follow) since it was
// stat'ed is refused.
func openDir(dir *os.Root, base string, info fs.FileInfo) (*os.Root, []string, error) {
	sub, err := dir.OpenRoot(base)
	if err != nil {
		return nil, nil, err
	}
	now, err := sub.Stat(".")
	if err == nil && !os.SameFile(now, info) {
		err = errReplaced
	}
	var names []string
	if err == nil {
		names, err = readNames(sub)
	}
	if err != nil {
		sub.Close()
		return nil, nil, err
	}
	return sub, names, nil
}

// errReplaced is why walk skips a directory replaced while it walked.
var errReplaced = errors.New("replaced while it was read")

// readNames lists a directory's entries in lexical order.
func readNames(dir *os.Root) ([]string, error) {
	f, err := dir.Open(".")
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

type checkpointer struct {
	ctx   context.Context
	tw    *tar.Writer
	stats *Stats
	buf   []byte
}

// add archives one entry. Errors writing the archive are returned; errors
// reading the workspace skip the entry.
func (c *checkpointer) add(ent walkEntry) error {
	name, info := ent.name, ent.info
	switch typ := info.Mode().Type(); {
	case typ.IsDir():
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()}
		if err := c.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		c.stats.Dirs++
		return nil
	case typ&fs.ModeSymlink != 0:
		target, err := ent.dir.Readlink(ent.base)
		if err != nil {
			c.stats.skip(name, skipReason(err))
			return nil
		}
		hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: info.ModTime()}
		if err := c.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		c.stats.Symlinks++
		return nil
	case typ.IsRegular():
		return c.addFile(ent)
	default:
		c.stats.skip(name, kindName(typ))
		return nil
	}
}

// addFile archives a regular file from an open descriptor, so that what
// is archived is what was checked: O_NOFOLLOW refuses a file swapped for a
// symlink, O_NONBLOCK keeps a file swapped for a FIFO from blocking, and
// fstat tells the type, size, mode and mtime of what is actually read.
func (c *checkpointer) addFile(ent walkEntry) error {
	name := ent.name
	f, err := ent.dir.OpenFile(ent.base, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		c.stats.skip(name, skipReason(err))
		return nil
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		c.stats.skip(name, skipReason(err))
		return nil
	}
	if !info.Mode().IsRegular() {
		c.stats.skip(name, kindName(info.Mode().Type()))
		return nil
	}
	size := info.Size()
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()}
	if err := c.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	n, err := io.CopyBuffer(archiveWriter{c.tw}, io.LimitReader(ctxReader{c.ctx, f}, size), c.buf)
	if err != nil {
		var werr writeError
		if errors.As(err, &werr) || c.ctx.Err() != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		// The file could not be read to the end; keep the archive valid.
	}
	if n < size {
		// The file shrank (or failed) while being read: the header is
		// written, so pad to the declared size.
		if err := writeZeros(c.tw, size-n, c.buf); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if n < size || fileGrew(f, size) {
		if len(c.stats.Changed) < MaxSkippedListed {
			c.stats.Changed = append(c.stats.Changed, name)
		}
	}
	c.stats.Files++
	c.stats.Bytes += size
	return nil
}

func fileGrew(f *os.File, size int64) bool {
	info, err := f.Stat()
	return err == nil && info.Size() != size
}

func writeZeros(w io.Writer, n int64, buf []byte) error {
	clear(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return writeError{err}
		}
		n -= k
	}
	return nil
}

// archiveWriter marks the errors of the archive's writer.
type archiveWriter struct{ w io.Writer }

func (a archiveWriter) Write(p []byte) (int, error) {
	n, err := a.w.Write(p)
	if err != nil {
		err = writeError{err}
	}
	return n, err
}

// writeError marks an error of the archive's writer, as opposed to one of
// the workspace file being read, inside io.CopyBuffer.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func skipReason(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "vanished"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, syscall.ELOOP):
		return "replaced by a symlink"
	default:
		return err.Error()
	}
}

func kindName(typ fs.FileMode) string {
	switch {
	case typ&fs.ModeSocket != 0:
		return "socket"
	case typ&fs.ModeNamedPipe != 0:
		return "named pipe"
	case typ&fs.ModeCharDevice != 0:
		return "character device"
	case typ&fs.ModeDevice != 0:
		return "block device"
	default:
		return "unsupported file type " + strings.TrimSpace(typ.String())
	}
}
