package files

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteOptions says how Write writes.
type WriteOptions struct {
	// Mode is the file's mode after the write. Nil: a new file gets
	// DefaultMode (0644) and an existing one keeps its mode. The umask
	// does not apply.
	Mode *fs.FileMode
	// Append adds data at the end of the file (created if missing)
	// instead of replacing its content. An append is not atomic: it is
	// one write(2) to the file in place.
	Append bool
}

// copyBufferSize is the size of the one buffer WriteFrom streams through.
const copyBufferSize = 256 << 10

// maxSymlinkHops bounds the symlinks Write follows from path to the file
// it writes, as the kernel's ELOOP limit does.
const maxSymlinkHops = 40

// Write replaces the content of the file at path with data, or appends
// data to it, and describes the file afterwards. Missing parent
// directories are created (DirMode). A symlink at path is followed: the
// file it points to is written, even if it does not exist yet, and the
// link stays a link.
//
// A replacing write is atomic: data goes to a temporary file in the same
// directory, which is synced and then renamed over the file, with the
// mode the file is to have. A reader, or a crash of the host at any
// point, sees the old content or the new, never a part. The file becomes
// a new inode: hard links to the old one keep the old content.
//
// Writing a directory or anything but a regular file, or under a parent
// that is a file, wraps ErrPrecondition; permission denied too; a full
// disk wraps ErrTooLarge.
func (o Ops) Write(ctx context.Context, path string, data []byte, opt WriteOptions) (FileInfo, error) {
	const op = "write"
	abs, err := o.Resolve(path)
	if err != nil {
		return FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return FileInfo{}, createErr(op, abs, err)
	}
	t, err := prepareWrite(op, abs, opt.Mode)
	if err != nil {
		return FileInfo{}, err
	}
	if opt.Append {
		err = t.append(data, opt.Mode != nil)
	} else {
		err = t.replace(func(f *os.File) error {
			_, err := f.Write(data)
			return err
		})
	}
	if err != nil {
		return FileInfo{}, err
	}
	return t.info(path)
}

// WriteFrom writes what r yields into the file at path as Write does
// without Append (parents created, symlink followed, temporary file and
// rename, mode kept or given), streaming through one fixed buffer: memory
// does not grow with the size of the file. It checks ctx between buffers;
// when ctx ends or r fails, the file is left as it was and the temporary
// file is removed. An error of r is returned wrapped, with no sentinel.
func (o Ops) WriteFrom(ctx context.Context, path string, r io.Reader, mode *fs.FileMode) (FileInfo, error) {
	const op = "write"
	abs, err := o.Resolve(path)
	if err != nil {
		return FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return FileInfo{}, createErr(op, abs, err)
	}
	t, err := prepareWrite(op, abs, mode)
	if err != nil {
		return FileInfo{}, err
	}
	buf := make([]byte, copyBufferSize)
	err = t.replace(func(f *os.File) error {
		return copyContext(ctx, f, r, buf)
	})
	if err != nil {
		return FileInfo{}, err
	}
	return t.info(path)
}

// writeTarget is the regular file a write goes to.
type writeTarget struct {
	op     string
	abs    string      // where the request's path resolved
	file   string      // the file written: abs with symlinks followed
	exists bool        // file exists
	mode   fs.FileMode // the mode file has after the write
}

// prepareWrite finds the file a write to abs goes to and makes sure its
// directory exists.
func prepareWrite(op, abs string, mode *fs.FileMode) (*writeTarget, error) {
	file, err := followSymlinks(abs)
	if err != nil {
		return nil, createErr(op, abs, err)
	}
	t := &writeTarget{op: op, abs: abs, file: file, mode: DefaultMode}
	fi, err := os.Lstat(file)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			if fi.IsDir() {
				return nil, newError(op, abs, ErrPrecondition, "is a directory")
			}
			return nil, newError(op, abs, ErrPrecondition, "not a regular file (%s)", typeName(fi.Mode()))
		}
		t.exists, t.mode = true, fi.Mode()&modeBits
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(file), DirMode); err != nil {
			return nil, createErr(op, abs, err)
		}
	default:
		return nil, createErr(op, abs, err)
	}
	if mode != nil {
		t.mode = *mode & modeBits
	}
	return t, nil
}

