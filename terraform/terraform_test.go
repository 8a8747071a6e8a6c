package terraform

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/sandrun/sandrun/terraform/tfcheck"
)

// schemaEnv overrides where the provider schema is read from.
const schemaEnv = "SANDRUN_TF_SCHEMA"

// defaultSchema is the provider schema relative to this directory: CI
// clones the repository as X/main with the shared files in X/shared.
const defaultSchema = "../../shared/terraform/google-provider-6.50.0.schema.json.gz"

var loadSchema = sync.OnceValues(func() (*tfcheck.Schema, error) {
	path := os.Getenv(schemaEnv)
	if path == "" {
		path = defaultSchema
	}
	return tfcheck.LoadSchema(path)
})

func schema(t *testing.T) *tfcheck.Schema {
	t.Helper()
	s, err := loadSchema()
	if err != nil {
		abs, _ := filepath.Abs(defaultSchema)
		t.Fatalf("the Google provider schema is needed to check terraform/: %v\n"+
			"It is the output of `terraform providers schema -json` for google 6.50.0, gzipped, expected at %s "+
			"(the repository's sibling directory shared/terraform/); set %s to read it from elsewhere.", err, abs, schemaEnv)
	}
	return s
}

func tfFiles(t *testing.T) []string {
	t.Helper()
	names, err := filepath.Glob("*.tf")
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files in terraform/ (%v)", err)
	}
	sort.Strings(names)
	return names
}

// TestFormat checks that every file is as `terraform fmt` would leave it.
func TestFormat(t *testing.T) {
	for _, name := range tfFiles(t) {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos); diags.HasErrors() {
				t.Fatalf("does not parse: %v", diags)
			}
			for _, d := range tfcheck.CheckFormat(name, src) {
				t.Error(d)
			}
		})
	}
}

// TestSchema checks every resource, data source, argument, block and
// reference against the provider's schema, and fails on warnings too
// (deprecated arguments, unused variables).
func TestSchema(t *testing.T) {
	diags, err := tfcheck.CheckDir(".", schema(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diags {
		t.Error(d)
	}
}

// config is the parsed configuration, for the tests of its properties.
type config struct {
	t      *testing.T
	blocks []*hclsyntax.Block
}

func parse(t *testing.T) *config {
	t.Helper()
	c := &config{t: t}
	for _, name := range tfFiles(t) {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", name, diags)
		}
		c.blocks = append(c.blocks, f.Body.(*hclsyntax.Body).Blocks...)
	}
	return c
}

// all returns the top-level blocks of a type whose labels start with labels.
func (c *config) all(typ string, labels ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range c.blocks {
		if b.Type != typ || len(b.Labels) < len(labels) {
			continue
		}
		match := true
		for i, l := range labels {
			match = match && b.Labels[i] == l
		}
		if match {
			out = append(out, b)
		}
	}
	return out
}

func (c *config) one(typ string, labels ...string) *hclsyntax.Block {
	c.t.Helper()
	bs := c.all(typ, labels...)
	if len(bs) != 1 {
		c.t.Fatalf("want one %s %v, found %d", typ, labels, len(bs))
	}
	return bs[0]
}

// literal returns the constant value at a path of blocks and an argument,
// such as "template.template.max_retries".
func (c *config) literal(b *hclsyntax.Block, path string) cty.Value {
	c.t.Helper()
	parts := strings.Split(path, ".")
	body := b.Body
	for _, p := range parts[:len(parts)-1] {
		var next *hclsyntax.Body
		for _, nb := range body.Blocks {
			if nb.Type == p {
				next = nb.Body
				break
			}
		}
		if next == nil {
			c.t.Fatalf("%s %v: no block %s in %s", b.Type, b.Labels, p, path)
		}
		body = next
	}
	a, ok := body.Attributes[parts[len(parts)-1]]
	if !ok {
		c.t.Fatalf("%s %v: %s is not set", b.Type, b.Labels, path)
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		c.t.Fatalf("%s %v: %s is not a constant: %v", b.Type, b.Labels, path, diags)
	}
	return v
}

// TestProviderPin checks the provider constraint the issue asks for.
func TestProviderPin(t *testing.T) {
	c := parse(t)
	tf := c.one("terraform")
	rp := tf.Body.Blocks[0]
	if rp.Type != "required_providers" {
		t.Fatalf("terraform's first block is %s, want required_providers", rp.Type)
	}
	v, diags := rp.Body.Attributes["google"].Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := v.GetAttr("source").AsString(); got != "hashicorp/google" {
		t.Errorf("google source = %q, want hashicorp/google", got)
	}
	if got := v.GetAttr("version").AsString(); got != "~> 6.50" {
		t.Errorf("google version = %q, want ~> 6.50", got)
	}
}

// TestVariablesDocumented checks that every variable has a type and a
// description, and every output a description.
func TestVariablesDocumented(t *testing.T) {
	c := parse(t)
	for _, b := range c.all("variable") {
		for _, arg := range []string{"type", "description"} {
			if _, ok := b.Body.Attributes[arg]; !ok {
				t.Errorf("variable %q has no %s", b.Labels[0], arg)
			}
		}
	}
	for _, b := range c.all("output") {
		if _, ok := b.Body.Attributes["description"]; !ok {
			t.Errorf("output %q has no description", b.Labels[0])
		}
	}
}

// TestFilesByConcern checks the layout docs/deploy.md describes.
func TestFilesByConcern(t *testing.T) {
	want := map[string][]string{
		"apis.tf":       {"google_project_service"},
		"pubsub.tf":     {"google_pubsub_topic", "google_pubsub_subscription"},
		"storage.tf":    {"google_storage_bucket"},
		"firestore.tf":  {"google_firestore_database", "google_firestore_field", "google_firestore_index"},
		"run.tf":        {"google_cloud_run_v2_job", "google_cloud_run_v2_worker_pool", "google_cloud_scheduler_job"},
		"iam.tf":        {"google_service_account", "google_project_iam_custom_role"},
		"monitoring.tf": {"google_logging_metric", "google_monitoring_alert_policy"},
		"build.tf":      {"google_artifact_registry_repository"},
	}
	c := parse(t)
	for file, types := range want {
		for _, typ := range types {
			found := false
			for _, b := range c.all("resource", typ) {
				found = found || filepath.Base(b.TypeRange.Filename) == file
			}
			if !found {
				t.Errorf("%s declares no %s", file, typ)
			}
		}
	}
	for _, file := range []string{"variables.tf", "outputs.tf", "versions.tf"} {
		if _, err := os.Stat(file); err != nil {
			t.Errorf("missing %s", file)
		}
	}
}
