package firestore

import (
	"cmp"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits Firestore documents for names and field paths
// (https://firebase.google.com/docs/firestore/quotas).
const (
	maxIDBytes        = 1500 // a collection or document ID
	maxNameBytes      = 6 << 10
	maxFieldPathBytes = 1500
)

// parseDatabase checks a database resource name,
// "projects/{project}/databases/{database}", and returns it unchanged.
func parseDatabase(name string) (string, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "databases" || parts[1] == "" || parts[3] == "" {
		return "", status.Errorf(codes.InvalidArgument, "invalid database name %q: want projects/{project_id}/databases/{database_id}", name)
	}
	return name, nil
}

// splitResource splits a resource name below a database's "documents" root
// into the database and the path segments after ".../documents". It checks
// only the shape shared by parents and document names.
func splitResource(name string) (db string, segs []string, err error) {
	if len(name) > maxNameBytes {
		return "", nil, status.Errorf(codes.InvalidArgument, "resource name is %d bytes; the limit is %d", len(name), maxNameBytes)
	}
	if !utf8.ValidString(name) {
		return "", nil, status.Errorf(codes.InvalidArgument, "resource name %q is not valid UTF-8", name)
	}
	parts := strings.Split(name, "/")
	if len(parts) < 5 || parts[0] != "projects" || parts[2] != "databases" || parts[4] != "documents" || parts[1] == "" || parts[3] == "" {
		return "", nil, status.Errorf(codes.InvalidArgument, "invalid resource name %q: want projects/{project_id}/databases/{database_id}/documents[/...]", name)
	}
	db = strings.Join(parts[:4], "/")
	segs = parts[5:]
	for _, s := range segs {
		if err := checkID(s); err != nil {
			return "", nil, status.Errorf(codes.InvalidArgument, "invalid resource name %q: %s", name, err)
		}
	}
	return db, segs, nil
}

type idError string

func (e idError) Error() string { return string(e) }

// checkID applies Firestore's rules for collection and document IDs.
func checkID(id string) error {
	switch {
	case id == "":
		return idError("empty path segment")
	case id == "." || id == "..":
		return idError("ID cannot be \".\" or \"..\"")
	case len(id) > maxIDBytes:
		return idError("ID is longer than 1500 bytes")
	case len(id) > 4 && strings.HasPrefix(id, "__") && strings.HasSuffix(id, "__"):
		return idError("IDs matching __.*__ are reserved")
	}
	return nil
}

// parseDocumentName checks a document's full resource name and returns its
// database. A document name has an even, non-zero number of segments below
// ".../documents".
func parseDocumentName(name string) (db string, err error) {
	db, segs, err := splitResource(name)
	if err != nil {
		return "", err
	}
	if len(segs) == 0 || len(segs)%2 != 0 {
		return "", status.Errorf(codes.InvalidArgument, "invalid document name %q: a document name has an even number of segments after /documents", name)
	}
	return db, nil
}

// parseParent checks the parent of a query or listing: the database's
// documents root or a document. It returns the database.
func parseParent(name string) (db string, err error) {
	db, segs, err := splitResource(name)
	if err != nil {
		return "", err
	}
	if len(segs)%2 != 0 {
		return "", status.Errorf(codes.InvalidArgument, "invalid parent %q: a parent is .../documents or a document name", name)
	}
	return db, nil
}

// documentsRoot is the parent of top-level collections in db.
func documentsRoot(db string) string { return db + "/documents" }

// relPath is a document name without its ".../documents/" prefix.
func relPath(name string) string {
	if i := strings.Index(name, "/documents/"); i >= 0 {
		return name[i+len("/documents/"):]
	}
	return ""
}

// parentAndCollection splits a document name into its parent (a document
// name or the documents root) and its collection ID.
func parentAndCollection(name string) (parent, coll string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", ""
	}
	j := strings.LastIndexByte(name[:i], '/')
	if j < 0 {
		return "", ""
	}
	return name[:j], name[j+1 : i]
}

// compareNames orders document names segment by segment, as Firestore
// orders __name__ (so "a/b" sorts before "a-b/c": '/' is not a character).
func compareNames(a, b string) int {
	for {
		segA, restA, okA := strings.Cut(a, "/")
		segB, restB, okB := strings.Cut(b, "/")
		if c := cmp.Compare(segA, segB); c != 0 {
			return c
		}
		switch {
		case !okA && !okB:
			return 0
		case !okA:
			return -1
		case !okB:
			return 1
		}
		a, b = restA, restB
	}
}

// fieldPath is a parsed field path: one element per map key.
type fieldPath []string

// namePath is the special field path that stands for a document's name.
const nameField = "__name__"

func (p fieldPath) isName() bool { return len(p) == 1 && p[0] == nameField }

// String renders p in the service's syntax: simple segments bare, others
// quoted with backticks.
func (p fieldPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 {
			b.WriteByte('.')
		}
		if isSimpleSegment(s) {
			b.WriteString(s)
			continue
		}
		b.WriteByte('`')
		for _, r := range s {
			if r == '`' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('`')
	}
	return b.String()
}

func isSimpleSegment(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func (p fieldPath) equal(q fieldPath) bool {
	if len(p) != len(q) {
		return false
	}
	for i := range p {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// hasPrefix reports whether q is p or a prefix of p.
func (p fieldPath) hasPrefix(q fieldPath) bool {
	return len(q) <= len(p) && p[:len(q)].equal(q)
}

// compareFieldPaths orders field paths segment by segment; Firestore sorts
// implicit order-by fields this way.
func compareFieldPaths(a, b fieldPath) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// parseFieldPath parses the service syntax: segments separated by dots,
// each either a bare identifier-like run of characters or quoted in
// backticks, where a backslash escapes the next character.
func parseFieldPath(s string) (fieldPath, error) {
	if s == "" {
		return nil, status.Error(codes.InvalidArgument, "field path is empty")
	}
	if len(s) > maxFieldPathBytes {
		return nil, status.Errorf(codes.InvalidArgument, "field path is %d bytes; the limit is %d", len(s), maxFieldPathBytes)
	}
	if !utf8.ValidString(s) {
		return nil, status.Errorf(codes.InvalidArgument, "field path %q is not valid UTF-8", s)
	}
	var (
		path fieldPath
		seg  strings.Builder
	)
	i := 0
	for {
		seg.Reset()
		if i < len(s) && s[i] == '`' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' {
					if i+1 >= len(s) {
						return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: trailing escape", s)
					}
					seg.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '`' {
					closed = true
					i++
					break
				}
				seg.WriteByte(c)
				i++
			}
			if !closed {
				return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: unterminated backtick", s)
			}
		} else {
			for i < len(s) && s[i] != '.' {
				if s[i] == '`' {
					return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: backtick inside a bare segment", s)
				}
				seg.WriteByte(s[i])
				i++
			}
		}
		if seg.Len() == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: empty segment", s)
		}
		path = append(path, seg.String())
		if i == len(s) {
			return path, nil
		}
		if s[i] != '.' {
			return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: expected '.' after a quoted segment", s)
		}
		i++
		if i == len(s) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid field path %q: empty segment", s)
		}
	}
}
