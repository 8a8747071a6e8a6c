package tfcheck

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testSchema is a small provider schema that exercises every kind of
// attribute and nesting mode.
const testSchema = `{
  "format_version": "1.0",
  "provider_schemas": {
    "registry.terraform.io/example/test": {
      "provider_version": "1.0.0",
      "resource_schemas": {
        "test_thing": {
          "version": 0,
          "block": {
            "attributes": {
              "id":      {"type": "string", "computed": true},
              "name":    {"type": "string", "required": true},
              "size":    {"type": "number", "optional": true},
              "enabled": {"type": "bool", "optional": true},
              "tags":    {"type": ["map", "string"], "optional": true},
              "ids":     {"type": ["list", "string"], "optional": true},
              "old":     {"type": "string", "optional": true, "deprecated": true},
              "email":   {"type": "string", "optional": true, "computed": true}
            },
            "block_types": {
              "settings": {
                "nesting_mode": "list", "min_items": 1, "max_items": 1,
                "block": {
                  "attributes": {
                    "mode":  {"type": "string", "required": true},
                    "level": {"type": "number", "optional": true}
                  },
                  "block_types": {
                    "inner": {"nesting_mode": "list", "block": {"attributes": {"v": {"type": "string", "optional": true}}}}
                  }
                }
              },
              "rule": {
                "nesting_mode": "set",
                "block": {"attributes": {"key": {"type": "string", "required": true}}}
              },
              "timeouts": {
                "nesting_mode": "single",
                "block": {"attributes": {"create": {"type": "string", "optional": true}}}
              }
            }
          }
        },
        "test_other": {
          "version": 0,
          "block": {
            "attributes": {
              "id":  {"type": "string", "computed": true},
              "ref": {"type": "string", "optional": true}
            }
          }
        }
      },
      "data_source_schemas": {
        "test_info": {
          "version": 0,
          "block": {
            "attributes": {
              "name":  {"type": "string", "optional": true},
              "value": {"type": "string", "computed": true}
            }
          }
        }
      }
    }
  }
}`

