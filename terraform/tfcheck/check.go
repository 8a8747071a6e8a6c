package tfcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
)

// Severity says whether a Diagnostic is a mistake Terraform would refuse
// (Error) or one it would accept but that is almost certainly unintended
// (Warning).
type Severity int

// Severities.
const (
	Error Severity = iota
	Warning
)

// Diagnostic is one finding, located in a file.
type Diagnostic struct {
	Severity Severity
	Range    hcl.Range
	Message  string
}

func (d Diagnostic) String() string {
	sev := "error"
	if d.Severity == Warning {
		sev = "warning"
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", d.Range.Filename, d.Range.Start.Line, d.Range.Start.Column, sev, d.Message)
}

// CheckDir checks the module made of the .tf files in dir: their format and
// their meaning. It fails only when the files cannot be read.
func CheckDir(dir string, schema *Schema) ([]Diagnostic, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("check %s: no .tf files", dir)
	}
	files := map[string][]byte{}
	var diags []Diagnostic
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", dir, err)
		}
		files[name] = src
		diags = append(diags, CheckFormat(name, src)...)
	}
	diags = append(diags, CheckModule(files, schema)...)
	sortDiagnostics(diags)
	return diags, nil
}

// sortDiagnostics orders diagnostics by file and position.
func sortDiagnostics(diags []Diagnostic) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Range, diags[j].Range
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}

