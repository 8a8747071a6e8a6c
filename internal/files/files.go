package files

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Limits. The values match the wire contract's (api.MaxPathBytes,
// api.MaxInlineFileBytes, api.MaxResults, api.DefaultMaxResults); the host
// passes its own where an option takes one.
const (
	// MaxPathBytes bounds a path, before and after resolving it.
	MaxPathBytes = 4096
	// DefaultMaxInline is how many bytes Read returns at most when
	// ReadOptions.MaxInline is 0.
	DefaultMaxInline = 192 << 10
	// DefaultMaxResults is the number of entries or matches List, Find and
	// Search return at most when their MaxResults is 0.
	DefaultMaxResults = 1000
	// MaxResults is the largest MaxResults List, Find and Search accept.
	MaxResults = 10000
	// MaxReplaceBytes bounds the file Replace edits, before and after
	// the edit: Replace holds the file in memory.
	MaxReplaceBytes = 64 << 20
	// MaxLineBytes bounds Match.Line.
	MaxLineBytes = 1000
	// SearchLineBytes is how much of one line Search matches against: a
	// longer line is matched on its first SearchLineBytes bytes and the
	// rest of it is skipped, so that a huge single-line file costs no more
	// memory than a small one.
	SearchLineBytes = 64 << 10
	// BinarySniffBytes is how much of a file Search looks at for a NUL
	// byte to decide that it is binary and skip it.
	BinarySniffBytes = 8 << 10
	// DefaultMode is the mode of a file Write or WriteFrom creates when no
	// mode is given.
	DefaultMode fs.FileMode = 0o644
	// DirMode is the mode of the parent directories Write and WriteFrom
	// create (before the umask).
	DirMode fs.FileMode = 0o755
)

// Ops performs the file operations of a session. It holds no state but
// the working directory: a value is safe for concurrent use, and the host
// can make one per request. The zero value resolves only absolute paths.
type Ops struct {
	// Cwd is the session's working directory, an absolute path. Relative
	// paths resolve against it; List, Find and Search use it when their
	// path is empty.
	Cwd string
	// Home is the session's home directory, an absolute path: a path that
	// is "~" or starts with "~/" resolves under it, as the shell expands
	// it. Empty: such a path is an error.
	Home string
}

// ResolvePath turns path as a request gives it into the absolute, clean
// path the operations act on: a relative path is joined to cwd, an
// absolute one is kept (the sandbox user may touch any file it can), and
// either is cleaned lexically (".." removes the component before it, as
// filepath.Clean does; symlinks are not resolved). An empty path, a path
// holding a NUL byte, a path or result longer than MaxPathBytes, and a
// relative path with a cwd that is not absolute are errors wrapping
// ErrInvalid.
//
// A path that is "~" or starts with "~/" means home, as in the shell: it
// resolves under home, which must then be absolute. Other names starting
// with "~" ("~user", "~x.txt") are ordinary names.
func ResolvePath(home, cwd, path string) (string, error) {
	const op = "resolve path"
	switch {
	case path == "":
		return "", newError(op, "", ErrInvalid, "path is empty")
	case len(path) > MaxPathBytes:
		return "", newError(op, "", ErrInvalid, "path is %d bytes; the limit is %d", len(path), MaxPathBytes)
	case strings.IndexByte(path, 0) >= 0:
		return "", newError(op, "", ErrInvalid, "path holds a NUL byte at byte %d", strings.IndexByte(path, 0))
	}
	if path == "~" || strings.HasPrefix(path, "~/") {
		if !filepath.IsAbs(home) || len(home) > MaxPathBytes || strings.IndexByte(home, 0) >= 0 {
			return "", newError(op, "", ErrInvalid, "path %q starts with ~, but the session has no home directory", clip(path, 200))
		}
		// "~/x" is "x" in home: resolved as a relative path from there.
		cwd, path = home, "."+path[1:]
	}
	if filepath.IsAbs(path) {
		return filepath.Clean(path), nil
	}
	if !filepath.IsAbs(cwd) || len(cwd) > MaxPathBytes || strings.IndexByte(cwd, 0) >= 0 {
		return "", newError(op, "", ErrInvalid, "relative path %q needs an absolute working directory, not %q", path, clip(cwd, 200))
	}
	p := filepath.Join(cwd, path)
	if len(p) > MaxPathBytes {
		return "", newError(op, "", ErrInvalid, "path resolves to %d bytes; the limit is %d", len(p), MaxPathBytes)
	}
	return p, nil
}

