package files

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
)

// SearchOptions says what Search looks for.
type SearchOptions struct {
	// Pattern is an RE2 regular expression (Go's regexp syntax), matched
	// against each line without its line ending ("\n" or "\r\n").
	Pattern string
	// Include, when not empty, is a glob (FindOptions.Pattern's syntax)
	// that limits the search to the files whose path relative to the root
	// it matches, as the protocol defines globs: "*.py" is the Python
	// files of the root itself, "**/*.py" those at any depth.
	Include string
	// MaxDepth, Hidden and MaxResults are Find's; MaxResults counts
	// matching lines.
	MaxDepth   int
	Hidden     bool
	MaxResults int
}

// Match is one matching line.
type Match struct {
	// Path is the file's path relative to the root with "/" separators,
	// or the path as given when the root is a file.
	Path string
	// LineNumber counts lines from 1.
	LineNumber int
	// Line is the line without its line ending, cut to at most
	// MaxLineBytes at a character boundary, with invalid UTF-8 replaced
	// by U+FFFD.
	Line string
}

// SearchResult holds the matches Search found.
type SearchResult struct {
	// Matches are in file order (List's) and line order within a file.
	Matches []Match
	// Truncated reports that MaxResults cut the matches: there were more.
	Truncated bool
	// FilesSearched counts the files read; FilesSkipped the regular
	// files left out as binary or unreadable.
	FilesSearched int
	FilesSkipped  int
}

// Search reports the lines that match opt.Pattern in the regular files
// below path (the working directory when empty), or in path itself when
// it is a file. It walks as Find does: never through a symlink (a link to
// a file is not searched either), hidden entries only with Hidden. Each
// file is streamed line by line through one fixed buffer: a line longer
// than SearchLineBytes is matched on its first SearchLineBytes only. A
// file with a NUL byte in its first BinarySniffBytes is binary and
// skipped, as is a file that cannot be read. It stops at MaxResults
// matches, with Truncated set when there was one more. A bad pattern or
// include glob wraps ErrInvalid.
func (o Ops) Search(ctx context.Context, path string, opt SearchOptions) (SearchResult, error) {
	const op = "search"
	abs, err := o.resolveRoot(path)
	if err != nil {
		return SearchResult{}, err
	}
	if opt.Pattern == "" {
		return SearchResult{}, newError(op, abs, ErrInvalid, "pattern is empty")
	}
	re, err := regexp.Compile(opt.Pattern)
	if err != nil {
		return SearchResult{}, newError(op, abs, ErrInvalid, "pattern is not a valid regular expression: %v", err)
	}
	var include string
	if opt.Include != "" {
		if include, err = compileGlob(op, abs, "include", opt.Include); err != nil {
			return SearchResult{}, err
		}
	}
	max, err := checkLimits(op, abs, opt.MaxDepth, opt.MaxResults)
	if err != nil {
		return SearchResult{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return SearchResult{}, lookupErr(op, abs, err)
	}
	s := searcher{ctx: ctx, re: re, max: max, br: bufio.NewReaderSize(nil, SearchLineBytes)}
	switch {
	case fi.Mode().IsRegular():
		err = s.file(abs, path, 0)
	case fi.IsDir():
		w := walker{ctx: ctx, maxDepth: opt.MaxDepth, hidden: opt.Hidden, visit: func(a, rel string, d fs.DirEntry) error {
			if !d.Type().IsRegular() {
				return nil
			}
			if include != "" && !doublestar.MatchUnvalidated(include, rel) {
				return nil
			}
			return s.file(a, rel, syscall.O_NOFOLLOW)
		}}
		err = w.walk(abs, "", 1, true)
	default:
		return SearchResult{}, newError(op, abs, ErrPrecondition, "not a regular file or directory (%s)", typeName(fi.Mode()))
	}
	if err != nil && err != errStop {
		return SearchResult{}, lookupErr(op, abs, err)
	}
	return s.res, nil
}

// searcher searches files one after the other through one buffer.
type searcher struct {
	ctx context.Context
	re  *regexp.Regexp
	max int
	br  *bufio.Reader
	res SearchResult
}

// ctxCheckLines is how many lines a file's scan goes between checks of
// the context.
const ctxCheckLines = 1 << 14

// file searches the file abs, reported as rel, opened with the extra
// flags (O_NOFOLLOW for a file found by the walk: one swapped for a
// symlink since is not followed). It returns errStop when MaxResults is
// reached and the context's error when it ends; a file that cannot be
// read is skipped.
func (s *searcher) file(abs, rel string, flags int) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	// O_NONBLOCK: a file swapped for a named pipe must not block the open.
	f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NONBLOCK|flags, 0)
	if err != nil {
		s.res.FilesSkipped++
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || ownProcEntry(f) {
		s.res.FilesSkipped++
		return nil
	}
	s.br.Reset(f)
	defer s.br.Reset(nil) // do not keep the file reachable
	head, err := s.br.Peek(BinarySniffBytes)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		s.res.FilesSkipped++
		return nil
	}
	if bytes.IndexByte(head, 0) >= 0 {
		s.res.FilesSkipped++
		return nil
	}
	s.res.FilesSearched++
	for n := 1; ; n++ {
		line, err := s.br.ReadSlice('\n')
		if len(line) == 0 && err != nil {
			return nil // the end, or a read error: keep what was found
		}
		long := err == bufio.ErrBufferFull
		if !long {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		if s.re.Match(line) {
			if len(s.res.Matches) == s.max {
				s.res.Truncated = true
				return errStop
			}
			s.res.Matches = append(s.res.Matches, Match{Path: rel, LineNumber: n, Line: cutLine(line)})
		}
		for err == bufio.ErrBufferFull { // skip the rest of a long line
			_, err = s.br.ReadSlice('\n')
		}
		if err != nil {
			return nil
		}
		if n%ctxCheckLines == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
	}
}

// cutLine makes a matched line valid UTF-8 of at most MaxLineBytes, cut
// at a character boundary.
func cutLine(line []byte) string {
	cut := len(line)
	if cut > MaxLineBytes {
		// Do not split the character that straddles the limit: its
		// first bytes would turn into U+FFFD.
		cut = MaxLineBytes
		for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(line[cut]); i++ {
			cut--
		}
	}
	// Each run of invalid bytes becomes U+FFFD (3 bytes), which can make
	// the text longer: cut again afterwards.
	s := strings.ToValidUTF8(string(line[:cut]), "\uFFFD")
	if len(s) <= MaxLineBytes {
		return s
	}
	cut = MaxLineBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