// CheckModule checks the meaning of one module, given as file name to
// contents, against schema.
func CheckModule(files map[string][]byte, schema *Schema) []Diagnostic {
	m := &module{
		schema:    schema,
		variables: map[string]*variable{},
		locals:    map[string]*local{},
		outputs:   map[string]*hclsyntax.Block{},
		resources: map[string]*resource{},
		modules:   map[string]*hclsyntax.Block{},
		providers: map[string]bool{},
		required:  map[string]bool{},
		used:      map[string]bool{},
		deps:      map[string][]string{},
		defs:      map[string]hcl.Range{},
		funcs:     functions(),
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var bodies []*hclsyntax.Body
	for _, name := range names {
		f, diags := hclsyntax.ParseConfig(files[name], name, hcl.InitialPos)
		m.hclDiags(diags)
		if diags.HasErrors() {
			continue
		}
		bodies = append(bodies, f.Body.(*hclsyntax.Body))
	}
	for _, body := range bodies {
		m.declare(body)
	}
	m.checkVariables()
	m.buildContext()
	m.evalLocals()
	for _, key := range sortedKeys(m.resources) {
		m.checkResource(m.resources[key])
	}
	for _, name := range sortedKeys(m.outputs) {
		m.checkOutput(name, m.outputs[name])
	}
	for _, body := range bodies {
		m.checkOthers(body)
	}
	m.checkMonitoring()
	m.checkCycles()
	m.checkUnused()
	sortDiagnostics(m.diags)
	return m.diags
}

type module struct {
	schema    *Schema
	diags     []Diagnostic
	variables map[string]*variable
	locals    map[string]*local
	outputs   map[string]*hclsyntax.Block
	// resources are keyed TYPE.NAME for managed resources and
	// data.TYPE.NAME for data sources: their graph node names.
	resources map[string]*resource
	modules   map[string]*hclsyntax.Block
	// providers are the configured providers: NAME and NAME.ALIAS.
	providers map[string]bool
	// required are the local names in required_providers.
	required map[string]bool
	// used marks the variables and locals something refers to.
	used map[string]bool
	// deps are the dependency graph: node -> the nodes it refers to.
	deps  map[string][]string
	defs  map[string]hcl.Range
	funcs map[string]function.Function
	ctx   *hcl.EvalContext
}

type variable struct {
	block *hclsyntax.Block
	typ   cty.Type
}

type local struct {
	attr           *hclsyntax.Attribute
	value          cty.Value
	done, visiting bool
}

type resource struct {
	data         bool
	typ, name    string
	block        *hclsyntax.Block
	schema       *Block
	count        *hclsyntax.Attribute
	forEach      *hclsyntax.Attribute
	eachKey      cty.Type
	eachValue    cty.Type
	node         string
	metaRanges   map[string]hcl.Range
	lifecycleSet bool
}

func (m *module) errorf(rng hcl.Range, format string, args ...any) {
	m.diags = append(m.diags, Diagnostic{Severity: Error, Range: rng, Message: fmt.Sprintf(format, args...)})
}

func (m *module) warnf(rng hcl.Range, format string, args ...any) {
	m.diags = append(m.diags, Diagnostic{Severity: Warning, Range: rng, Message: fmt.Sprintf(format, args...)})
}

func (m *module) hclDiags(diags hcl.Diagnostics) {
	for _, d := range diags {
		rng := hcl.Range{}
		if d.Subject != nil {
			rng = *d.Subject
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		sev := Error
		if d.Severity == hcl.DiagWarning {
			sev = Warning
		}
		m.diags = append(m.diags, Diagnostic{Severity: sev, Range: rng, Message: msg})
	}
}

// --- declarations ---------------------------------------------------------------

// topLevel are the blocks a module may hold, with their number of labels.
var topLevel = map[string]int{
	"terraform": 0, "provider": 1, "variable": 1, "locals": 0, "output": 1,
	"resource": 2, "data": 2, "module": 1, "moved": 0, "import": 0, "removed": 0, "check": 1,
}

func (m *module) declare(body *hclsyntax.Body) {
	for name, attr := range body.Attributes {
		m.errorf(attr.NameRange, "unexpected argument %q at the top level: only blocks belong here", name)
	}
	for _, b := range body.Blocks {
		want, ok := topLevel[b.Type]
		if !ok {
			m.errorf(b.TypeRange, "unknown block type %q%s", b.Type, suggest(b.Type, sortedKeys(topLevel)))
			continue
		}
		if len(b.Labels) != want {
			m.errorf(b.DefRange(), "a %s block takes %d label(s), not %d", b.Type, want, len(b.Labels))
			continue
		}
		switch b.Type {
		case "variable":
			name := b.Labels[0]
			if prev, dup := m.variables[name]; dup {
				m.errorf(b.DefRange(), "variable %q is declared twice (also at %s)", name, rangeString(prev.block.DefRange()))
				continue
			}
			m.variables[name] = &variable{block: b, typ: cty.DynamicPseudoType}
			m.defs["var."+name] = b.DefRange()
		case "locals":
			for name, attr := range b.Body.Attributes {
				if prev, dup := m.locals[name]; dup {
					m.errorf(attr.NameRange, "local %q is defined twice (also at %s)", name, rangeString(prev.attr.NameRange))
					continue
				}
				m.locals[name] = &local{attr: attr}
				m.defs["local."+name] = attr.NameRange
			}
			for _, nb := range b.Body.Blocks {
				m.errorf(nb.TypeRange, "unexpected block %q in locals", nb.Type)
			}
		case "output":
			name := b.Labels[0]
			if prev, dup := m.outputs[name]; dup {
				m.errorf(b.DefRange(), "output %q is declared twice (also at %s)", name, rangeString(prev.DefRange()))
				continue
			}
			m.outputs[name] = b
			m.defs["output."+name] = b.DefRange()
		case "resource", "data":
			m.declareResource(b)
		case "module":
			name := b.Labels[0]
			if _, dup := m.modules[name]; dup {
				m.errorf(b.DefRange(), "module %q is declared twice", name)
				continue
			}
			m.modules[name] = b
			m.defs["module."+name] = b.DefRange()
		case "provider":
			name := b.Labels[0]
			if a, ok := b.Body.Attributes["alias"]; ok {
				v, diags := a.Expr.Value(nil)
				if diags.HasErrors() || v.Type() != cty.String || !v.IsKnown() || v.IsNull() {
					m.errorf(a.Expr.Range(), "provider alias must be a literal string")
					continue
				}
				name += "." + v.AsString()
			}
			if m.providers[name] {
				m.errorf(b.DefRange(), "provider %q is configured twice", name)
			}
			m.providers[name] = true
		case "terraform":
			if rp := findBlocks(b.Body, "required_providers"); len(rp) > 0 {
				for _, r := range rp {
					for name := range r.Body.Attributes {
						m.required[name] = true
					}
				}
			}
		}
	}
}

func (m *module) declareResource(b *hclsyntax.Block) {
	r := &resource{data: b.Type == "data", typ: b.Labels[0], name: b.Labels[1], block: b, metaRanges: map[string]hcl.Range{}}
	r.node = r.typ + "." + r.name
	types, kind := m.schema.Resources, "resource"
	if r.data {
		r.node = "data." + r.node
		types, kind = m.schema.DataSources, "data source"
	}
	if !hclsyntax.ValidIdentifier(r.name) {
		m.errorf(b.LabelRanges[1], "%q is not a valid %s name", r.name, kind)
		return
	}
	if prev, dup := m.resources[r.node]; dup {
		m.errorf(b.DefRange(), "%s %s is declared twice (also at %s)", kind, r.node, rangeString(prev.block.DefRange()))
		return
	}
	r.schema = types[r.typ]
	if r.schema == nil {
		m.errorf(b.LabelRanges[0], "unknown %s type %q: not in the provider schema%s", kind, r.typ, suggest(r.typ, sortedKeys(types)))
	}
	r.count = b.Body.Attributes["count"]
	r.forEach = b.Body.Attributes["for_each"]
	if r.count != nil && r.forEach != nil {
		m.errorf(r.forEach.NameRange, "%s sets both count and for_each: use one", r.node)
	}
	m.resources[r.node] = r
	m.defs[r.node] = b.DefRange()
}

func findBlocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// --- variables --------------------------------------------------------------------

var variableArgs = map[string]bool{"type": true, "default": true, "description": true, "sensitive": true, "nullable": true, "ephemeral": true}

func (m *module) checkVariables() {
	for _, name := range sortedKeys(m.variables) {
		v := m.variables[name]
		body := v.block.Body
		for _, attrName := range sortedKeys(body.Attributes) {
			if !variableArgs[attrName] {
				m.errorf(body.Attributes[attrName].NameRange, "unsupported argument %q in variable %q%s", attrName, name, suggest(attrName, sortedKeys(variableArgs)))
			}
		}
		var defaults *typeexpr.Defaults
		if a, ok := body.Attributes["type"]; ok {
			ty, defs, diags := typeexpr.TypeConstraintWithDefaults(a.Expr)
			m.hclDiags(diags)
			if !diags.HasErrors() {
				v.typ, defaults = ty, defs
			}
		}
		for _, attrName := range []string{"description", "sensitive", "nullable", "ephemeral"} {
			if a, ok := body.Attributes[attrName]; ok {
				want := cty.Bool
				if attrName == "description" {
					want = cty.String
				}
				m.constant(a, want, "variable "+name)
			}
		}
		if a, ok := body.Attributes["default"]; ok {
			if val, ok := m.constant(a, cty.DynamicPseudoType, "variable "+name); ok && !val.IsNull() {
				if defaults != nil {
					val = defaults.Apply(val)
				}
				if _, err := convert.Convert(val, v.typ); err != nil {
					m.errorf(a.Expr.Range(), "default of variable %q does not match its type %s: %s", name, typeString(v.typ), err)
				}
			}
		}
		for _, b := range body.Blocks {
			if b.Type != "validation" {
				m.errorf(b.TypeRange, "unexpected block %q in variable %q", b.Type, name)
			}
		}
	}
}

// constant evaluates an expression that may not refer to anything.
func (m *module) constant(a *hclsyntax.Attribute, want cty.Type, what string) (cty.Value, bool) {
	if vars := hclsyntax.Variables(a.Expr); len(vars) > 0 {
		m.errorf(a.Expr.Range(), "%s of %s must be a constant: it may not refer to %s", a.Name, what, traversalString(vars[0]))
		return cty.NilVal, false
	}
	val, diags := a.Expr.Value(&hcl.EvalContext{Functions: m.funcs})
	m.hclDiags(diags)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	if want != cty.DynamicPseudoType {
		if _, err := convert.Convert(val, want); err != nil {
			m.errorf(a.Expr.Range(), "%s of %s: %s", a.Name, what, err)
			return cty.NilVal, false
		}
	}
	return val, true
}

// --- evaluation context -------------------------------------------------------------

// buildContext makes the context every expression is evaluated in: input
// variables and resources are unknown values of their types, which is what
// they are until apply.
func (m *module) buildContext() {
	vars := map[string]cty.Value{}
	for name, v := range m.variables {
		vars[name] = cty.UnknownVal(v.typ)
	}
	byType := map[string]map[string]cty.Value{}
	dataByType := map[string]map[string]cty.Value{}
	for _, r := range m.resources {
		t := cty.DynamicPseudoType
		if r.schema != nil {
			t = r.schema.ImpliedType()
		}
		switch {
		case r.count != nil:
			t = cty.List(t)
		case r.forEach != nil:
			t = cty.Map(t)
		}
		target := byType
		if r.data {
			target = dataByType
		}
		if target[r.typ] == nil {
			target[r.typ] = map[string]cty.Value{}
		}
		target[r.typ][r.name] = cty.UnknownVal(t)
	}
	ctxVars := map[string]cty.Value{
		"var":       cty.ObjectVal(vars),
		"path":      cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal("."), "root": cty.StringVal("."), "cwd": cty.UnknownVal(cty.String)}),
		"terraform": cty.ObjectVal(map[string]cty.Value{"workspace": cty.UnknownVal(cty.String)}),
	}
	for typ, rs := range byType {
		ctxVars[typ] = cty.ObjectVal(rs)
	}
	data := map[string]cty.Value{}
	for typ, rs := range dataByType {
		data[typ] = cty.ObjectVal(rs)
	}
	ctxVars["data"] = cty.ObjectVal(data)
	mods := map[string]cty.Value{}
	for name := range m.modules {
		mods[name] = cty.DynamicVal
	}
	ctxVars["module"] = cty.ObjectVal(mods)
	ctxVars["local"] = cty.EmptyObjectVal
	m.ctx = &hcl.EvalContext{Variables: ctxVars, Functions: m.funcs}
}

