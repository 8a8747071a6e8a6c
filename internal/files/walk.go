package files

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// ListOptions says what List returns.
type ListOptions struct {
	// Recursive lists the whole tree below the directory, not only its
	// entries.
	Recursive bool
	// MaxDepth, with Recursive, is how many levels below the directory
	// are listed (1: its entries only); 0 means no limit.
	MaxDepth int
	// Hidden includes entries whose name starts with "."; without it a
	// hidden directory is not entered either.
	Hidden bool
	// MaxResults is how many entries are returned at most; 0 means
	// DefaultMaxResults, and more than MaxResults is invalid.
	MaxResults int
}

// FindOptions says what Find looks for.
type FindOptions struct {
	// Pattern is the glob that an entry's path relative to the root must
	// match as a whole, with "/" separators: "*" matches any run of
	// characters but "/", "?" one character but "/", "[...]" one
	// character of a class ("[!...]" or "[^...]" negated), "{a,b}" either
	// alternative, "\" escapes the next character, and "**" as a whole
	// path component matches any number of directories, none included
	// ("**/*.py" matches "a.py" and "x/y/a.py").
	Pattern string
	// MaxDepth is how many levels below the root are searched (1: its
	// entries only); 0 means no limit.
	MaxDepth int
	// Hidden includes entries whose name starts with "." and enters
	// hidden directories. Hidden directories that Pattern names literally
	// before its first wildcard (".github/**/*.yml") are entered anyway.
	Hidden bool
	// MaxResults is List's.
	MaxResults int
}

// ListResult holds the entries List or Find found.
type ListResult struct {
	// Entries are in tree order: depth first, each directory's entries
	// sorted by name (bytewise), a directory right before its contents.
	// Their paths are relative to the listed root, with "/" separators.
	Entries []FileInfo
	// Truncated reports that MaxResults cut the entries: there were more.
	Truncated bool
}

// errStop ends a walk early without an error.
var errStop = errors.New("stop walk")

// walker walks a tree in order without following symlinks. Entries below
// the root that it may not read (a directory without permission, an entry
// that vanished) are skipped.
type walker struct {
	ctx      context.Context
	maxDepth int // 0: no limit
	hidden   bool
	// visit is called for each entry; abs is its path, rel its path
	// relative to the root. A directory is entered after visit returns
	// unless the depth limit forbids it. visit returns errStop to end the
	// walk.
	visit func(abs, rel string, d fs.DirEntry) error
}

