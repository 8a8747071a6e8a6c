package files

import (
	"bytes"
	"context"
	"io"
	"os"
	"syscall"
)

// ReadOptions says which part of a file Read returns.
type ReadOptions struct {
	// Offset is where to start, ≥ 0. An offset at or past the end gives
	// empty content and EOF.
	Offset int64
	// Length is how many bytes to return at most, ≥ 0; 0 means as many as
	// MaxInline allows.
	Length int64
	// MaxInline caps the bytes one Read returns, whatever Length asks;
	// 0 means DefaultMaxInline. A larger part of a file travels by
	// OpenForRead (file.download).
	MaxInline int
}

// ReadResult is a part of a file.
type ReadResult struct {
	Content []byte
	// Size is the file's whole size when it was opened.
	Size int64
	// EOF reports that Content reaches the end of the file.
	EOF bool
}

// Read returns at most min(Length, MaxInline) bytes of the regular file at
// path from Offset, reading only those (one pread); a symlink is followed.
// A missing file wraps ErrNotFound; a directory or anything but a regular
// file wraps ErrPrecondition; negative options wrap ErrInvalid.
//
// A file that the system reports as empty but that has content (the
// pseudo-files of /proc and /sys) is read up to the limit; its Size is
// then what was seen.
func (o Ops) Read(ctx context.Context, path string, opt ReadOptions) (ReadResult, error) {
	const op = "read"
	abs, err := o.Resolve(path)
	if err != nil {
		return ReadResult{}, err
	}
	if opt.Offset < 0 || opt.Length < 0 || opt.MaxInline < 0 {
		return ReadResult{}, newError(op, abs, ErrInvalid, "offset, length and max inline must not be negative")
	}
	if err := ctx.Err(); err != nil {
		return ReadResult{}, lookupErr(op, abs, err)
	}
	limit := int64(opt.MaxInline)
	if limit == 0 {
		limit = DefaultMaxInline
	}
	if opt.Length > 0 && opt.Length < limit {
		limit = opt.Length
	}
	f, fi, err := openRegular(op, abs)
	if err != nil {
		return ReadResult{}, err
	}
	defer f.Close()

	size := fi.Size()
	if size == 0 {
		return readUnsized(op, abs, f, opt.Offset, limit)
	}
	if opt.Offset >= size {
		return ReadResult{Size: size, EOF: true}, nil
	}
	buf := make([]byte, min(limit, size-opt.Offset))
	n, err := f.ReadAt(buf, opt.Offset)
	if err != nil && err != io.EOF {
		return ReadResult{}, lookupErr(op, abs, err)
	}
	return ReadResult{Content: buf[:n], Size: size, EOF: opt.Offset+int64(n) >= size}, nil
}

// readUnsized reads a file whose size the system reports as 0: up to
// limit bytes from offset, and one more to learn whether the end is
// reached. The buffer grows with what is there, not with limit.
func readUnsized(op, abs string, f *os.File, offset, limit int64) (ReadResult, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.NewSectionReader(f, offset, limit+1)); err != nil {
		return ReadResult{}, lookupErr(op, abs, err)
	}
	content := buf.Bytes()
	if int64(len(content)) > limit {
		return ReadResult{Content: content[:limit], Size: offset + int64(len(content)), EOF: false}, nil
	}
	if len(content) == 0 {
		content = nil
	}
	return ReadResult{Content: content, Size: offset + int64(len(content)), EOF: true}, nil
}

// OpenForRead opens the regular file at path for streaming it elsewhere
// (file.download), following a symlink, and describes what it opened (the
// FileInfo comes from the open descriptor, so it is the file being read).
// The caller closes the file. Errors are Read's.
func (o Ops) OpenForRead(ctx context.Context, path string) (*os.File, FileInfo, error) {
	const op = "open"
	abs, err := o.Resolve(path)
	if err != nil {
		return nil, FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, FileInfo{}, lookupErr(op, abs, err)
	}
	f, fi, err := openRegular(op, abs)
	if err != nil {
		return nil, FileInfo{}, err
	}
	return f, newFileInfo(path, abs, fi), nil
}

// openRegular opens abs for reading, following symlinks, and makes sure
// it is a regular file. O_NONBLOCK keeps a named pipe from blocking the
// open; fstat then tells what was actually opened.
func openRegular(op, abs string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, lookupErr(op, abs, err)
	}
	if ownProcEntry(f) {
		f.Close()
		return nil, nil, errOwnProc(op, abs)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, lookupErr(op, abs, err)
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		f.Close()
		return nil, nil, newError(op, abs, ErrPrecondition, "is a directory")
	case !m.IsRegular():
		f.Close()
		return nil, nil, newError(op, abs, ErrPrecondition, "not a regular file (%s)", typeName(m))
	}
	return f, fi, nil
}

// typeName names the type of an entry that is not a regular file.
func typeName(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeSymlink != 0:
		return "symlink"
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	default:
		return "irregular file"
	}
}
