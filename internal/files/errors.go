package files

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// The errors a caller branches on. Every error this package returns for a
// bad request or a file system state wraps exactly one of them (and, when
// there is one, the underlying *fs.PathError too, so errors.Is(err,
// fs.ErrNotExist) keeps working). Errors that wrap none of them are
// failures of the machine (an I/O error, the context ending).
var (
	// ErrInvalid: the request itself is wrong (a NUL byte in a path, a
	// path too long, a bad glob or regular expression, a bad mode).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: the file or directory does not exist.
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: the file system's state does not allow the
	// operation: not a directory, is a directory, directory not empty, a
	// different number of occurrences than expected, permission denied,
	// too many levels of symbolic links.
	ErrPrecondition = errors.New("failed precondition")
	// ErrTooLarge: a file or the disk is over a limit (a file too large to
	// edit in memory, no space left on the device).
	ErrTooLarge = errors.New("too large")
)

// opError is the error of one operation on one path. Its message reads
// "op path: what went wrong" without repeating the sentinel's text, so the
// host can put it into error.message next to the code it maps the
// sentinel to.
type opError struct {
	op   string
	path string
	kind error // one of the sentinels, or nil
	msg  string
	err  error // the underlying error, or nil
}

func (e *opError) Error() string {
	if e.path == "" {
		return e.op + ": " + e.msg
	}
	return e.op + " " + e.path + ": " + e.msg
}

func (e *opError) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// newError returns an error of kind for op on path.
func newError(op, path string, kind error, format string, args ...any) error {
	return &opError{op: op, path: path, kind: kind, msg: fmt.Sprintf(format, args...)}
}

// errOwnProc is the error for a file of the host's own /proc directory
// (see ownProcEntry).
func errOwnProc(op, path string) error {
	return newError(op, path, ErrPrecondition, "permission denied: the session host's own /proc entries are not served")
}

// lookupErr classifies an error of the operating system met while looking
// at an existing path: a missing component, or one that is a file where a
// directory was needed, is ErrNotFound.
func lookupErr(op, path string, err error) error {
	return osError(op, path, err, ErrNotFound)
}

// createErr classifies an error met while creating a path: a component
// that is a file where a directory is needed is ErrPrecondition.
func createErr(op, path string, err error) error {
	return osError(op, path, err, ErrPrecondition)
}

func osError(op, path string, err error, notDir error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &opError{op: op, path: path, msg: err.Error(), err: err}
	}
	msg := err.Error()
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		msg = pe.Err.Error()
	case errors.As(err, &le):
		msg = le.Err.Error()
	}
	var kind error
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && errno == syscall.ENOTDIR:
		kind = notDir
		if notDir == ErrPrecondition {
			msg = "a parent is not a directory"
		}
	case errors.Is(err, fs.ErrNotExist):
		kind = ErrNotFound
	case errors.Is(err, fs.ErrPermission), errors.As(err, &errno) && (errno == syscall.EISDIR ||
		errno == syscall.ENOTEMPTY || errno == syscall.EEXIST || errno == syscall.ELOOP ||
		errno == syscall.EROFS || errno == syscall.ETXTBSY || errno == syscall.EBUSY):
		kind = ErrPrecondition
	case errors.As(err, &errno) && (errno == syscall.ENAMETOOLONG || errno == syscall.EINVAL):
		kind = ErrInvalid
	case errors.As(err, &errno) && (errno == syscall.ENOSPC || errno == syscall.EDQUOT || errno == syscall.EFBIG):
		kind = ErrTooLarge
	}
	return &opError{op: op, path: path, kind: kind, msg: msg, err: err}
}
