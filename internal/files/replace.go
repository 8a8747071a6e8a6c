package files

import (
	"bytes"
	"context"
	"io"
	"os"
)

// ReplaceOptions says what Replace replaces.
type ReplaceOptions struct {
	// OldString is the exact bytes to find; it must not be empty.
	OldString string
	// NewString replaces each occurrence.
	NewString string
	// ExpectedCount is the number of non-overlapping occurrences that
	// must be found, else nothing changes; 0 means 1. Ignored with
	// ReplaceAll.
	ExpectedCount int
	// ReplaceAll replaces every occurrence, of which there must be at
	// least one.
	ReplaceAll bool
}

// Replace replaces the non-overlapping occurrences of OldString in the
// regular file at path (a symlink is followed) with NewString, exactly
// byte for byte, and returns how many it replaced. Unless ReplaceAll is
// set, the occurrences found must number ExpectedCount; otherwise, or
// when there is none with ReplaceAll, the file is left untouched and the
// error wraps ErrPrecondition with the count found. The new content is
// written atomically, as Write does, and the file keeps its mode.
//
// The file is edited in memory: a file, or a result, larger than
// MaxReplaceBytes wraps ErrTooLarge. A missing file wraps ErrNotFound, a
// directory ErrPrecondition, an empty OldString ErrInvalid.
func (o Ops) Replace(ctx context.Context, path string, opt ReplaceOptions) (int, error) {
	const op = "replace"
	abs, err := o.Resolve(path)
	if err != nil {
		return 0, err
	}
	switch {
	case opt.OldString == "":
		return 0, newError(op, abs, ErrInvalid, "old_string is empty")
	case opt.ExpectedCount < 0:
		return 0, newError(op, abs, ErrInvalid, "expected_count must not be negative")
	}
	expected := opt.ExpectedCount
	if expected == 0 {
		expected = 1
	}
	if err := ctx.Err(); err != nil {
		return 0, lookupErr(op, abs, err)
	}
	file, err := followSymlinks(abs)
	if err != nil {
		return 0, lookupErr(op, abs, err)
	}
	f, fi, err := openRegular(op, file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if fi.Size() > MaxReplaceBytes {
		return 0, newError(op, abs, ErrTooLarge, "file is %d bytes; replace edits files up to %d bytes", fi.Size(), MaxReplaceBytes)
	}
	data := make([]byte, fi.Size())
	n, err := io.ReadFull(f, data)
	if err != nil && err != io.ErrUnexpectedEOF { // a file that shrank is read as it is
		return 0, lookupErr(op, abs, err)
	}
	data = data[:n]
	f.Close()

	old, repl := []byte(opt.OldString), []byte(opt.NewString)
	count := bytes.Count(data, old)
	switch {
	case opt.ReplaceAll && count == 0:
		return 0, newError(op, abs, ErrPrecondition, "old_string not found; nothing changed")
	case !opt.ReplaceAll && count != expected:
		return 0, newError(op, abs, ErrPrecondition, "found %d %s of old_string, expected %d; nothing changed",
			count, plural(count, "occurrence", "occurrences"), expected)
	}
	if size := int64(len(data)) + int64(count)*int64(len(repl)-len(old)); size > MaxReplaceBytes {
		return 0, newError(op, abs, ErrTooLarge, "the result would be %d bytes; replace edits files up to %d bytes", size, MaxReplaceBytes)
	}
	out := bytes.Replace(data, old, repl, -1)
	if err := ctx.Err(); err != nil {
		return 0, lookupErr(op, abs, err)
	}
	t := &writeTarget{op: op, abs: abs, file: file, exists: true, mode: fi.Mode() & modeBits}
	if err := t.replace(func(f *os.File) error {
		_, err := f.Write(out)
		return err
	}); err != nil {
		return 0, err
	}
	return count, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