func (m *module) setLocals() {
	vals := map[string]cty.Value{}
	for name, l := range m.locals {
		if l.done {
			vals[name] = l.value
		} else {
			vals[name] = cty.DynamicVal
		}
	}
	m.ctx.Variables["local"] = cty.ObjectVal(vals)
}

// evalLocals evaluates every local value after the locals it refers to.
func (m *module) evalLocals() {
	for _, name := range sortedKeys(m.locals) {
		m.evalLocal(name)
	}
	m.setLocals()
}

func (m *module) evalLocal(name string) {
	l := m.locals[name]
	if l.done {
		return
	}
	if l.visiting {
		// checkCycles reports the cycle with its full path.
		return
	}
	l.visiting = true
	for _, tr := range l.attr.Expr.Variables() {
		if tr.RootName() == "local" && len(tr) > 1 {
			if a, isAttr := tr[1].(hcl.TraverseAttr); isAttr {
				if _, declared := m.locals[a.Name]; declared {
					m.evalLocal(a.Name)
				}
			}
		}
	}
	m.setLocals()
	node := "local." + name
	l.value = cty.DynamicVal
	if val, ok := m.eval(l.attr.Expr, &scope{node: node}, cty.DynamicPseudoType, node); ok {
		l.value = val
	}
	l.visiting, l.done = false, true
}

// scope is what an expression may refer to besides the module's objects.
type scope struct {
	// node is the graph node the expression belongs to.
	node string
	// each, count and self say whether each.*, count.index and self exist.
	each, count, self bool
	// iterators are the dynamic block iterators in scope.
	iterators map[string]bool
	// onlyVar, when set, is the one variable a variable's validation may
	// refer to.
	onlyVar string
	ctx     *hcl.EvalContext
}

func (sc *scope) evalContext(m *module) *hcl.EvalContext {
	if sc.ctx != nil {
		return sc.ctx
	}
	return m.ctx
}

// child returns a scope with one more dynamic block iterator.
func (sc *scope) child(m *module, iterator string, key, value cty.Type) *scope {
	c := *sc
	c.iterators = map[string]bool{iterator: true}
	for k := range sc.iterators {
		c.iterators[k] = true
	}
	ctx := sc.evalContext(m).NewChild()
	ctx.Variables = map[string]cty.Value{iterator: cty.ObjectVal(map[string]cty.Value{"key": cty.UnknownVal(key), "value": cty.UnknownVal(value)})}
	c.ctx = ctx
	return &c
}

// --- references ---------------------------------------------------------------------

// references checks that every reference in expr resolves, records the
// dependencies, and reports whether all resolved.
func (m *module) references(expr hcl.Expression, sc *scope) bool {
	ok := true
	for _, tr := range expr.Variables() {
		if !m.reference(tr, sc) {
			ok = false
		}
	}
	return ok
}

func (m *module) addDep(from, to string) {
	if from == "" {
		return
	}
	m.deps[from] = append(m.deps[from], to)
}

