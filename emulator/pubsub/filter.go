package pubsub

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// filter is a parsed subscription filter, in the language Google documents
// for Pub/Sub ("Filter messages"): over a message's attributes only,
//
//	attributes.KEY = "v"    attributes.KEY != "v"    attributes:KEY
//	hasPrefix(attributes.KEY, "p")
//	NOT e    e AND e ...    e OR e ...    ( e )
//
// where AND and OR cannot be mixed without parentheses, as Google requires.
// A message the filter rejects is never delivered on that subscription.
type filter interface {
	match(attrs map[string]string) bool
}

type (
	hasAttr   struct{ key string }
	attrEq    struct{ key, value string }
	attrPfx   struct{ key, prefix string }
	notFilter struct{ f filter }
	andFilter []filter
	orFilter  []filter
)

func (f hasAttr) match(a map[string]string) bool { _, ok := a[f.key]; return ok }
func (f attrEq) match(a map[string]string) bool  { v, ok := a[f.key]; return ok && v == f.value }
func (f attrPfx) match(a map[string]string) bool {
	v, ok := a[f.key]
	return ok && strings.HasPrefix(v, f.prefix)
}
func (f notFilter) match(a map[string]string) bool { return !f.f.match(a) }

func (f andFilter) match(a map[string]string) bool {
	for _, g := range f {
		if !g.match(a) {
			return false
		}
	}
	return true
}

func (f orFilter) match(a map[string]string) bool {
	for _, g := range f {
		if g.match(a) {
			return true
		}
	}
	return false
}

// parseFilter parses src; an empty filter matches everything (nil).
func parseFilter(src string) (filter, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	p := &filterParser{src: src}
	f, err := p.expr()
	if err == nil && p.peek() != "" {
		err = fmt.Errorf("unexpected %q", p.peek())
	}
	if err != nil {
		return nil, fmt.Errorf("invalid filter %q: %w", src, err)
	}
	return f, nil
}

type filterParser struct {
	src string
	pos int
}

// peek returns the next token without taking it: a punctuation mark, a
// quoted string (with its quotes) or a word.
func (p *filterParser) peek() string {
	s := strings.TrimLeftFunc(p.src[p.pos:], unicode.IsSpace)
	if s == "" {
		return ""
	}
	switch s[0] {
	case '(', ')', ',', ':', '=':
		return s[:1]
	case '!':
		if strings.HasPrefix(s, "!=") {
			return "!="
		}
		return s[:1]
	case '"':
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				return s[:i+1]
			}
		}
		return s // unterminated: strconv.Unquote reports it
	}
	end := strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(`()",:=!`, r) })
	if end < 0 {
		end = len(s)
	}
	return s[:end]
}

func (p *filterParser) next() string {
	t := p.peek()
	p.pos = len(p.src) - len(strings.TrimLeftFunc(p.src[p.pos:], unicode.IsSpace)) + len(t)
	return t
}

func (p *filterParser) expect(t string) error {
	if got := p.next(); got != t {
		return fmt.Errorf("want %q, got %q", t, got)
	}
	return nil
}

// expr is a term, or terms joined by one of AND and OR.
func (p *filterParser) expr() (filter, error) {
	first, err := p.term()
	if err != nil {
		return nil, err
	}
	terms, op := []filter{first}, ""
	for p.peek() == "AND" || p.peek() == "OR" {
		if op != "" && p.peek() != op {
			return nil, fmt.Errorf("AND and OR mixed without parentheses")
		}
		op = p.next()
		t, err := p.term()
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	switch op {
	case "AND":
		return andFilter(terms), nil
	case "OR":
		return orFilter(terms), nil
	}
	return first, nil
}

func (p *filterParser) term() (filter, error) {
	switch t := p.next(); {
	case t == "NOT":
		f, err := p.term()
		return notFilter{f}, err
	case t == "(":
		f, err := p.expr()
		if err != nil {
			return nil, err
		}
		return f, p.expect(")")
	case t == "hasPrefix":
		if err := p.expect("("); err != nil {
			return nil, err
		}
		key, err := p.attribute(p.next())
		if err != nil {
			return nil, err
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
		prefix, err := p.str()
		if err != nil {
			return nil, err
		}
		return attrPfx{key, prefix}, p.expect(")")
	case t == "attributes":
		if err := p.expect(":"); err != nil {
			return nil, err
		}
		key, err := p.key(p.next())
		return hasAttr{key}, err
	case strings.HasPrefix(t, "attributes."):
		key, err := p.attribute(t)
		if err != nil {
			return nil, err
		}
		switch op := p.next(); op {
		case "=", "!=":
			v, err := p.str()
			if err != nil {
				return nil, err
			}
			if op == "!=" {
				return notFilter{attrEq{key, v}}, nil
			}
			return attrEq{key, v}, nil
		default:
			return nil, fmt.Errorf("want = or != after %s, got %q", t, op)
		}
	default:
		return nil, fmt.Errorf("unexpected %q", t)
	}
}

// attribute takes the KEY of "attributes.KEY".
func (p *filterParser) attribute(t string) (string, error) {
	key, ok := strings.CutPrefix(t, "attributes.")
	if !ok {
		return "", fmt.Errorf("want attributes.KEY, got %q", t)
	}
	return p.key(key)
}

func (p *filterParser) key(k string) (string, error) {
	if k == "" || strings.ContainsAny(k, `"`) {
		return "", fmt.Errorf("invalid attribute key %q", k)
	}
	return k, nil
}

func (p *filterParser) str() (string, error) {
	t := p.next()
	v, err := strconv.Unquote(t)
	if err != nil || !strings.HasPrefix(t, `"`) {
		return "", fmt.Errorf("want a quoted string, got %q", t)
	}
	return v, nil
}
