package terraform

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// sessionSource is the package whose Firestore queries firestore.tf serves.
const sessionSource = "../internal/session"

// firestoreEntry is one entry of the locals firestore_fields and
// firestore_group_fields.
type firestoreEntry struct {
	collection, field string
	ttl               bool
}

// firestoreLocal evaluates the map local name of firestore.tf.
func firestoreLocal(t *testing.T, c *config, name string) map[string]firestoreEntry {
	t.Helper()
	for _, b := range c.all("locals") {
		a, ok := b.Body.Attributes[name]
		if !ok {
			continue
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("local.%s is not a constant: %v", name, diags)
		}
		out := map[string]firestoreEntry{}
		for k, e := range v.AsValueMap() {
			m := e.AsValueMap()
			en := firestoreEntry{collection: m["collection"].AsString(), field: m["field"].AsString()}
			if ttl, ok := m["ttl"]; ok {
				en.ttl = ttl.True()
			}
			out[k] = en
		}
		return out
	}
	t.Fatalf("no local %s", name)
	return nil
}

// TestFirestoreProcesses pins the background process registry's TTL policy
// and the index of the reaper's query for processes whose host is gone.
func TestFirestoreProcesses(t *testing.T) {
	c := parse(t)
	if got := c.text(c.one("resource", "google_firestore_field", "fields"), "for_each"); got != "local.firestore_fields" {
		t.Fatalf("google_firestore_field.fields iterates over %s", got)
	}
	ttl := false
	for _, e := range firestoreLocal(t, c, "firestore_fields") {
		ttl = ttl || (e == firestoreEntry{collection: "processes", field: "expire_at", ttl: true})
	}
	if !ttl {
		t.Error("no TTL policy on processes.expire_at: process entries never expire")
	}
}

// collectionGroupQuery is a query across every session's subcollection.
type collectionGroupQuery struct {
	at         string // file:line
	collection string
	filters    []string // the fields of its Where calls, in order
	ordered    bool     // it has an OrderBy
}

// sessionQueries finds the collection group queries of internal/session:
// each chain s.fs.CollectionGroup(c).Where(...)... whose collection is a
// string constant of the package.
func sessionQueries(t *testing.T) []collectionGroupQuery {
	t.Helper()
	fset := token.NewFileSet()
	names, err := filepath.Glob(filepath.Join(sessionSource, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Go files in %s (%v)", sessionSource, err)
	}
	var files []*ast.File
	consts := map[string]string{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								consts[n.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
			}
		}
	}
	var out []collectionGroupQuery
	seen := map[*ast.CallExpr]bool{} // calls inside a chain already read
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || seen[call] {
				return true
			}
			// Unwind the chain from its last call to its first.
			var q collectionGroupQuery
			for c := call; c != nil; {
				seen[c] = true
				sel, ok := c.Fun.(*ast.SelectorExpr)
				if !ok {
					break
				}
				switch sel.Sel.Name {
				case "Where":
					if lit, ok := c.Args[0].(*ast.BasicLit); ok {
						field, _ := strconv.Unquote(lit.Value)
						q.filters = append([]string{field}, q.filters...)
					}
				case "OrderBy":
					q.ordered = true
				case "CollectionGroup":
					if id, ok := c.Args[0].(*ast.Ident); ok {
						q.collection = consts[id.Name]
					}
					if q.collection == "" {
						t.Errorf("%s: a collection group that is not a constant of the package", fset.Position(c.Pos()))
					}
				}
				c, _ = sel.X.(*ast.CallExpr)
			}
			if q.collection != "" {
				q.at = fset.Position(call.Pos()).String()
				out = append(out, q)
			}
			return true
		})
	}
	return out
}

// TestFirestoreCollectionGroupIndexes checks that every collection group
// query of internal/session has an index of collection group scope:
// Firestore builds only collection-scope single-field indexes by itself, and
// a query without its index fails. One field needs firestore_group_fields,
// several a composite google_firestore_index of COLLECTION_GROUP scope.
// Ordered queries are not checked here.
func TestFirestoreCollectionGroupIndexes(t *testing.T) {
	c := parse(t)
	if got := c.text(c.one("resource", "google_firestore_field", "group_indexed"), "for_each"); got != "local.firestore_group_fields" {
		t.Fatalf("google_firestore_field.group_indexed iterates over %s", got)
	}
	group := firestoreLocal(t, c, "firestore_group_fields")
	var composites [][]string // collection, then fields
	for _, b := range c.all("resource", "google_firestore_index") {
		if c.literal(b, "query_scope").AsString() != "COLLECTION_GROUP" {
			continue
		}
		idx := []string{c.literal(b, "collection").AsString()}
		for _, fb := range b.Body.Blocks {
			if fb.Type == "fields" {
				idx = append(idx, fieldPath(t, fb))
			}
		}
		composites = append(composites, idx)
	}

	queries := sessionQueries(t)
	if len(queries) < 5 {
		t.Fatalf("found only %d collection group queries in %s: %+v", len(queries), sessionSource, queries)
	}
	processes := false
	for _, q := range queries {
		processes = processes || q.collection == "processes"
		if q.ordered || len(q.filters) == 0 {
			continue
		}
		fields := slices.Compact(slices.Sorted(slices.Values(q.filters)))
		if len(fields) == 1 {
			found := false
			for _, e := range group {
				found = found || (e.collection == q.collection && e.field == fields[0])
			}
			if !found {
				t.Errorf("%s: %s where %s across all sessions has no collection group index (firestore_group_fields)", q.at, q.collection, fields[0])
			}
			continue
		}
		found := false
		for _, idx := range composites {
			covered := idx[0] == q.collection
			for _, f := range fields {
				covered = covered && slices.Contains(idx[1:], f)
			}
			found = found || covered
		}
		if !found {
			t.Errorf("%s: %s where %v across all sessions has no composite index of COLLECTION_GROUP scope", q.at, q.collection, fields)
		}
	}
	if !processes {
		t.Errorf("the reaper's query of processes was not found in %s", sessionSource)
	}
}

func fieldPath(t *testing.T, b *hclsyntax.Block) string {
	t.Helper()
	a, ok := b.Body.Attributes["field_path"]
	if !ok {
		t.Fatalf("a fields block without field_path")
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("field_path is not a constant: %v", diags)
	}
	return v.AsString()
}

// TestFirestoreConcurrencyMode pins the database's concurrency mode: the
// local cloud's Firestore (emulator/firestore) models pessimistic locking,
// and sandrun's retries and lock timeouts are designed for it
// (docs/deploy.md, "Firestore concurrency").
func TestFirestoreConcurrencyMode(t *testing.T) {
	c := parse(t)
	db := c.one("resource", "google_firestore_database", "sessions")
	if got := c.literal(db, "concurrency_mode"); got.AsString() != "PESSIMISTIC" {
		t.Errorf("concurrency_mode = %q, want PESSIMISTIC, the mode the local cloud models", got.AsString())
	}
	if got := c.literal(db, "database_edition"); got.AsString() != "STANDARD" {
		t.Errorf("database_edition = %q, want STANDARD, whose default is pessimistic", got.AsString())
	}
}