func (m *module) reference(tr hcl.Traversal, sc *scope) bool {
	root := tr.RootName()
	rng := tr.SourceRange()
	attr := func(i int) (string, bool) {
		if len(tr) <= i {
			return "", false
		}
		a, ok := tr[i].(hcl.TraverseAttr)
		return a.Name, ok
	}
	if sc.iterators[root] {
		if name, _ := attr(1); name != "key" && name != "value" {
			m.errorf(rng, "dynamic block iterator %s has only .key and .value", root)
			return false
		}
		return true
	}
	switch root {
	case "var":
		name, ok := attr(1)
		if !ok {
			m.errorf(rng, "var must be followed by a variable name, as var.NAME")
			return false
		}
		if _, declared := m.variables[name]; !declared {
			m.errorf(rng, "reference to undeclared variable %q%s", name, suggest(name, sortedKeys(m.variables)))
			return false
		}
		if sc.onlyVar != "" && name != sc.onlyVar {
			m.errorf(rng, "the validation of variable %q refers to variable %q: before Terraform 1.9 a validation may refer only to its own variable", sc.onlyVar, name)
			return false
		}
		m.used["var."+name] = true
		return true
	case "local":
		name, ok := attr(1)
		if !ok {
			m.errorf(rng, "local must be followed by a name, as local.NAME")
			return false
		}
		if _, declared := m.locals[name]; !declared {
			m.errorf(rng, "reference to undeclared local value %q%s", name, suggest(name, sortedKeys(m.locals)))
			return false
		}
		m.used["local."+name] = true
		m.addDep(sc.node, "local."+name)
		return true
	case "each":
		if !sc.each {
			m.errorf(rng, "each.* is only available in a block with for_each")
			return false
		}
		if name, _ := attr(1); name != "key" && name != "value" {
			m.errorf(rng, "each has only .key and .value")
			return false
		}
		return true
	case "count":
		if !sc.count {
			m.errorf(rng, "count.index is only available in a block with count")
			return false
		}
		if name, _ := attr(1); name != "index" {
			m.errorf(rng, "count has only .index")
			return false
		}
		return true
	case "self":
		if !sc.self {
			m.errorf(rng, "self is only available in provisioner, connection and postcondition blocks")
			return false
		}
		return true
	case "path":
		if name, _ := attr(1); name != "module" && name != "root" && name != "cwd" {
			m.errorf(rng, "path has only .module, .root and .cwd")
			return false
		}
		return true
	case "terraform":
		if name, _ := attr(1); name != "workspace" {
			m.errorf(rng, "terraform has only .workspace here")
			return false
		}
		return true
	case "module":
		name, ok := attr(1)
		if !ok {
			m.errorf(rng, "module must be followed by a module name")
			return false
		}
		if _, declared := m.modules[name]; !declared {
			m.errorf(rng, "reference to undeclared module %q", name)
			return false
		}
		m.addDep(sc.node, "module."+name)
		return true
	case "data":
		typ, ok1 := attr(1)
		name, ok2 := attr(2)
		if !ok1 || !ok2 {
			m.errorf(rng, "data must be followed by a type and a name, as data.TYPE.NAME")
			return false
		}
		return m.resourceReference(tr, 3, "data."+typ+"."+name, typ, true, sc)
	}
	name, ok := attr(1)
	if _, isType := m.schema.Resources[root]; !isType && !m.declaredType(root) {
		m.errorf(rng, "unknown reference %q: not a variable, local, data source, module or resource type%s", root,
			suggest(root, append([]string{"var", "local", "data", "module", "each", "count", "path", "self", "terraform"}, sortedKeys(m.schema.Resources)...)))
		return false
	}
	if !ok {
		m.errorf(rng, "a reference to a %s must name it, as %s.NAME", root, root)
		return false
	}
	return m.resourceReference(tr, 2, root+"."+name, root, false, sc)
}

func (m *module) declaredType(typ string) bool {
	for _, r := range m.resources {
		if !r.data && r.typ == typ {
			return true
		}
	}
	return false
}

// resourceReference checks a reference to a resource or data source whose
// address ends before tr[next].
func (m *module) resourceReference(tr hcl.Traversal, next int, node, typ string, data bool, sc *scope) bool {
	rng := tr.SourceRange()
	r, declared := m.resources[node]
	if !declared {
		var candidates []string
		for key, c := range m.resources {
			if c.data == data && c.typ == typ {
				candidates = append(candidates, key)
			}
		}
		sort.Strings(candidates)
		m.errorf(rng, "reference to undeclared %s %s%s", kindOf(data), node, suggest(node, candidates))
		return false
	}
	m.addDep(sc.node, node)
	if len(tr) <= next {
		return true
	}
	multi := r.count != nil || r.forEach != nil
	if _, isIndex := tr[next].(hcl.TraverseIndex); isIndex {
		if !multi {
			m.errorf(rng, "%s has neither count nor for_each, so it cannot be indexed", node)
			return false
		}
		next++
	} else if multi {
		what := "count"
		if r.forEach != nil {
			what = "for_each"
		}
		m.errorf(rng, "%s has %s: refer to one instance, as %s[...]", node, what, node)
		return false
	}
	if len(tr) <= next || r.schema == nil {
		return true
	}
	a, isAttr := tr[next].(hcl.TraverseAttr)
	if !isAttr {
		return true
	}
	if _, ok := r.schema.Attributes[a.Name]; ok {
		return true
	}
	if _, ok := r.schema.BlockTypes[a.Name]; ok {
		return true
	}
	m.errorf(rng, "%s has no attribute %q%s", node, a.Name, suggest(a.Name, append(sortedKeys(r.schema.Attributes), sortedKeys(r.schema.BlockTypes)...)))
	return false
}

func kindOf(data bool) string {
	if data {
		return "data source"
	}
	return "resource"
}

// eval checks the references of expr and, when they resolve, evaluates it
// and reports whether its value converts to want.
func (m *module) eval(expr hcl.Expression, sc *scope, want cty.Type, what string) (cty.Value, bool) {
	if !m.references(expr, sc) {
		return cty.DynamicVal, false
	}
	val, diags := expr.Value(sc.evalContext(m))
	for _, d := range diags {
		d.Summary = what + ": " + d.Summary
	}
	m.hclDiags(diags)
	if diags.HasErrors() {
		return cty.DynamicVal, false
	}
	if want == cty.DynamicPseudoType || val.Type() == cty.DynamicPseudoType {
		return val, true
	}
	if _, err := convert.Convert(val, want); err != nil {
		m.errorf(expr.Range(), "%s: wrong type: want %s, got %s (%s)", what, typeString(want), typeString(val.Type()), err)
		return val, false
	}
	return val, true
}

// --- resources ------------------------------------------------------------------------

func (m *module) checkResource(r *resource) {
	sc := &scope{node: r.node}
	kind := kindOf(r.data)
	if r.count != nil {
		m.eval(r.count.Expr, sc, cty.Number, r.node+" count")
	}
	if r.forEach != nil {
		val, ok := m.eval(r.forEach.Expr, sc, cty.DynamicPseudoType, r.node+" for_each")
		r.eachKey, r.eachValue = cty.DynamicPseudoType, cty.DynamicPseudoType
		if ok {
			t := val.Type()
			switch {
			case t.IsListType() || t.IsTupleType():
				m.errorf(r.forEach.Expr.Range(), "%s for_each is a list: for_each takes a map or a set (wrap it in toset())", r.node)
			case val.IsKnown() && val.IsNull():
				m.errorf(r.forEach.Expr.Range(), "%s for_each is null", r.node)
			default:
				if k, v, iterable := elementTypes(t); iterable {
					if t.IsSetType() && t.ElementType() != cty.String && t.ElementType() != cty.DynamicPseudoType {
						m.errorf(r.forEach.Expr.Range(), "%s for_each is a set of %s: a set must hold strings", r.node, typeString(t.ElementType()))
					}
					r.eachKey, r.eachValue = k, v
				} else {
					m.errorf(r.forEach.Expr.Range(), "%s for_each must be a map or a set of strings, not %s", r.node, typeString(t))
				}
			}
		}
	}
	sc = m.instanceScope(r)
	allowed := map[string]bool{"count": true, "for_each": true, "depends_on": true, "provider": true}
	for name, a := range r.block.Body.Attributes {
		if !allowed[name] {
			continue
		}
		switch name {
		case "depends_on":
			m.checkDependsOn(a, r.node)
		case "provider":
			m.checkProviderRef(a)
		}
	}
	for _, b := range r.block.Body.Blocks {
		switch b.Type {
		case "lifecycle":
			m.checkLifecycle(b, r, sc)
		case "provisioner", "connection":
			if r.data {
				m.errorf(b.TypeRange, "a data source has no %s blocks", b.Type)
				continue
			}
			self := *sc
			self.self = true
			m.walkReferences(b.Body, &self)
		}
	}
	if r.schema == nil {
		// The type is unknown; only its references can be checked.
		m.walkReferences(r.block.Body, sc)
		return
	}
	if r.schema.Deprecated {
		m.warnf(r.block.LabelRanges[0], "%s type %q is deprecated", kind, r.typ)
	}
	m.checkBody(r.block.Body, r.schema, sc, r.node, allowed, map[string]bool{"lifecycle": true, "provisioner": !r.data, "connection": !r.data})
}