// followSymlinks follows the symlinks at the end of abs (not those among
// its parents, which the kernel follows) to the path of the file a write
// goes to, which may not exist yet.
func followSymlinks(abs string) (string, error) {
	p := abs
	for hops := 0; ; hops++ {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return p, nil
		}
		if hops == maxSymlinkHops {
			return "", &fs.PathError{Op: "open", Path: abs, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			// A relative target is relative to the link's real directory.
			dir := filepath.Dir(p)
			if real, err := filepath.EvalSymlinks(dir); err == nil {
				dir = real
			}
			target = filepath.Join(dir, target)
		}
		p = target
	}
}

// replace writes the file's new content with fill into a temporary file
// beside it and renames that over the file.
func (t *writeTarget) replace(fill func(*os.File) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(t.file), ".sandrun-write-*")
	if err != nil {
		return createErr(t.op, t.abs, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		var se sourceError
		if errors.As(err, &se) {
			return &opError{op: t.op, path: t.abs, msg: err.Error(), err: err}
		}
		return createErr(t.op, t.abs, err)
	}
	if err := tmp.Chmod(t.mode); err != nil {
		return createErr(t.op, t.abs, err)
	}
	if err := tmp.Sync(); err != nil {
		return createErr(t.op, t.abs, err)
	}
	if err := tmp.Close(); err != nil {
		return createErr(t.op, t.abs, err)
	}
	if err := os.Rename(tmp.Name(), t.file); err != nil {
		return createErr(t.op, t.abs, err)
	}
	return nil
}

// append adds data at the end of the file, creating it if needed. The
// mode is set when the file is new (the umask would cut it otherwise) or
// when one was given.
func (t *writeTarget) append(data []byte, setMode bool) error {
	f, err := os.OpenFile(t.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK, t.mode.Perm())
	if err != nil {
		return createErr(t.op, t.abs, err)
	}
	defer f.Close()
	if ownProcEntry(f) {
		return errOwnProc(t.op, t.abs)
	}
	if !t.exists || setMode {
		if err := f.Chmod(t.mode); err != nil {
			return createErr(t.op, t.abs, err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return createErr(t.op, t.abs, err)
	}
	if err := f.Close(); err != nil {
		return createErr(t.op, t.abs, err)
	}
	return nil
}

// info describes the file after the write, under the request's path.
func (t *writeTarget) info(path string) (FileInfo, error) {
	fi, err := os.Stat(t.file)
	if err != nil {
		return FileInfo{}, lookupErr("stat", t.abs, err)
	}
	return newFileInfo(path, t.file, fi), nil
}

// sourceError is an error of the reader WriteFrom copies from: not the
// file system's, so it gets no sentinel.
type sourceError struct{ err error }

func (e sourceError) Error() string { return "read source: " + e.err.Error() }
func (e sourceError) Unwrap() error { return e.err }

// copyContext copies r to w through buf, checking ctx before each read.
// Errors of r are sourceErrors; the context's error is returned as is.
func copyContext(ctx context.Context, w io.Writer, r io.Reader, buf []byte) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			return sourceError{rerr}
		}
	}
}

// Delete removes the entry at path. A symlink is removed, never what it
// points to; a file is removed; a directory is removed if empty, and with
// its contents only when recursive is set (the walk does not follow
// symlinks inside it either). A missing entry wraps ErrNotFound; a
// non-empty directory without recursive wraps ErrPrecondition.
func (o Ops) Delete(ctx context.Context, path string, recursive bool) error {
	const op = "delete"
	abs, err := o.Resolve(path)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return lookupErr(op, abs, err)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return lookupErr(op, abs, err)
	}
	if abs == "/" {
		return newError(op, abs, ErrInvalid, "refusing to delete the root directory")
	}
	if !fi.IsDir() || !recursive {
		err := os.Remove(abs)
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.ENOTEMPTY || errno == syscall.EEXIST) {
			return newError(op, abs, ErrPrecondition, "directory not empty; set recursive to delete it with its contents")
		}
		if err != nil {
			return lookupErr(op, abs, err)
		}
		return nil
	}
	// os.RemoveAll walks with openat and unlinkat relative to each
	// directory and never follows a symlink.
	if err := os.RemoveAll(abs); err != nil {
		return lookupErr(op, abs, err)
	}
	return nil
}
