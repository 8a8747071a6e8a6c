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

// TestSchemaCatchesMistakes breaks a copy of this configuration in ways
// that `terraform validate` would refuse, and checks that the checker,
// reading the real provider schema, refuses them too.
func TestSchemaCatchesMistakes(t *testing.T) {
	s := schema(t)
	tests := []struct {
		name, file, old, new, want string
	}{
		{"misspelled argument", "run.tf", "max_retries = 0", "max_retry = 0", `unsupported argument "max_retry" (did you mean "max_retries"?)`},
		{"block as argument", "pubsub.tf", "  retry_policy {", "  retry_policy = {", `"retry_policy" is a block, not an argument`},
		{"missing required argument", "storage.tf", "  location      = var.region\n", "", `missing required argument "location"`},
		{"computed attribute", "iam.tf", `  display_name = "sandrun backend"`, `  email = "x@example.com"`, `"email" is computed by the provider and cannot be set`},
		{"unknown resource type", "build.tf", `resource "google_artifact_registry_repository" "images"`, `resource "google_artifact_repository" "images"`, `unknown resource type "google_artifact_repository"`},
		{"unknown attribute reference", "outputs.tf", "google_storage_bucket.sessions.name", "google_storage_bucket.sessions.bucket", `google_storage_bucket.sessions has no attribute "bucket"`},
		{"wrong type", "firestore.tf", `query_scope = "COLLECTION_GROUP"`, `query_scope = ["COLLECTION_GROUP"]`, "query_scope: wrong type: want string"},
		{"too many blocks", "run.tf", "    task_count  = 1\n    parallelism = 1\n", "    task_count  = 1\n    parallelism = 1\n\n    template {\n      max_retries = 0\n    }\n", `allows at most 1 "template" block(s), has 2`},
		{"undeclared variable", "locals.tf", "var.log_level", "var.loglevel", `reference to undeclared variable "loglevel" (did you mean "log_level"?)`},
		{"dynamic block of an argument", "run.tf", `dynamic "env" {`, `dynamic "envs" {`, `dynamic block of unsupported block type "envs" (did you mean "env"?)`},
		{"for_each over a list", "apis.tf", "for_each = local.services", "for_each = tolist(local.services)", "for_each is a list"},
		{"cycle", "locals.tf", "SANDRUN_JOB               = local.names.executor_job", "SANDRUN_JOB               = google_cloud_run_v2_job.executor.name", "dependency cycle"},
		{"not formatted", "versions.tf", "      source  = ", "      source = ", "not formatted as terraform fmt would leave it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, name := range tfFiles(t) {
				src, err := os.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				if name == tt.file {
					if !strings.Contains(string(src), tt.old) {
						t.Fatalf("%s has no %q", name, tt.old)
					}
					src = []byte(strings.Replace(string(src), tt.old, tt.new, 1))
				}
				if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			diags, err := tfcheck.CheckDir(dir, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diags {
				if strings.Contains(d.Message, tt.want) {
					return
				}
			}
			t.Errorf("no diagnostic contains %q; got %v", tt.want, diags)
		})
	}
}

// config is the parsed configuration, for the tests of its properties.
type config struct {
	t       *testing.T
	blocks  []*hclsyntax.Block
	sources map[string][]byte
}