// instanceScope is the scope of the arguments of one instance of r.
func (m *module) instanceScope(r *resource) *scope {
	sc := &scope{node: r.node, each: r.forEach != nil, count: r.count != nil}
	if !sc.each && !sc.count {
		return sc
	}
	ctx := m.ctx.NewChild()
	ctx.Variables = map[string]cty.Value{}
	if sc.each {
		ctx.Variables["each"] = cty.ObjectVal(map[string]cty.Value{"key": cty.UnknownVal(r.eachKey), "value": cty.UnknownVal(r.eachValue)})
	}
	if sc.count {
		ctx.Variables["count"] = cty.ObjectVal(map[string]cty.Value{"index": cty.UnknownVal(cty.Number)})
	}
	sc.ctx = ctx
	return sc
}

// elementTypes returns the key and element types of a collection, unifying
// the types of an object's attributes or a tuple's elements.
func elementTypes(t cty.Type) (key, value cty.Type, ok bool) {
	switch {
	case t == cty.DynamicPseudoType:
		return cty.DynamicPseudoType, cty.DynamicPseudoType, true
	case t.IsMapType():
		return cty.String, t.ElementType(), true
	case t.IsSetType():
		return t.ElementType(), t.ElementType(), true
	case t.IsListType():
		return cty.Number, t.ElementType(), true
	case t.IsObjectType():
		var types []cty.Type
		for _, at := range t.AttributeTypes() {
			types = append(types, at)
		}
		return cty.String, unify(types), true
	case t.IsTupleType():
		return cty.Number, unify(t.TupleElementTypes()), true
	}
	return cty.NilType, cty.NilType, false
}

func unify(types []cty.Type) cty.Type {
	if len(types) == 0 {
		return cty.DynamicPseudoType
	}
	t, _ := convert.UnifyUnsafe(types)
	if t == cty.NilType {
		return cty.DynamicPseudoType
	}
	return t
}

// checkBody checks a block's body against its schema: each argument exists,
// may be set and has a value of its type; each nested block exists and has
// the right number of instances; required arguments are there. metaArgs and
// metaBlocks are the meta-arguments handled elsewhere.
func (m *module) checkBody(body *hclsyntax.Body, schema *Block, sc *scope, where string, metaArgs, metaBlocks map[string]bool) {
	for _, name := range sortedKeys(body.Attributes) {
		a := body.Attributes[name]
		if metaArgs[name] {
			continue
		}
		as, ok := schema.Attributes[name]
		if !ok {
			if _, isBlock := schema.BlockTypes[name]; isBlock {
				m.errorf(a.NameRange, "%s: %q is a block, not an argument: write %s { ... }", where, name, name)
			} else {
				m.errorf(a.NameRange, "%s: unsupported argument %q%s", where, name, suggest(name, sortedKeys(schema.Attributes)))
			}
			m.references(a.Expr, sc)
			continue
		}
		if !as.Settable() {
			m.errorf(a.NameRange, "%s: %q is computed by the provider and cannot be set", where, name)
			m.references(a.Expr, sc)
			continue
		}
		if as.Deprecated {
			m.warnf(a.NameRange, "%s: argument %q is deprecated", where, name)
		}
		val, ok := m.eval(a.Expr, sc, as.Type, where+"."+name)
		if ok && as.Required && val.IsKnown() && val.IsNull() {
			m.errorf(a.Expr.Range(), "%s: required argument %q is null", where, name)
		}
	}
	counts := map[string]int{}
	dynamic := map[string]bool{}
	for _, b := range body.Blocks {
		if metaBlocks[b.Type] {
			continue
		}
		if b.Type == "dynamic" {
			m.checkDynamic(b, schema, sc, where)
			if len(b.Labels) == 1 {
				dynamic[b.Labels[0]] = true
			}
			continue
		}
		nb, ok := schema.BlockTypes[b.Type]
		if !ok {
			if _, isAttr := schema.Attributes[b.Type]; isAttr {
				m.errorf(b.TypeRange, "%s: %q is an argument, not a block: write %s = ...", where, b.Type, b.Type)
			} else {
				m.errorf(b.TypeRange, "%s: unsupported block %q%s", where, b.Type, suggest(b.Type, sortedKeys(schema.BlockTypes)))
			}
			m.walkReferences(b.Body, sc)
			continue
		}
		counts[b.Type]++
		m.checkNested(b, b.Type, b.Labels, b.Body, nb, sc, where)
	}
	for _, name := range sortedKeys(schema.Attributes) {
		if schema.Attributes[name].Required {
			if _, set := body.Attributes[name]; !set {
				m.errorf(body.SrcRange, "%s: missing required argument %q", where, name)
			}
		}
	}
	for _, name := range sortedKeys(schema.BlockTypes) {
		nb := schema.BlockTypes[name]
		n := counts[name]
		if dynamic[name] {
			continue
		}
		max := nb.MaxItems
		if nb.NestingMode == NestingSingle || nb.NestingMode == NestingGroup {
			max = 1
		}
		switch {
		case nb.MinItems > 0 && n < nb.MinItems:
			m.errorf(body.SrcRange, "%s: needs at least %d %q block(s), has %d", where, nb.MinItems, name, n)
		case max > 0 && n > max:
			m.errorf(body.SrcRange, "%s: allows at most %d %q block(s), has %d", where, max, name, n)
		}
	}
}