// walk visits the entries below the directory abs, whose path relative to
// the root is rel ("" for the root) and whose entries lie at depth. An
// error reading the directory is returned only for the first one, which
// the caller named.
func (w *walker) walk(abs, rel string, depth int, first bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(abs)
	if err != nil && first {
		return err
	}
	// On an error below the root, ReadDir returns what it read before it:
	// visit those.
	for _, d := range entries {
		name := d.Name()
		if !w.hidden && strings.HasPrefix(name, ".") {
			continue
		}
		childAbs, childRel := joinPath(abs, name), name
		if rel != "" {
			childRel = rel + "/" + name
		}
		if err := w.visit(childAbs, childRel, d); err != nil {
			return err
		}
		// A DirEntry from ReadDir has the type lstat gives: a symlink to
		// a directory is not a directory, so the walk never follows one.
		if d.IsDir() && (w.maxDepth == 0 || depth < w.maxDepth) {
			if err := w.walk(childAbs, childRel, depth+1, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// joinPath joins a clean absolute directory and a name.
func joinPath(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// checkLimits validates MaxDepth and MaxResults and returns the number of
// results to collect.
func checkLimits(op, abs string, maxDepth, maxResults int) (int, error) {
	switch {
	case maxDepth < 0:
		return 0, newError(op, abs, ErrInvalid, "max depth must not be negative")
	case maxResults < 0 || maxResults > MaxResults:
		return 0, newError(op, abs, ErrInvalid, "max results must be between 0 and %d", MaxResults)
	case maxResults == 0:
		return DefaultMaxResults, nil
	}
	return maxResults, nil
}

// openDir checks that the root abs of a walk is a directory, following a
// symlink at the root itself: the caller named it.
func openDir(op, abs string) error {
	fi, err := os.Stat(abs)
	if err != nil {
		return lookupErr(op, abs, err)
	}
	if !fi.IsDir() {
		return newError(op, abs, ErrPrecondition, "not a directory")
	}
	return nil
}

// entryCollector gathers FileInfos up to a limit.
type entryCollector struct {
	max int
	res ListResult
}

// add describes the entry and ends the walk when one more than max was
// found.
func (c *entryCollector) add(abs, rel string, d fs.DirEntry) error {
	if len(c.res.Entries) == c.max {
		c.res.Truncated = true
		return errStop
	}
	fi, err := d.Info()
	if err != nil {
		return nil // vanished since the directory was read
	}
	c.res.Entries = append(c.res.Entries, newFileInfo(rel, abs, fi))
	return nil
}

// List lists the directory at path (the working directory when path is
// empty): its entries, or with Recursive the tree below it. A symlink at
// path itself is followed; symlinks below it are listed as links and never
// entered, so a link loop ends nowhere. Entries it may not read below the
// root are left out. A missing path wraps ErrNotFound, a path that is not
// a directory ErrPrecondition.
func (o Ops) List(ctx context.Context, path string, opt ListOptions) (ListResult, error) {
	const op = "list"
	abs, err := o.resolveRoot(path)
	if err != nil {
		return ListResult{}, err
	}
	max, err := checkLimits(op, abs, opt.MaxDepth, opt.MaxResults)
	if err != nil {
		return ListResult{}, err
	}
	if err := openDir(op, abs); err != nil {
		return ListResult{}, err
	}
	depth := opt.MaxDepth
	if !opt.Recursive {
		depth = 1
	}
	c := entryCollector{max: max}
	w := walker{ctx: ctx, maxDepth: depth, hidden: opt.Hidden, visit: c.add}
	if err := w.walk(abs, "", 1, true); err != nil && err != errStop {
		return ListResult{}, lookupErr(op, abs, err)
	}
	return c.res, nil
}

// compileGlob checks a glob given in a request: not empty, valid, relative
// and without ".." (it is matched against paths below a root). A leading
// "./" is dropped.
func compileGlob(op, abs, field, glob string) (string, error) {
	glob = strings.TrimPrefix(glob, "./")
	switch {
	case glob == "":
		return "", newError(op, abs, ErrInvalid, "%s is empty", field)
	case !doublestar.ValidatePattern(glob):
		return "", newError(op, abs, ErrInvalid, "%s %q is not a valid glob", field, clip(glob, 200))
	case strings.HasPrefix(glob, "/"):
		return "", newError(op, abs, ErrInvalid, "%s %q is absolute; it is matched against paths relative to %s", field, clip(glob, 200), abs)
	}
	for _, part := range strings.Split(glob, "/") {
		if part == ".." {
			return "", newError(op, abs, ErrInvalid, "%s %q holds \"..\"; it is matched against paths below %s", field, clip(glob, 200), abs)
		}
	}
	return glob, nil
}

// Find lists the entries below the directory at path (the working
// directory when empty) whose path relative to it matches opt.Pattern
// (see FindOptions), in List's order and with List's treatment of
// symlinks: never entered, so a link loop ends nowhere. A bad pattern
// wraps ErrInvalid.
//
// Find walks only below the literal directories the pattern starts with
// ("src/**/*.go" walks src), so a narrow pattern does not pay for the
// whole tree.
func (o Ops) Find(ctx context.Context, path string, opt FindOptions) (ListResult, error) {
	const op = "find"
	abs, err := o.resolveRoot(path)
	if err != nil {
		return ListResult{}, err
	}
	pattern, err := compileGlob(op, abs, "pattern", opt.Pattern)
	if err != nil {
		return ListResult{}, err
	}
	max, err := checkLimits(op, abs, opt.MaxDepth, opt.MaxResults)
	if err != nil {
		return ListResult{}, err
	}
	if err := openDir(op, abs); err != nil {
		return ListResult{}, err
	}
	c := entryCollector{max: max}
	w := walker{ctx: ctx, maxDepth: opt.MaxDepth, hidden: opt.Hidden, visit: func(a, rel string, d fs.DirEntry) error {
		if !doublestar.MatchUnvalidated(pattern, rel) {
			return nil
		}
		return c.add(a, rel, d)
	}}
	err = w.fromBase(abs, pattern)
	if err != nil && err != errStop {
		return ListResult{}, lookupErr(op, abs, err)
	}
	return c.res, nil
}

// fromBase walks the tree below root that can hold matches of the glob
// pattern: below the literal directories it starts with. Every match
// lies below them, except the base itself, which is visited (and matched)
// first when it exists. A base through a symlink or a file is not
// entered, as a whole walk would not enter it.
func (w *walker) fromBase(root, pattern string) error {
	base, _ := doublestar.SplitPattern(pattern)
	if base == "." || base != path.Clean(base) || base == "/" {
		return w.walk(root, "", 1, true)
	}
	parts := strings.Split(base, "/")
	if w.maxDepth != 0 && len(parts) > w.maxDepth {
		return nil
	}
	abs := root
	for i, part := range parts {
		abs = joinPath(abs, part)
		fi, err := os.Lstat(abs)
		if err != nil {
			return nil // nothing there, nothing to find
		}
		if i < len(parts)-1 && !fi.IsDir() {
			return nil
		}
	}
	fi, _ := os.Lstat(abs)
	if err := w.visit(abs, base, fs.FileInfoToDirEntry(fi)); err != nil {
		return err
	}
	if !fi.IsDir() || (w.maxDepth != 0 && len(parts) >= w.maxDepth) {
		return nil
	}
	return w.walk(abs, base, len(parts)+1, false)
}