// Resolve is ResolvePath against o.Home and o.Cwd.
func (o Ops) Resolve(path string) (string, error) {
	return ResolvePath(o.Home, o.Cwd, path)
}

// resolveRoot resolves the root of List, Find and Search: an empty path
// is the working directory.
func (o Ops) resolveRoot(path string) (string, error) {
	if path == "" {
		path = "."
	}
	return o.Resolve(path)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// FileType is the kind of a file system entry, as the wire contract
// spells it.
type FileType string

// The types of FileInfo.Type.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	TypeOther   FileType = "other" // a socket, named pipe or device
)

// FileInfo describes one file system entry, as the wire's FileInfo does.
type FileInfo struct {
	// Path is the path as the request gave it (Stat, Exists, Write,
	// WriteFrom, OpenForRead) or, for List and Find, the entry's path
	// relative to the listed root with "/" separators.
	Path string
	Type FileType
	// Size is the length of a regular file or of a symlink's target text;
	// 0 for directories and other entries.
	Size int64
	// Mode holds the permission bits and the setuid, setgid and sticky
	// bits; FormatMode writes it as the wire's octal string.
	Mode       fs.FileMode
	ModifiedAt time.Time
	// Target is what a symlink points to, as stored in the link.
	Target string
}

// modeBits are the bits of fs.FileMode that FileInfo.Mode keeps and that
// ParseMode and FormatMode translate.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// newFileInfo describes fi, found at abs, under the name path. A symlink's
// target is read from abs.
func newFileInfo(path, abs string, fi fs.FileInfo) FileInfo {
	info := FileInfo{Path: path, Mode: fi.Mode() & modeBits, ModifiedAt: fi.ModTime()}
	switch m := fi.Mode(); {
	case m.IsRegular():
		info.Type, info.Size = TypeFile, fi.Size()
	case m.IsDir():
		info.Type = TypeDir
	case m&fs.ModeSymlink != 0:
		info.Type, info.Size = TypeSymlink, fi.Size()
		info.Target, _ = os.Readlink(abs) // a link that vanished since keeps an empty target
	default:
		info.Type = TypeOther
	}
	return info
}

// ParseMode reads a mode as the wire gives it: octal digits such as "644",
// "0644" or "4755" (permission bits plus setuid 04000, setgid 02000,
// sticky 01000). Anything else wraps ErrInvalid.
func ParseMode(s string) (fs.FileMode, error) {
	bad := func() (fs.FileMode, error) {
		return 0, newError("parse mode", "", ErrInvalid, "mode %q is not an octal mode like \"0644\"", clip(s, 20))
	}
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "01234567") != "" {
		return bad()
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return bad()
	}
	m := fs.FileMode(n) & fs.ModePerm
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// FormatMode writes the permission, setuid, setgid and sticky bits of m
// as four octal digits, "0644" or "4755".
func FormatMode(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

// Stat describes the entry at path without following a symlink: a link is
// reported as a symlink with its target. A missing entry (or a parent that
// is not a directory) wraps ErrNotFound.
func (o Ops) Stat(ctx context.Context, path string) (FileInfo, error) {
	abs, err := o.Resolve(path)
	if err != nil {
		return FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return FileInfo{}, lookupErr("stat", abs, err)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return FileInfo{}, lookupErr("stat", abs, err)
	}
	return newFileInfo(path, abs, fi), nil
}

// Exists is Stat that reports a missing entry as false instead of an
// error.
func (o Ops) Exists(ctx context.Context, path string) (FileInfo, bool, error) {
	info, err := o.Stat(ctx, path)
	switch {
	case errors.Is(err, ErrNotFound):
		return FileInfo{}, false, nil
	case err != nil:
		return FileInfo{}, false, err
	}
	return info, true, nil
}