func readTestSchema(t *testing.T) *Schema {
	t.Helper()
	s, err := ReadSchema(strings.NewReader(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// valid is a module with no mistakes; each case below breaks it in one
// way, or adds a broken file to it.
const valid = `
terraform {
  required_providers {
    test = {
      source  = "example/test"
      version = "~> 1.0"
    }
  }
}

provider "test" {}

variable "name" {
  type        = string
  description = "A name."
  default     = "x"

  validation {
    condition     = length(var.name) > 0
    error_message = "name must not be empty."
  }
}

variable "sizes" {
  type    = map(number)
  default = { a = 1 }
}

locals {
  prefix = "p-${var.name}"
  names  = toset(["a", "b"])
  env    = { A = "1", B = local.prefix }
}

resource "test_thing" "one" {
  name    = local.prefix
  size    = var.sizes["a"]
  enabled = true
  tags    = { app = var.name }

  settings {
    mode = "fast"

    dynamic "inner" {
      for_each = local.env
      iterator = e
      content {
        v = "${e.key}=${e.value}"
      }
    }
  }

  dynamic "rule" {
    for_each = local.names
    content {
      key = rule.value
    }
  }

  timeouts {
    create = "5m"
  }

  lifecycle {
    ignore_changes = [tags, settings]
    precondition {
      condition     = var.name != ""
      error_message = "A name is needed."
    }
    postcondition {
      condition     = self.id != ""
      error_message = "No id."
    }
  }
}

resource "test_other" "each" {
  for_each = local.names

  ref = "${each.key}-${test_thing.one.id}-${data.test_info.i.value}"
}

resource "test_other" "counted" {
  count = 2

  ref = "${count.index}-${test_other.each["a"].id}"

  depends_on = [test_thing.one, data.test_info.i]
}

data "test_info" "i" {
  name = test_thing.one.settings[0].mode
}

output "ids" {
  description = "Ids."
  value       = [for o in test_other.counted : o.id]
}

output "email" {
  value = test_thing.one.email
}
`

func TestCheckModuleValid(t *testing.T) {
	for _, d := range CheckModule(map[string][]byte{"main.tf": []byte(valid)}, readTestSchema(t)) {
		t.Errorf("valid module: %s", d)
	}
}

// TestCheckModuleFindsMistakes breaks the valid module once per rule.
func TestCheckModuleFindsMistakes(t *testing.T) {
	schema := readTestSchema(t)
	tests := []struct {
		name string
		// replace maps text of valid to its replacement; extra is a
		// second file added to the module.
		replace map[string]string
		extra   string
		want    string
		warning bool
	}{
		{name: "syntax error", extra: `resource "test_other" "x" {`, want: "Unclosed configuration block"},
		{name: "unknown top-level block", extra: `resourse "test_other" "x" {}`, want: `unknown block type "resourse" (did you mean "resource"?)`},
		{name: "wrong label count", extra: `resource "test_other" {}`, want: "a resource block takes 2 label(s), not 1"},
		{name: "unknown resource type", extra: `resource "test_thingy" "x" {}`, want: `unknown resource type "test_thingy"`},
		{name: "unknown data source type", extra: `data "test_inf" "x" {}`, want: `unknown data source type "test_inf"`},
		{name: "duplicate resource", extra: `resource "test_other" "counted" {}`, want: "test_other.counted is declared twice"},
		{name: "duplicate variable", extra: "variable \"name\" {\n  type = string\n}", want: `variable "name" is declared twice`},
		{name: "unsupported argument", replace: map[string]string{"enabled = true": "enabeld = true"}, want: `unsupported argument "enabeld" (did you mean "enabled"?)`},
		{name: "unsupported nested argument", replace: map[string]string{`mode = "fast"`: "mode = \"fast\"\n    speed = 2"}, want: `test_thing.one.settings: unsupported argument "speed"`},
		{name: "computed attribute set", replace: map[string]string{"enabled = true": `id = "x"`}, want: `"id" is computed by the provider and cannot be set`},
		{name: "missing required argument", replace: map[string]string{"name    = local.prefix": ""}, want: `test_thing.one: missing required argument "name"`},
		{name: "missing required nested argument", replace: map[string]string{`mode = "fast"`: "level = 1"}, want: `test_thing.one.settings: missing required argument "mode"`},
		{name: "missing required block", replace: map[string]string{"settings {\n    mode = \"fast\"": "nosettings {\n    mode = \"fast\""}, want: `needs at least 1 "settings" block(s), has 0`},
		{name: "too many blocks", replace: map[string]string{"  timeouts {": "  settings {\n    mode = \"slow\"\n  }\n\n  timeouts {"}, want: `allows at most 1 "settings" block(s), has 2`},
		{name: "too many single blocks", replace: map[string]string{"  timeouts {": "  timeouts {}\n\n  timeouts {"}, want: `allows at most 1 "timeouts" block(s), has 2`},
		{name: "unsupported block", replace: map[string]string{"  timeouts {": "  timeout {"}, want: `unsupported block "timeout" (did you mean "timeouts"?)`},
		{name: "block written as argument", replace: map[string]string{"  timeouts {": "  timeouts = {"}, want: `"timeouts" is a block, not an argument`},
		{name: "argument written as block", replace: map[string]string{"tags    = { app = var.name }": "tags {\n    app = var.name\n  }"}, want: `"tags" is an argument, not a block`},
		{name: "block labels", replace: map[string]string{"  timeouts {": `  timeouts "x" {`}, want: `a "timeouts" block takes 0 label(s), not 1`},
		{name: "deprecated argument", replace: map[string]string{"enabled = true": `old = "x"`}, want: `argument "old" is deprecated`, warning: true},
		{name: "wrong type", replace: map[string]string{"enabled = true": `enabled = "maybe"`}, want: "test_thing.one.enabled: wrong type: want bool, got string"},
		{name: "wrong collection type", replace: map[string]string{"tags    = { app = var.name }": `tags = ["a"]`}, want: "test_thing.one.tags: wrong type: want map of string, got tuple"},
		{name: "wrong type through a variable", replace: map[string]string{"size    = var.sizes[\"a\"]": "size = var.sizes"}, want: "test_thing.one.size: wrong type: want number, got map of number"},
		{name: "wrong type through a resource attribute", replace: map[string]string{"size    = var.sizes[\"a\"]": "size = test_other.counted"}, want: "test_thing.one.size: wrong type: want number, got list of object"},
		{name: "unknown function", replace: map[string]string{"prefix = \"p-${var.name}\"": "prefix = uppercase(var.name)"}, want: `There is no function named "uppercase"`},
		{name: "wrong function arguments", replace: map[string]string{"prefix = \"p-${var.name}\"": "prefix = upper(var.name, 1)"}, want: `Function "upper" expects only 1 argument(s)`},
		{name: "undeclared variable", replace: map[string]string{"tags    = { app = var.name }": "tags = { app = var.nmae }"}, want: `reference to undeclared variable "nmae" (did you mean "name"?)`},
		{name: "undeclared local", replace: map[string]string{"name    = local.prefix": "name = local.prefx"}, want: `reference to undeclared local value "prefx" (did you mean "prefix"?)`},
		{name: "undeclared resource", replace: map[string]string{"${test_thing.one.id}": "${test_thing.two.id}"}, want: "reference to undeclared resource test_thing.two"},
		{name: "unknown resource attribute", replace: map[string]string{"${test_thing.one.id}": "${test_thing.one.ip}"}, want: `test_thing.one has no attribute "ip" (did you mean "id"?)`},
		{name: "nested attribute that does not exist", replace: map[string]string{"name = test_thing.one.settings[0].mode": "name = test_thing.one.settings[0].speed"}, want: `does not have an attribute named "speed"`},
		{name: "unknown reference root", replace: map[string]string{"${test_thing.one.id}": "${thing.one.id}"}, want: `unknown reference "thing"`},
		{name: "undeclared data source", replace: map[string]string{"${data.test_info.i.value}": "${data.test_info.j.value}"}, want: "reference to undeclared data source data.test_info.j"},
		{name: "unknown data source attribute", replace: map[string]string{"${data.test_info.i.value}": "${data.test_info.i.values}"}, want: `data.test_info.i has no attribute "values"`},
		{name: "undeclared module", extra: "output \"m\" {\n  value = module.net.id\n}", want: `reference to undeclared module "net"`},
		{name: "indexing a single resource", replace: map[string]string{"${test_thing.one.id}": "${test_thing.one[0].id}"}, want: "test_thing.one has neither count nor for_each, so it cannot be indexed"},
		{name: "counted resource not indexed", replace: map[string]string{"value       = [for o in test_other.counted : o.id]": "value = test_other.counted.id"}, want: "test_other.counted has count: refer to one instance"},
		{name: "each without for_each", replace: map[string]string{"ref = \"${count.index}": "ref = \"${each.key}"}, want: "each.* is only available in a block with for_each"},
		{name: "count without count", replace: map[string]string{"ref = \"${each.key}": "ref = \"${count.index}"}, want: "count.index is only available in a block with count"},
		{name: "each attribute", replace: map[string]string{"ref = \"${each.key}": "ref = \"${each.name}"}, want: "each has only .key and .value"},
		{name: "self outside conditions", replace: map[string]string{"name    = local.prefix": "name = self.id"}, want: "self is only available in provisioner, connection and postcondition blocks"},
		{name: "path attribute", replace: map[string]string{"name    = local.prefix": "name = path.home"}, want: "path has only .module, .root and .cwd"},
		{name: "count and for_each", replace: map[string]string{"  count = 2": "  count    = 2\n  for_each = local.names"}, want: "sets both count and for_each"},
		{name: "for_each over a list", replace: map[string]string{"for_each = local.names\n\n  ref": "for_each = [\"a\"]\n\n  ref"}, want: "for_each is a list: for_each takes a map or a set"},
		{name: "for_each over a string", replace: map[string]string{"for_each = local.names\n\n  ref": "for_each = \"a\"\n\n  ref"}, want: "for_each must be a map or a set of strings, not string"},
		{name: "count not a number", replace: map[string]string{"  count = 2": "  count = \"two\""}, want: "test_other.counted count: wrong type: want number"},
		{name: "depends_on an attribute", replace: map[string]string{"depends_on = [test_thing.one, data.test_info.i]": "depends_on = [test_thing.one.id]"}, want: "depends_on takes a whole resource, not one of its attributes"},
		{name: "depends_on a variable", replace: map[string]string{"depends_on = [test_thing.one, data.test_info.i]": "depends_on = [var.name]"}, want: "depends_on takes resources, data sources or modules, not var"},
		{name: "depends_on an expression", replace: map[string]string{"depends_on = [test_thing.one, data.test_info.i]": "depends_on = [\"test_thing.one\"]"}, want: "depends_on takes references to resources, data sources or modules, not expressions"},
		{name: "depends_on undeclared", replace: map[string]string{"depends_on = [test_thing.one, data.test_info.i]": "depends_on = [test_thing.two]"}, want: "reference to undeclared resource test_thing.two"},
		{name: "provider alias not configured", replace: map[string]string{"  count = 2": "  count    = 2\n  provider = test.west"}, want: "no provider block configures test.west"},
		{name: "provider not required", extra: `provider "other" {}`, want: `provider "other" is not in required_providers`},
		{name: "lifecycle argument", replace: map[string]string{"ignore_changes = [tags, settings]": "ignore_change = [tags]"}, want: `unsupported argument "ignore_change" in lifecycle`},
		{name: "ignore_changes unknown attribute", replace: map[string]string{"ignore_changes = [tags, settings]": "ignore_changes = [labels]"}, want: `ignore_changes names "labels", which the resource does not have`},
		{name: "prevent_destroy not constant", replace: map[string]string{"ignore_changes = [tags, settings]": "prevent_destroy = var.name"}, want: "prevent_destroy of test_thing.one lifecycle must be a constant"},
		{name: "precondition not bool", replace: map[string]string{"condition     = var.name != \"\"": "condition     = var.sizes"}, want: "precondition condition: wrong type: want bool"},
		{name: "precondition without message", replace: map[string]string{"      error_message = \"A name is needed.\"\n": ""}, want: "precondition: missing error_message"},
		{name: "self attribute in postcondition", replace: map[string]string{"self.id != \"\"": "self.ip != \"\""}, want: `does not have an attribute named "ip"`},
		{name: "dynamic block of unknown type", replace: map[string]string{`dynamic "rule" {`: `dynamic "rules" {`}, want: `dynamic block of unsupported block type "rules" (did you mean "rule"?)`},
		{name: "dynamic block for an argument", replace: map[string]string{`dynamic "rule" {`: `dynamic "tags" {`}, want: `dynamic "tags" generates blocks, but "tags" is an argument`},
		{name: "dynamic block without for_each", replace: map[string]string{"for_each = local.names\n    content": "content"}, want: `dynamic "rule" needs for_each`},
		{name: "dynamic block without content", replace: map[string]string{"content {\n      key = rule.value\n    }": ""}, want: `dynamic "rule" needs a content block`},
		{name: "dynamic content checked", replace: map[string]string{"key = rule.value": "key = rule.value\n      kee = 1"}, want: `test_thing.one.rule: unsupported argument "kee"`},
		{name: "dynamic content required argument", replace: map[string]string{"key = rule.value": ""}, want: `test_thing.one.rule: missing required argument "key"`},
		{name: "dynamic iterator attribute", replace: map[string]string{"key = rule.value": "key = rule.index"}, want: "dynamic block iterator rule has only .key and .value"},
		{name: "dynamic custom iterator out of scope", replace: map[string]string{`v = "${e.key}=${e.value}"`: `v = "${inner.key}"`}, want: `unknown reference "inner"`},
		{name: "dynamic content type", replace: map[string]string{`v = "${e.key}=${e.value}"`: "v = [e.value]"}, want: "test_thing.one.settings.inner.v: wrong type: want string, got tuple"},
		{name: "variable default type", replace: map[string]string{"default = { a = 1 }": `default = { a = "one" }`}, want: `default of variable "sizes" does not match its type map of number`},
		{name: "variable bad type", replace: map[string]string{"type    = map(number)": "type = mapping(number)"}, want: "mapping"},
		{name: "variable default not constant", replace: map[string]string{"default     = \"x\"": "default = local.prefix"}, want: "default of variable name must be a constant"},
		{name: "variable unsupported argument", replace: map[string]string{"description = \"A name.\"": "descripton = \"A name.\""}, want: `unsupported argument "descripton" in variable "name"`},
		{name: "validation refers to another variable", replace: map[string]string{"condition     = length(var.name) > 0": "condition     = length(var.sizes) > 0"}, want: `the validation of variable "name" refers to variable "sizes"`},
		{name: "local cycle", replace: map[string]string{"names  = toset([\"a\", \"b\"])": "names  = toset([local.names2])\n  names2 = local.names"}, want: "dependency cycle: local.names -> local.names2 -> local.names"},
		{name: "resource cycle", replace: map[string]string{"name = test_thing.one.settings[0].mode": "name = test_other.counted[0].id"}, want: "dependency cycle: data.test_info.i -> test_other.counted -> data.test_info.i"},
		{name: "self reference", replace: map[string]string{"name    = local.prefix": "name = test_thing.one.id"}, want: "dependency cycle: test_thing.one -> test_thing.one"},
		{name: "output without value", replace: map[string]string{"value = test_thing.one.email": `description = "e"`}, want: `output.email: missing required argument "value"`},
		{name: "output unsupported argument", replace: map[string]string{"value = test_thing.one.email": "value = test_thing.one.email\n  sensitiv = true"}, want: `output.email: unsupported argument "sensitiv" (did you mean "sensitive"?)`},
		{name: "unused variable", extra: "variable \"spare\" {\n  type = string\n}", want: `variable "spare" is declared but never used`, warning: true},
		{name: "unused local", extra: "locals {\n  spare = 1\n}", want: `local value "spare" is defined but never used`, warning: true},
		{name: "duplicate local", extra: "locals {\n  prefix = 1\n}", want: `local "prefix" is defined twice`},
		{name: "required_providers without source", replace: map[string]string{"source  = \"example/test\"\n": ""}, want: "required_providers.test: missing source"},
		{name: "terraform argument", replace: map[string]string{"terraform {": "terraform {\n  required_versions = \">= 1.5\""}, want: `terraform: unsupported argument "required_versions"`},
		{name: "top-level argument", extra: `name = "x"`, want: `unexpected argument "name" at the top level`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := valid
			for old, repl := range tt.replace {
				if !strings.Contains(src, old) {
					t.Fatalf("the valid module has no %q to replace", old)
				}
				src = strings.Replace(src, old, repl, 1)
			}
			files := map[string][]byte{"main.tf": []byte(src)}
			if tt.extra != "" {
				files["extra.tf"] = []byte(tt.extra + "\n")
			}
			diags := CheckModule(files, schema)
			for _, d := range diags {
				if strings.Contains(d.Message, tt.want) {
					if got := d.Severity == Warning; got != tt.warning {
						t.Errorf("%s: warning = %v, want %v", d, got, tt.warning)
					}
					if d.Range.Filename == "" || d.Range.Start.Line == 0 {
						t.Errorf("%s: no position", d)
					}
					return
				}
			}
			t.Errorf("no diagnostic contains %q; got:", tt.want)
			for _, d := range diags {
				t.Errorf("  %s", d)
			}
		})
	}
}

func TestCheckFormat(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // "" when the file is formatted
	}{
		{name: "formatted", src: "resource \"a\" \"b\" {\n  name = \"x\"\n  size = 1\n}\n"},
		{name: "equals not aligned", src: "resource \"a\" \"b\" {\n  name = \"x\"\n  sizes = 1\n}\n", want: `this line would read "  name  = \"x\""`},
		{name: "indentation", src: "resource \"a\" \"b\" {\n    name = \"x\"\n}\n", want: `this line would read "  name = \"x\""`},
		{name: "interpolation only", src: "resource \"a\" \"b\" {\n  name = \"${var.x}\"\n}\n", want: `this line would read "  name = var.x"`},
		{name: "interpolation on its own lines", src: "resource \"a\" \"b\" {\n  name = \"${\n    var.x\n  }\"\n}\n", want: `this line would read "  name = var.x"`},
		{name: "interpolation with text is kept", src: "resource \"a\" \"b\" {\n  name = \"${var.x}-y\"\n}\n"},
		{name: "legacy type", src: "variable \"x\" {\n  type = \"string\"\n}\n", want: `this line would read "  type = string"`},
		{name: "unquoted label", src: "resource a \"b\" {\n}\n", want: `this line would read "resource \"a\" \"b\" {"`},
		{name: "windows line endings", src: "resource \"a\" \"b\" {\r\n  name = \"x\"\r\n}\r\n", want: "would read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := CheckFormat("x.tf", []byte(tt.src))
			if tt.want == "" {
				for _, d := range diags {
					t.Errorf("formatted file reported: %s", d)
				}
				return
			}
			if len(diags) != 1 || !strings.Contains(diags[0].Message, tt.want) {
				t.Errorf("got %v, want one diagnostic containing %q", diags, tt.want)
			}
		})
	}
}