func (m *module) checkNested(b *hclsyntax.Block, typ string, labels []string, body *hclsyntax.Body, nb *NestedBlock, sc *scope, where string) {
	wantLabels := 0
	if nb.NestingMode == NestingMap {
		wantLabels = 1
	}
	if len(labels) != wantLabels {
		m.errorf(b.DefRange(), "%s: a %q block takes %d label(s), not %d", where, typ, wantLabels, len(labels))
	}
	if nb.Block.Deprecated {
		m.warnf(b.TypeRange, "%s: block %q is deprecated", where, typ)
	}
	m.checkBody(body, nb.Block, sc, where+"."+typ, nil, nil)
}

// checkDynamic checks a dynamic block: its for_each, iterator and labels,
// and its content against the schema of the block it generates, with the
// iterator in scope.
func (m *module) checkDynamic(b *hclsyntax.Block, schema *Block, sc *scope, where string) {
	if len(b.Labels) != 1 {
		m.errorf(b.DefRange(), "%s: a dynamic block takes one label, the block type it generates", where)
		return
	}
	typ := b.Labels[0]
	nb, ok := schema.BlockTypes[typ]
	if !ok {
		if _, isAttr := schema.Attributes[typ]; isAttr {
			m.errorf(b.LabelRanges[0], "%s: dynamic %q generates blocks, but %q is an argument", where, typ, typ)
		} else {
			m.errorf(b.LabelRanges[0], "%s: dynamic block of unsupported block type %q%s", where, typ, suggest(typ, sortedKeys(schema.BlockTypes)))
		}
		return
	}
	iterator := typ
	for name, a := range b.Body.Attributes {
		switch name {
		case "for_each", "labels":
		case "iterator":
			tr, diags := hcl.AbsTraversalForExpr(a.Expr)
			if diags.HasErrors() || len(tr) != 1 {
				m.errorf(a.Expr.Range(), "%s: dynamic %q iterator must be a bare name", where, typ)
				continue
			}
			iterator = tr.RootName()
		default:
			m.errorf(a.NameRange, "%s: unsupported argument %q in dynamic %q (for_each, iterator, labels, content)", where, name, typ)
		}
	}
	fe, ok := b.Body.Attributes["for_each"]
	if !ok {
		m.errorf(b.DefRange(), "%s: dynamic %q needs for_each", where, typ)
		return
	}
	key, value := cty.DynamicPseudoType, cty.DynamicPseudoType
	if val, ok := m.eval(fe.Expr, sc, cty.DynamicPseudoType, where+" dynamic "+typ+" for_each"); ok {
		k, v, iterable := elementTypes(val.Type())
		if !iterable {
			m.errorf(fe.Expr.Range(), "%s: dynamic %q for_each must be a collection, not %s", where, typ, typeString(val.Type()))
		} else {
			key, value = k, v
		}
	}
	inner := sc.child(m, iterator, key, value)
	if l, ok := b.Body.Attributes["labels"]; ok {
		m.eval(l.Expr, inner, cty.List(cty.String), where+" dynamic "+typ+" labels")
	}
	var content *hclsyntax.Block
	for _, cb := range b.Body.Blocks {
		if cb.Type != "content" {
			m.errorf(cb.TypeRange, "%s: unexpected block %q in dynamic %q: only content", where, cb.Type, typ)
			continue
		}
		if content != nil {
			m.errorf(cb.TypeRange, "%s: dynamic %q has more than one content block", where, typ)
			continue
		}
		content = cb
	}
	if content == nil {
		m.errorf(b.DefRange(), "%s: dynamic %q needs a content block", where, typ)
		return
	}
	labels := make([]string, 0, 1)
	if _, ok := b.Body.Attributes["labels"]; ok {
		labels = append(labels, "(dynamic)")
	}
	m.checkNested(content, typ, labels, content.Body, nb, inner, where)
}

// walkReferences checks the references of every expression in body, for
// bodies whose schema is not known.
func (m *module) walkReferences(body *hclsyntax.Body, sc *scope) {
	for _, name := range sortedKeys(body.Attributes) {
		m.references(body.Attributes[name].Expr, sc)
	}
	for _, b := range body.Blocks {
		m.walkReferences(b.Body, sc)
	}
}

func (m *module) checkDependsOn(a *hclsyntax.Attribute, node string) {
	tuple, ok := a.Expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		m.errorf(a.Expr.Range(), "depends_on must be a list of references, as [google_x.name]")
		return
	}
	for _, e := range tuple.Exprs {
		tr, diags := hcl.AbsTraversalForExpr(e)
		if diags.HasErrors() {
			m.errorf(e.Range(), "depends_on takes references to resources, data sources or modules, not expressions")
			continue
		}
		if !m.reference(tr, &scope{node: node}) {
			continue
		}
		root := tr.RootName()
		steps := 2
		if root == "data" {
			steps = 3
		}
		if root == "var" || root == "local" || root == "each" || root == "count" || root == "path" || root == "self" || root == "terraform" {
			m.errorf(e.Range(), "depends_on takes resources, data sources or modules, not %s", root)
			continue
		}
		for _, step := range tr[min(steps, len(tr)):] {
			if _, isAttr := step.(hcl.TraverseAttr); isAttr {
				m.errorf(e.Range(), "depends_on takes a whole resource, not one of its attributes: %s", traversalString(tr))
				break
			}
		}
	}
}

func (m *module) checkProviderRef(a *hclsyntax.Attribute) {
	tr, diags := hcl.AbsTraversalForExpr(a.Expr)
	if diags.HasErrors() || len(tr) > 2 {
		m.errorf(a.Expr.Range(), "provider must be a provider reference, as google or google.ALIAS")
		return
	}
	name := tr.RootName()
	if len(tr) == 2 {
		step, ok := tr[1].(hcl.TraverseAttr)
		if !ok {
			m.errorf(a.Expr.Range(), "provider must be a provider reference, as google or google.ALIAS")
			return
		}
		name += "." + step.Name
		if !m.providers[name] {
			m.errorf(a.Expr.Range(), "no provider block configures %s (a provider block with alias = %q)", name, step.Name)
		}
	}
}