func parse(t *testing.T) *config {
	t.Helper()
	c := &config{t: t, sources: map[string][]byte{}}
	for _, name := range tfFiles(t) {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		c.sources[name] = src
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

// attr returns the argument at a path of nested blocks and an argument,
// such as "template.template.max_retries", taking the first block of each
// type on the way.
func (c *config) attr(b *hclsyntax.Block, path string) *hclsyntax.Attribute {
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
	return a
}

// text returns the source of the expression at path.
func (c *config) text(b *hclsyntax.Block, path string) string {
	c.t.Helper()
	r := c.attr(b, path).Expr.Range()
	return string(r.SliceBytes(c.sources[r.Filename]))
}

// literal returns the constant value at path.
func (c *config) literal(b *hclsyntax.Block, path string) cty.Value {
	c.t.Helper()
	a := c.attr(b, path)
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

// TestDeploymentInvariants pins what issue 6 asks of the deployment, so
// that a later edit cannot quietly drop it.
func TestDeploymentInvariants(t *testing.T) {
	c := parse(t)
	str := func(v cty.Value) string { return v.AsString() }

	sub := c.one("resource", "google_pubsub_subscription", "dispatcher")
	if !c.literal(sub, "enable_message_ordering").True() {
		t.Error("the dispatcher's subscription does not deliver in order")
	}
	if got := c.text(sub, "dead_letter_policy.dead_letter_topic"); got != "google_pubsub_topic.dead_letters.id" {
		t.Errorf("dead-letter topic = %s", got)
	}
	c.attr(sub, "retry_policy.minimum_backoff")
	c.attr(sub, "ack_deadline_seconds")
	if got := str(c.literal(sub, "expiration_policy.ttl")); got != "" {
		t.Errorf("the dispatcher's subscription expires after %q", got)
	}

	bucket := c.one("resource", "google_storage_bucket", "sessions")
	if !c.literal(bucket, "uniform_bucket_level_access").True() {
		t.Error("the bucket has no uniform bucket-level access")
	}
	if got := str(c.literal(bucket, "public_access_prevention")); got != "enforced" {
		t.Errorf("public access prevention = %q", got)
	}
	if got := c.text(bucket, "lifecycle_rule.condition.age"); got != "var.state_retention_days" {
		t.Errorf("lifecycle age = %s", got)
	}
	if got := str(c.literal(bucket, "lifecycle_rule.action.type")); got != "Delete" {
		t.Errorf("lifecycle action = %q", got)
	}
	retention := c.one("variable", "state_retention_days")
	if got, _ := c.literal(retention, "default").AsBigFloat().Int64(); got != 7 {
		t.Errorf("state is kept %d days by default, want 7", got)
	}

	job := c.one("resource", "google_cloud_run_v2_job", "executor")
	if got, _ := c.literal(job, "template.template.max_retries").AsBigFloat().Int64(); got != 0 {
		t.Errorf("the executor job retries %d times; the reaper relaunches instead", got)
	}
	c.attr(job, "template.template.timeout")
	if got := c.text(job, "template.template.service_account"); got != "google_service_account.executor.email" {
		t.Errorf("the executor runs as %s", got)
	}
	limits := c.text(job, "template.template.containers.resources.limits")
	for _, want := range []string{"cpu", "memory"} {
		if !strings.Contains(limits, want) {
			t.Errorf("the sandbox has no %s limit", want)
		}
	}
	c.one("resource", "google_cloud_run_v2_worker_pool", "dispatcher")
	if got := c.text(c.one("resource", "google_cloud_run_v2_job", "reaper"), "template.template.containers.args"); got != `["--once"]` {
		t.Errorf("the reaper job runs with args %s, want [\"--once\"]", got)
	}
	c.one("resource", "google_cloud_scheduler_job", "reaper")

	for _, sa := range []string{"dispatcher", "executor", "reaper", "backend"} {
		c.one("resource", "google_service_account", sa)
	}

	// Project-wide grants are the exceptions iam.tf explains; every other
	// grant is on a resource.
	allowed := map[string]bool{
		"dispatcher_firestore": true, "executor_firestore": true, "reaper_firestore": true,
		"backend_temporary_subscriptions": true, "build_logs": true,
	}
	for _, b := range c.all("resource", "google_project_iam_member") {
		name := b.Labels[1]
		if !allowed[name] {
			t.Errorf("google_project_iam_member.%s: a new project-wide grant; grant it on the resource", name)
		}
		if strings.HasSuffix(name, "_firestore") {
			if got := c.text(b, "condition.expression"); got != "local.firestore_condition" {
				t.Errorf("google_project_iam_member.%s is not narrowed to sandrun's database (%s)", name, got)
			}
		}
	}
	for _, typ := range []string{"google_project_iam_member", "google_storage_bucket_iam_member", "google_pubsub_topic_iam_member",
		"google_pubsub_subscription_iam_member", "google_cloud_run_v2_job_iam_member"} {
		for _, b := range c.all("resource", typ) {
			role := c.text(b, "role")
			for _, broad := range []string{"roles/owner", "roles/editor", "roles/datastore.user", "roles/storage.admin", "roles/storage.objectAdmin",
				"roles/pubsub.admin", "roles/pubsub.editor", "roles/run.admin", "roles/run.developer", "roles/iam."} {
				if strings.Contains(role, broad) {
					t.Errorf("%s.%s grants %s", typ, b.Labels[1], role)
				}
			}
		}
	}
	for _, name := range []string{"executor_objects", "dispatcher_objects", "reaper_objects", "backend_results"} {
		c.attr(c.one("resource", "google_storage_bucket_iam_member", name), "condition.expression")
	}

	var fields string
	for _, b := range c.all("locals") {
		if _, ok := b.Body.Attributes["firestore_fields"]; ok {
			fields = c.text(b, "firestore_fields")
		}
	}
	for _, want := range []string{
		`sessions_expire_at = { collection = "sessions", field = "expire_at", ttl = true }`,
		`inbox_expire_at    = { collection = "inbox", field = "expire_at", ttl = true }`,
	} {
		if !strings.Contains(fields, want) {
			t.Errorf("no TTL policy %s", want)
		}
	}
	for _, idx := range []string{"sessions_status_updated_at", "inbox_status_seq", "inbox_unpublished"} {
		c.one("resource", "google_firestore_index", idx)
	}

	for _, alert := range []string{"success_rate", "dispatch_latency", "error_rate", "reaper_failures", "hosts"} {
		c.one("resource", "google_monitoring_alert_policy", alert)
	}
	for _, out := range []string{"requests_topic", "completions_topic", "completions_subscription", "bucket", "backend_service_account"} {
		c.one("output", out)
	}
}