func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := CheckDir(dir, readTestSchema(t)); err == nil {
		t.Error("an empty directory was checked without error")
	}
	write("main.tf", "resource \"test_other\" \"x\" {\n  ref  = \"a\"\n}\n")
	write("bad.tf", "resource \"test_other\" \"y\" {\n  refs = \"a\"\n}\n")
	diags, err := CheckDir(dir, readTestSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range diags {
		got = append(got, filepath.Base(d.Range.Filename)+": "+d.Message)
	}
	want := []string{
		`bad.tf: test_other.y: unsupported argument "refs" (did you mean "ref"?)`,
		`main.tf: not formatted as terraform fmt would leave it: this line would read "  ref = \"a\""`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadSchema(t *testing.T) {
	dir := t.TempDir()
	gz := filepath.Join(dir, "schema.json.gz")
	f, err := os.Create(gz)
	if err != nil {
		t.Fatal(err)
	}
	w := gzip.NewWriter(f)
	if _, err := w.Write([]byte(testSchema)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSchema(gz)
	if err != nil {
		t.Fatal(err)
	}
	thing := s.Resources["test_thing"]
	if thing == nil || !thing.Attributes["name"].Required || thing.BlockTypes["settings"].MinItems != 1 || s.DataSources["test_info"] == nil {
		t.Errorf("schema read wrongly: %+v", s)
	}
	if got := s.Providers["registry.terraform.io/example/test"]; got != "1.0.0" {
		t.Errorf("provider version = %q", got)
	}

	nested := `{"provider_schemas": {"p": {"resource_schemas": {"r": {"block": {"attributes": {
		"rules": {"nested_type": {"nesting_mode": "list", "attributes": {"k": {"type": "string", "required": true}}}, "optional": true}}}}}}}}`
	ns, err := ReadSchema(strings.NewReader(nested))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ns.Resources["r"].Attributes["rules"].Type.FriendlyName(), "list of object"; got != want {
		t.Errorf("nested_type attribute has type %s, want %s", got, want)
	}
	badMode := strings.Replace(nested, `"list"`, `"bag"`, 1)
	if _, err := ReadSchema(strings.NewReader(badMode)); err == nil || !strings.Contains(err.Error(), "unknown nesting mode") {
		t.Errorf("a schema with nesting mode bag read with error %v", err)
	}

	plain := filepath.Join(dir, "other.json")
	if err := os.WriteFile(plain, []byte(`{"format_version": "1.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.json.gz"), plain} {
		if _, err := LoadSchema(path); err == nil {
			t.Errorf("LoadSchema(%s) succeeded", path)
		}
	}
}