var lifecycleArgs = map[string]bool{"create_before_destroy": true, "prevent_destroy": true, "ignore_changes": true, "replace_triggered_by": true}

func (m *module) checkLifecycle(b *hclsyntax.Block, r *resource, sc *scope) {
	if r.lifecycleSet {
		m.errorf(b.TypeRange, "%s has more than one lifecycle block", r.node)
	}
	r.lifecycleSet = true
	for _, name := range sortedKeys(b.Body.Attributes) {
		a := b.Body.Attributes[name]
		if !lifecycleArgs[name] || r.data {
			m.errorf(a.NameRange, "%s: unsupported argument %q in lifecycle", r.node, name)
			continue
		}
		switch name {
		case "create_before_destroy", "prevent_destroy":
			m.constant(a, cty.Bool, r.node+" lifecycle")
		case "ignore_changes":
			m.checkIgnoreChanges(a, r)
		case "replace_triggered_by":
			tuple, ok := a.Expr.(*hclsyntax.TupleConsExpr)
			if !ok {
				m.errorf(a.Expr.Range(), "%s: replace_triggered_by must be a list of references", r.node)
				continue
			}
			for _, e := range tuple.Exprs {
				m.references(e, sc)
			}
		}
	}
	for _, cb := range b.Body.Blocks {
		switch cb.Type {
		case "precondition", "postcondition":
			csc := sc
			if cb.Type == "postcondition" {
				self := *sc
				self.self = true
				if r.schema != nil {
					ctx := sc.evalContext(m).NewChild()
					ctx.Variables = map[string]cty.Value{"self": cty.UnknownVal(r.schema.ImpliedType())}
					self.ctx = ctx
				}
				csc = &self
			}
			m.checkCondition(cb, csc, r.node+" "+cb.Type)
		default:
			m.errorf(cb.TypeRange, "%s: unsupported block %q in lifecycle", r.node, cb.Type)
		}
	}
}

func (m *module) checkIgnoreChanges(a *hclsyntax.Attribute, r *resource) {
	if tr, diags := hcl.AbsTraversalForExpr(a.Expr); !diags.HasErrors() && len(tr) == 1 && tr.RootName() == "all" {
		return
	}
	tuple, ok := a.Expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		m.errorf(a.Expr.Range(), "%s: ignore_changes must be all or a list of attribute names", r.node)
		return
	}
	for _, e := range tuple.Exprs {
		tr, diags := hcl.RelTraversalForExpr(e)
		if diags.HasErrors() || len(tr) == 0 {
			m.errorf(e.Range(), "%s: ignore_changes takes attribute names of the resource, as [labels]", r.node)
			continue
		}
		first, ok := tr[0].(hcl.TraverseAttr)
		if !ok || r.schema == nil {
			continue
		}
		if _, isAttr := r.schema.Attributes[first.Name]; isAttr {
			continue
		}
		if _, isBlock := r.schema.BlockTypes[first.Name]; isBlock {
			continue
		}
		m.errorf(e.Range(), "%s: ignore_changes names %q, which the resource does not have", r.node, first.Name)
	}
}

// checkCondition checks a precondition, postcondition, validation or assert
// block: a bool condition and a string error_message.
func (m *module) checkCondition(b *hclsyntax.Block, sc *scope, where string) {
	for _, name := range sortedKeys(b.Body.Attributes) {
		if name != "condition" && name != "error_message" {
			m.errorf(b.Body.Attributes[name].NameRange, "%s: unsupported argument %q", where, name)
		}
	}
	for _, nb := range b.Body.Blocks {
		m.errorf(nb.TypeRange, "%s: unexpected block %q", where, nb.Type)
	}
	c, ok := b.Body.Attributes["condition"]
	if !ok {
		m.errorf(b.DefRange(), "%s: missing condition", where)
	} else {
		m.eval(c.Expr, sc, cty.Bool, where+" condition")
	}
	e, ok := b.Body.Attributes["error_message"]
	if !ok {
		m.errorf(b.DefRange(), "%s: missing error_message", where)
	} else {
		m.eval(e.Expr, sc, cty.String, where+" error_message")
	}
}

// --- outputs and the rest ---------------------------------------------------------------

var outputArgs = map[string]bool{"value": true, "description": true, "sensitive": true, "depends_on": true, "ephemeral": true}

func (m *module) checkOutput(name string, b *hclsyntax.Block) {
	node := "output." + name
	sc := &scope{node: node}
	for _, attrName := range sortedKeys(b.Body.Attributes) {
		a := b.Body.Attributes[attrName]
		switch attrName {
		case "value":
			m.eval(a.Expr, sc, cty.DynamicPseudoType, node)
		case "description":
			m.constant(a, cty.String, node)
		case "sensitive", "ephemeral":
			m.constant(a, cty.Bool, node)
		case "depends_on":
			m.checkDependsOn(a, node)
		default:
			m.errorf(a.NameRange, "%s: unsupported argument %q%s", node, attrName, suggest(attrName, sortedKeys(outputArgs)))
		}
	}
	if _, ok := b.Body.Attributes["value"]; !ok {
		m.errorf(b.DefRange(), "%s: missing required argument \"value\"", node)
	}
	for _, cb := range b.Body.Blocks {
		if cb.Type != "precondition" {
			m.errorf(cb.TypeRange, "%s: unexpected block %q", node, cb.Type)
			continue
		}
		m.checkCondition(cb, sc, node+" precondition")
	}
}

// googleProviderArgs are the google provider's arguments, which the
// schema's resource and data source lists do not describe.
var googleProviderArgs = map[string]bool{
	"access_token": true, "add_terraform_attribution_label": true, "alias": true, "billing_project": true,
	"credentials": true, "default_labels": true, "impersonate_service_account": true,
	"impersonate_service_account_delegates": true, "project": true, "region": true, "request_reason": true,
	"request_timeout": true, "scopes": true, "terraform_attribution_label_addition_strategy": true,
	"universe_domain": true, "user_project_override": true, "zone": true,
}

var terraformArgs = map[string]bool{"required_version": true, "experiments": true}

