package api

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// The glob syntax of file.find's pattern and file.search's include. A glob
// is matched against a file's path relative to the directory searched, with
// '/' between its names, as a whole (not against the base name alone):
//
//   - the glob is one or more segments joined by '/': it neither begins
//     nor ends with '/', and has no empty segment;
//   - a segment "**" matches any number of whole names, none included, so
//     "**/*.py" matches a.py, src/a.py and src/x/a.py;
//   - any other segment matches exactly one name, as path.Match matches
//     it: '*' matches any run of characters, '?' any one character, "[...]"
//     one character of a class ("[a-z]", "[^0-9]" for not a digit), and
//     '\' makes the next character literal.
//
// A leading '.' is not special to a glob: whether names starting with '.'
// are considered at all is what a request's hidden field says.

// globShape is a glob's outline: segments without '/', none empty. The
// request schema states the same pattern.
var globShape = regexp.MustCompile(`^[^/]+(?:/[^/]+)*$`)

// errGlobShape and errGlobSegment are the two ways a glob is malformed.
var (
	errGlobShape   = errors.New("it begins or ends with '/' or has an empty segment")
	errGlobSegment = errors.New("a segment has a '[' without its ']', a bad range or a trailing '\\'")
)

// ValidGlob returns nil when pattern is a well-formed glob (see the glob
// syntax above), else an error saying what is wrong with it.
func ValidGlob(pattern string) error {
	if !globShape.MatchString(pattern) {
		return errGlobShape
	}
	for seg := range strings.SplitSeq(pattern, "/") {
		if seg == "**" {
			continue
		}
		// path.Match checks the whole pattern, whatever the name.
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("segment %q: %w", clip(seg, maxQuoted), errGlobSegment)
		}
	}
	return nil
}

// MatchGlob reports whether name, a relative path with '/' between its
// names, matches the glob pattern. It returns an error, and false, when
// the pattern is not well-formed. Its time grows with the number of
// segments of pattern times that of name, whatever the pattern.
func MatchGlob(pattern, name string) (bool, error) {
	if err := ValidGlob(pattern); err != nil {
		return false, err
	}
	pats := strings.Split(pattern, "/")
	names := strings.Split(name, "/")
	// next[j] is whether pats[i+1:] matches names[j:]; cur is the same
	// for pats[i:]. The last row: only the end matches the empty pattern.
	next := make([]bool, len(names)+1)
	cur := make([]bool, len(names)+1)
	next[len(names)] = true
	for i := len(pats) - 1; i >= 0; i-- {
		for j := len(names); j >= 0; j-- {
			if pats[i] == "**" {
				cur[j] = next[j] || j < len(names) && cur[j+1]
				continue
			}
			cur[j] = false
			if j < len(names) && next[j+1] {
				ok, _ := path.Match(pats[i], names[j]) // checked by ValidGlob
				cur[j] = ok
			}
		}
		cur, next = next, cur
	}
	return next[0], nil
}
