package tfcheck

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src as `terraform fmt` leaves it: LF line endings,
// interpolation-only strings ("${x}") unwrapped, the legacy quoted type
// names of variables ("string", list, map) written as type expressions,
// labels quoted, and HCL's canonical layout (hclwrite.Format: indentation,
// aligned equals signs, spacing).
func Format(name string, src []byte) ([]byte, error) {
	src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	f, diags := hclwrite.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	formatBody(f.Body(), nil)
	return hclwrite.Format(f.Bytes()), nil
}

// CheckFormat reports a file that `terraform fmt` would change, at the
// first line it would change.
func CheckFormat(name string, src []byte) []Diagnostic {
	want, err := Format(name, src)
	if err != nil {
		// CheckModule reports syntax errors.
		return nil
	}
	if bytes.Equal(want, src) {
		return nil
	}
	got, exp := bytes.Split(src, []byte("\n")), bytes.Split(want, []byte("\n"))
	line := 0
	for line < len(got) && line < len(exp) && bytes.Equal(got[line], exp[line]) {
		line++
	}
	msg := "not formatted as terraform fmt would leave it"
	if line < len(exp) {
		msg += fmt.Sprintf(": this line would read %q", exp[line])
	} else {
		msg += ": trailing lines would go"
	}
	pos := hcl.Pos{Line: line + 1, Column: 1}
	return []Diagnostic{{Severity: Error, Range: hcl.Range{Filename: name, Start: pos, End: pos}, Message: msg}}
}

func formatBody(body *hclwrite.Body, inBlocks []string) {
	for name, attr := range body.Attributes() {
		tokens := attr.Expr().BuildTokens(nil)
		if len(inBlocks) == 1 && inBlocks[0] == "variable" && name == "type" {
			body.SetAttributeRaw(name, formatTypeExpr(tokens))
			continue
		}
		body.SetAttributeRaw(name, unwrapInterpolation(tokens))
	}
	for _, b := range body.Blocks() {
		b.SetLabels(b.Labels())
		formatBody(b.Body(), append(inBlocks, b.Type()))
	}
}

// unwrapInterpolation turns "${expr}" into expr when the string holds that
// one interpolation and nothing else.
func unwrapInterpolation(tokens hclwrite.Tokens) hclwrite.Tokens {
	n := len(tokens)
	if n < 5 || tokens[0].Type != hclsyntax.TokenOQuote || tokens[1].Type != hclsyntax.TokenTemplateInterp ||
		tokens[n-2].Type != hclsyntax.TokenTemplateSeqEnd || tokens[n-1].Type != hclsyntax.TokenCQuote {
		return tokens
	}
	inside := tokens[2 : n-2]
	quotes := 0
	for _, t := range inside {
		switch t.Type {
		case hclsyntax.TokenOQuote:
			quotes++
		case hclsyntax.TokenCQuote:
			quotes--
		case hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateSeqEnd, hclsyntax.TokenQuotedLit:
			if quotes == 0 {
				return tokens
			}
		}
	}
	for len(inside) > 0 && inside[0].Type == hclsyntax.TokenNewline {
		inside = inside[1:]
	}
	for len(inside) > 0 && inside[len(inside)-1].Type == hclsyntax.TokenNewline {
		inside = inside[:len(inside)-1]
	}
	if len(inside) == 0 {
		return tokens
	}
	multiline := false
	for _, t := range inside {
		multiline = multiline || t.Type == hclsyntax.TokenNewline
	}
	if multiline && !(inside[0].Type == hclsyntax.TokenOParen && inside[len(inside)-1].Type == hclsyntax.TokenCParen) {
		out := hclwrite.Tokens{{Type: hclsyntax.TokenOParen, Bytes: []byte("(")}}
		out = append(out, inside...)
		return append(out, &hclwrite.Token{Type: hclsyntax.TokenCParen, Bytes: []byte(")")})
	}
	return inside
}

// formatTypeExpr rewrites the type names of Terraform before 0.12.
func formatTypeExpr(tokens hclwrite.Tokens) hclwrite.Tokens {
	word := func(s string) hclwrite.Tokens {
		return hclwrite.Tokens{{Type: hclsyntax.TokenIdent, Bytes: []byte(s)}}
	}
	legacy := map[string]string{"string": "string", "list": "list(string)", "map": "map(string)"}
	switch len(tokens) {
	case 1:
		if tokens[0].Type == hclsyntax.TokenIdent {
			switch string(tokens[0].Bytes) {
			case "list":
				return word("list(any)")
			case "map":
				return word("map(any)")
			}
		}
	case 3:
		if tokens[0].Type == hclsyntax.TokenOQuote && tokens[1].Type == hclsyntax.TokenQuotedLit && tokens[2].Type == hclsyntax.TokenCQuote {
			if t, ok := legacy[string(tokens[1].Bytes)]; ok {
				return word(t)
			}
		}
	}
	return tokens
}