// checkOthers checks the blocks that are neither resources nor outputs.
func (m *module) checkOthers(body *hclsyntax.Body) {
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			if len(b.Labels) != 1 {
				continue
			}
			for _, vb := range b.Body.Blocks {
				if vb.Type == "validation" {
					v := m.variables[b.Labels[0]]
					sc := &scope{onlyVar: b.Labels[0]}
					if v != nil && v.block != b {
						continue
					}
					m.checkCondition(vb, sc, "variable "+b.Labels[0]+" validation")
				}
			}
		case "provider":
			if len(b.Labels) != 1 {
				continue
			}
			name := b.Labels[0]
			if len(m.required) > 0 && !m.required[name] {
				m.errorf(b.LabelRanges[0], "provider %q is not in required_providers", name)
			}
			sc := &scope{}
			for _, attrName := range sortedKeys(b.Body.Attributes) {
				a := b.Body.Attributes[attrName]
				if name == "google" && !googleProviderArgs[attrName] && !strings.HasSuffix(attrName, "_custom_endpoint") {
					m.errorf(a.NameRange, "provider google: unsupported argument %q%s", attrName, suggest(attrName, sortedKeys(googleProviderArgs)))
					continue
				}
				m.eval(a.Expr, sc, cty.DynamicPseudoType, "provider "+name)
			}
			for _, pb := range b.Body.Blocks {
				m.walkReferences(pb.Body, sc)
			}
		case "terraform":
			m.checkTerraform(b)
		case "module":
			if len(b.Labels) != 1 {
				continue
			}
			node := "module." + b.Labels[0]
			sc := &scope{node: node, each: b.Body.Attributes["for_each"] != nil, count: b.Body.Attributes["count"] != nil}
			if _, ok := b.Body.Attributes["source"]; !ok {
				m.errorf(b.DefRange(), "%s: missing required argument \"source\"", node)
			}
			for _, attrName := range sortedKeys(b.Body.Attributes) {
				a := b.Body.Attributes[attrName]
				switch attrName {
				case "source", "version":
					m.constant(a, cty.String, node)
				case "depends_on":
					m.checkDependsOn(a, node)
				case "providers":
					// Provider references, not values.
				default:
					// The module's variables are not known here: only the
					// references are checked.
					m.references(a.Expr, sc)
				}
			}
		case "check":
			for _, cb := range b.Body.Blocks {
				if cb.Type != "assert" {
					m.errorf(cb.TypeRange, "check %q: only assert blocks are supported here", b.Labels[0])
					continue
				}
				m.checkCondition(cb, &scope{}, "check "+b.Labels[0])
			}
		case "import":
			if to, ok := b.Body.Attributes["to"]; ok {
				if tr, diags := hcl.AbsTraversalForExpr(to.Expr); !diags.HasErrors() {
					m.reference(tr, &scope{})
				}
			}
		}
	}
}

func (m *module) checkTerraform(b *hclsyntax.Block) {
	for _, name := range sortedKeys(b.Body.Attributes) {
		a := b.Body.Attributes[name]
		if !terraformArgs[name] {
			m.errorf(a.NameRange, "terraform: unsupported argument %q", name)
			continue
		}
		if name == "required_version" {
			m.constant(a, cty.String, "terraform")
		}
	}
	for _, tb := range b.Body.Blocks {
		switch tb.Type {
		case "required_providers":
			for _, name := range sortedKeys(tb.Body.Attributes) {
				a := tb.Body.Attributes[name]
				val, ok := m.constant(a, cty.DynamicPseudoType, "required_providers")
				if !ok {
					continue
				}
				if !val.Type().IsObjectType() {
					m.errorf(a.Expr.Range(), "required_providers.%s must be { source = ..., version = ... }", name)
					continue
				}
				for attr := range val.Type().AttributeTypes() {
					if attr != "source" && attr != "version" && attr != "configuration_aliases" {
						m.errorf(a.Expr.Range(), "required_providers.%s: unsupported argument %q", name, attr)
					}
				}
				if !val.Type().HasAttribute("source") {
					m.errorf(a.Expr.Range(), "required_providers.%s: missing source", name)
				}
			}
		case "backend", "cloud", "provider_meta":
		default:
			m.errorf(tb.TypeRange, "terraform: unsupported block %q", tb.Type)
		}
	}
}

// --- whole-module checks -------------------------------------------------------------------

// checkCycles reports dependency cycles between locals, resources, data
// sources, modules and outputs: Terraform cannot order them.
func (m *module) checkCycles() {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	reported := map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		deps := append([]string(nil), m.deps[n]...)
		sort.Strings(deps)
		for _, d := range deps {
			switch color[d] {
			case white:
				visit(d)
			case grey:
				i := len(stack) - 1
				for stack[i] != d {
					i--
				}
				cycle := append(append([]string(nil), stack[i:]...), d)
				key := canonicalCycle(cycle)
				if !reported[key] {
					reported[key] = true
					m.errorf(m.defs[d], "dependency cycle: %s", strings.Join(cycle, " -> "))
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range sortedKeys(m.deps) {
		if color[n] == white {
			visit(n)
		}
	}
}

func canonicalCycle(cycle []string) string {
	nodes := append([]string(nil), cycle[:len(cycle)-1]...)
	sort.Strings(nodes)
	return strings.Join(nodes, ",")
}

func (m *module) checkUnused() {
	for _, name := range sortedKeys(m.variables) {
		if !m.used["var."+name] {
			m.warnf(m.variables[name].block.DefRange(), "variable %q is declared but never used", name)
		}
	}
	for _, name := range sortedKeys(m.locals) {
		if !m.used["local."+name] {
			m.warnf(m.locals[name].attr.NameRange, "local value %q is defined but never used", name)
		}
	}
}

// --- helpers --------------------------------------------------------------------------------

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func rangeString(r hcl.Range) string {
	return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line)
}

func traversalString(tr hcl.Traversal) string {
	var b strings.Builder
	for i, step := range tr {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			b.WriteString(s.Name)
		case hcl.TraverseAttr:
			b.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			b.WriteString("[...]")
		default:
			if i > 0 {
				b.WriteString("...")
			}
		}
	}
	return b.String()
}

func typeString(t cty.Type) string {
	if t == cty.NilType {
		return "nothing"
	}
	return t.FriendlyName()
}

// suggest returns ` (did you mean "x"?)` for the candidate nearest to name,
// when one is near enough to be a likely typo.
func suggest(name string, candidates []string) string {
	best, bestDist := "", len(name)/3+1
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestDist || (d == bestDist && best == "" && d <= 2) {
			best, bestDist = c, d
		}
	}
	if best == "" || best == name {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
