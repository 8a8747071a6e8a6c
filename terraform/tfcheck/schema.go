package tfcheck

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Schema holds the resource and data source types of one or more providers.
type Schema struct {
	Resources   map[string]*Block
	DataSources map[string]*Block
	// Providers are the provider addresses the schema came from, such as
	// registry.terraform.io/hashicorp/google, with their versions.
	Providers map[string]string
}

// Block is the schema of a block: a resource, a data source, or a block
// nested in one.
type Block struct {
	Attributes map[string]*Attribute
	BlockTypes map[string]*NestedBlock
	Deprecated bool
}

// Attribute is the schema of an argument or an exported attribute.
type Attribute struct {
	Type       cty.Type
	Required   bool
	Optional   bool
	Computed   bool
	Deprecated bool
}

// Settable reports whether a configuration may set the attribute.
func (a *Attribute) Settable() bool { return a.Required || a.Optional }

// Nesting modes of nested blocks.
const (
	NestingSingle = "single"
	NestingGroup  = "group"
	NestingList   = "list"
	NestingSet    = "set"
	NestingMap    = "map"
)

// NestedBlock is the schema of a block type nested in a block.
type NestedBlock struct {
	NestingMode string
	MinItems    int
	MaxItems    int
	Block       *Block
}

// LoadSchema reads the output of `terraform providers schema -json`, gzipped
// when the name ends in .gz.
func LoadSchema(path string) (*Schema, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load provider schema: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("load provider schema %s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	s, err := ReadSchema(r)
	if err != nil {
		return nil, fmt.Errorf("load provider schema %s: %w", path, err)
	}
	return s, nil
}

// The JSON shapes of `terraform providers schema -json`.
type jsonSchemas struct {
	FormatVersion   string                  `json:"format_version"`
	ProviderSchemas map[string]jsonProvider `json:"provider_schemas"`
}

type jsonProvider struct {
	ProviderVersion   string                    `json:"provider_version"`
	ResourceSchemas   map[string]jsonTypeSchema `json:"resource_schemas"`
	DataSourceSchemas map[string]jsonTypeSchema `json:"data_source_schemas"`
}

type jsonTypeSchema struct {
	Block *jsonBlock `json:"block"`
}

type jsonBlock struct {
	Attributes map[string]*jsonAttribute `json:"attributes"`
	BlockTypes map[string]*jsonBlockType `json:"block_types"`
	Deprecated bool                      `json:"deprecated"`
}

type jsonAttribute struct {
	Type       json.RawMessage `json:"type"`
	NestedType *jsonNested     `json:"nested_type"`
	Required   bool            `json:"required"`
	Optional   bool            `json:"optional"`
	Computed   bool            `json:"computed"`
	Deprecated bool            `json:"deprecated"`
}

// jsonNested is an attribute of the plugin framework's nested types.
type jsonNested struct {
	Attributes  map[string]*jsonAttribute `json:"attributes"`
	NestingMode string                    `json:"nesting_mode"`
}

type jsonBlockType struct {
	NestingMode string     `json:"nesting_mode"`
	Block       *jsonBlock `json:"block"`
	MinItems    int        `json:"min_items"`
	MaxItems    int        `json:"max_items"`
}

// ReadSchema decodes the output of `terraform providers schema -json`.
func ReadSchema(r io.Reader) (*Schema, error) {
	var js jsonSchemas
	if err := json.NewDecoder(r).Decode(&js); err != nil {
		return nil, err
	}
	if len(js.ProviderSchemas) == 0 {
		return nil, fmt.Errorf("no provider_schemas: not the output of `terraform providers schema -json`")
	}
	s := &Schema{Resources: map[string]*Block{}, DataSources: map[string]*Block{}, Providers: map[string]string{}}
	for addr, p := range js.ProviderSchemas {
		s.Providers[addr] = p.ProviderVersion
		for name, t := range p.ResourceSchemas {
			b, err := convertBlock(t.Block)
			if err != nil {
				return nil, fmt.Errorf("resource %s: %w", name, err)
			}
			s.Resources[name] = b
		}
		for name, t := range p.DataSourceSchemas {
			b, err := convertBlock(t.Block)
			if err != nil {
				return nil, fmt.Errorf("data source %s: %w", name, err)
			}
			s.DataSources[name] = b
		}
	}
	return s, nil
}

func convertBlock(jb *jsonBlock) (*Block, error) {
	b := &Block{Attributes: map[string]*Attribute{}, BlockTypes: map[string]*NestedBlock{}}
	if jb == nil {
		return b, nil
	}
	b.Deprecated = jb.Deprecated
	for name, ja := range jb.Attributes {
		a, err := convertAttribute(ja)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", name, err)
		}
		b.Attributes[name] = a
	}
	for name, jt := range jb.BlockTypes {
		nb, err := convertBlock(jt.Block)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", name, err)
		}
		switch jt.NestingMode {
		case NestingSingle, NestingGroup, NestingList, NestingSet, NestingMap:
		default:
			return nil, fmt.Errorf("block %s: unknown nesting mode %q", name, jt.NestingMode)
		}
		b.BlockTypes[name] = &NestedBlock{NestingMode: jt.NestingMode, MinItems: jt.MinItems, MaxItems: jt.MaxItems, Block: nb}
	}
	return b, nil
}

func convertAttribute(ja *jsonAttribute) (*Attribute, error) {
	a := &Attribute{Required: ja.Required, Optional: ja.Optional, Computed: ja.Computed, Deprecated: ja.Deprecated}
	switch {
	case ja.NestedType != nil:
		attrs := map[string]cty.Type{}
		for name, na := range ja.NestedType.Attributes {
			n, err := convertAttribute(na)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			attrs[name] = n.Type
		}
		obj := cty.Object(attrs)
		switch ja.NestedType.NestingMode {
		case NestingSingle, NestingGroup:
			a.Type = obj
		case NestingList:
			a.Type = cty.List(obj)
		case NestingSet:
			a.Type = cty.Set(obj)
		case NestingMap:
			a.Type = cty.Map(obj)
		default:
			return nil, fmt.Errorf("unknown nesting mode %q", ja.NestedType.NestingMode)
		}
	case len(ja.Type) > 0:
		t, err := ctyjson.UnmarshalType(ja.Type)
		if err != nil {
			return nil, err
		}
		a.Type = t
	default:
		return nil, fmt.Errorf("neither type nor nested_type")
	}
	return a, nil
}

// ImpliedType is the type of the value a block of this schema has when an
// expression refers to it: its attributes, and its nested blocks as lists,
// sets, maps or objects by nesting mode.
func (b *Block) ImpliedType() cty.Type {
	attrs := map[string]cty.Type{}
	for name, a := range b.Attributes {
		attrs[name] = a.Type
	}
	for name, nb := range b.BlockTypes {
		t := nb.Block.ImpliedType()
		switch nb.NestingMode {
		case NestingList:
			t = cty.List(t)
		case NestingSet:
			t = cty.Set(t)
		case NestingMap:
			t = cty.Map(t)
		}
		attrs[name] = t
	}
	return cty.Object(attrs)
}
