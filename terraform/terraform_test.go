package terraform

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/system"
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
		{"alert filter without a resource type", "monitoring.tf", `${google_logging_metric.end_to_end.name}\" AND resource.type=\"cloud_run_job\""`, `${google_logging_metric.end_to_end.name}\""`,
			"google_monitoring_alert_policy.end_to_end_latency: condition_threshold.filter has no restriction on resource.type"},
		{"denominator without a resource type", "monitoring.tf", `${google_logging_metric.dispatch_outcomes.name}\" AND resource.type=\"cloud_run_worker_pool\""`, `${google_logging_metric.dispatch_outcomes.name}\""`,
			"google_monitoring_alert_policy.error_rate: condition_threshold.denominator_filter has no restriction on resource.type"},
		{"alert on the wrong resource type", "monitoring.tf", `${google_logging_metric.reaper_passes.name}\" AND resource.type=\"cloud_run_worker_pool\"`, `${google_logging_metric.reaper_passes.name}\" AND resource.type=\"cloud_run_revision\"`,
			`restricts resource.type to "cloud_run_revision", but logging.googleapis.com/user/{google_logging_metric.reaper_passes} is written against "cloud_run_worker_pool"`},
		{"unknown built-in metric", "monitoring.tf", "run.googleapis.com/job/running_executions", "run.googleapis.com/job/running_execution_count",
			`names the metric "run.googleapis.com/job/running_execution_count", which is neither`},
		{"log-based metric on free text", "monitoring.tf", `AND jsonPayload.event=\"reaper.pass\""`, `AND textPayload:\"sandrun reaper:\""`,
			"google_logging_metric.reaper_passes: filter matches textPayload"},
		{"log-based metric of any resource", "monitoring.tf", `filter      = "${local.executor_logs} AND jsonPayload.event=\"request.done\""`, `filter      = "jsonPayload.event=\"request.done\""`,
			"google_logging_metric.requests_done: filter must restrict resource.type exactly once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := brokenCopy(t, tt.file, tt.old, tt.new)
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

// brokenCopy copies this configuration to a temporary directory, with the
// first from in file replaced by to, and returns the directory.
func brokenCopy(t *testing.T, file, from, to string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range tfFiles(t) {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if name == file {
			if !strings.Contains(string(src), from) {
				t.Fatalf("%s has no %q", name, from)
			}
			src = []byte(strings.Replace(string(src), from, to, 1))
		}
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// config is the parsed configuration, for the tests of its properties.
type config struct {
	t       *testing.T
	blocks  []*hclsyntax.Block
	sources map[string][]byte
}

func parse(t *testing.T) *config {
	t.Helper()
	return parseDir(t, ".")
}

// parseDir parses the configuration in dir.
func parseDir(t *testing.T, dir string) *config {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files in %s (%v)", dir, err)
	}
	sort.Strings(names)
	c := &config{t: t, sources: map[string][]byte{}}
	for _, name := range names {
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
		"run.tf":        {"google_cloud_run_v2_job", "google_cloud_run_v2_worker_pool"},
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
	if got, _ := c.literal(sub, "dead_letter_policy.max_delivery_attempts").AsBigFloat().Int64(); got != outbox.MaxDeliveryAttempts {
		t.Errorf("max_delivery_attempts = %d, the local cloud provisions %d", got, outbox.MaxDeliveryAttempts)
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
	if got := c.text(job, "template.template.service_account"); got != "google_service_account.sandbox.email" {
		t.Errorf("the executor runs as %s", got)
	}
	limits := c.text(job, "template.template.containers.resources.limits")
	for _, want := range []string{"cpu", "memory"} {
		if !strings.Contains(limits, want) {
			t.Errorf("the sandbox has no %s limit", want)
		}
	}
	c.one("resource", "google_cloud_run_v2_worker_pool", "dispatcher")
	// The reaper's loop runs in the dispatcher's process: no job, no
	// scheduler, and the dispatcher bounds the running hosts.
	if n := len(c.all("resource", "google_cloud_scheduler_job")) + len(c.all("resource", "google_cloud_run_v2_job")); n != 1 {
		t.Errorf("%d Cloud Run jobs and scheduler jobs, want the executor job alone: the dispatcher runs the reaper's loop", n)
	}
	var dispatcherEnv string
	for _, b := range c.all("locals") {
		if _, ok := b.Body.Attributes["dispatcher_env"]; ok {
			dispatcherEnv = c.text(b, "dispatcher_env")
		}
	}
	for _, want := range []string{`SANDRUN_REAPER = "true"`, "SANDRUN_MAX_HOSTS = tostring(var.max_hosts)"} {
		if !strings.Contains(dispatcherEnv, want) {
			t.Errorf("the dispatcher is not given %s", want)
		}
	}

	for _, sa := range []string{"dispatcher", "executor", "sandbox", "backend"} {
		c.one("resource", "google_service_account", sa)
	}

	// Project-wide grants are the exceptions iam.tf explains; every other
	// grant is on a resource.
	allowed := map[string]bool{
		"dispatcher_firestore": true, "executor_firestore": true,
		"backend_temporary_subscriptions": true, "build_logs": true, "telemetry": true,
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
	for _, name := range []string{"executor_objects", "dispatcher_objects", "backend_results"} {
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

	for _, alert := range []string{"success_rate", "end_to_end_latency", "error_rate", "reaper_failures", "hosts"} {
		c.one("resource", "google_monitoring_alert_policy", alert)
	}
	for _, out := range []string{"requests_topic", "completions_topic", "completions_subscription", "bucket", "backend_service_account"} {
		c.one("output", out)
	}
}

// --- the host identity ---------------------------------------------------------
//
// The executor job runs as sandrun-sandbox, whose token any command in the
// sandbox can get from the metadata server, so it must hold nothing. The
// session host's rights are sandrun-executor's, which no workload runs as:
// the dispatcher mints its access tokens (a custom role with
// iam.serviceAccounts.getAccessToken, granted on that account alone) and
// hand them to the executions they launch. Each check reports through
// errorf, so that TestHostIdentityChecksCatchMistakes can run it on broken
// copies of the configuration.

// errorf reports a problem, as testing.T.Errorf does.
type errorf func(format string, args ...any)

// walkAttrs calls fn for every argument of body and of its nested blocks,
// dynamic blocks' for_each and content included.
func walkAttrs(body *hclsyntax.Body, fn func(*hclsyntax.Attribute)) {
	names := make([]string, 0, len(body.Attributes))
	for name := range body.Attributes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn(body.Attributes[name])
	}
	for _, b := range body.Blocks {
		walkAttrs(b.Body, fn)
	}
}

// refersTo reports whether expr refers to the object path names, such as
// google_service_account.sandbox or local.host_env, or to anything in it.
func refersTo(expr hclsyntax.Expression, path ...string) bool {
	for _, tr := range expr.Variables() {
		if len(tr) < len(path) || tr.RootName() != path[0] {
			continue
		}
		match := true
		for i, name := range path[1:] {
			a, ok := tr[i+1].(hcl.TraverseAttr)
			match = match && ok && a.Name == name
		}
		if match {
			return true
		}
	}
	return false
}

// local returns the argument that defines local.name, or nil.
func (c *config) local(name string) *hclsyntax.Attribute {
	for _, b := range c.all("locals") {
		if a, ok := b.Body.Attributes[name]; ok {
			return a
		}
	}
	return nil
}

// resourceName is TYPE.NAME of a resource block.
func resourceName(b *hclsyntax.Block) string { return b.Labels[0] + "." + b.Labels[1] }

// sandboxEmail is how a hard-coded address of the sandbox account would be
// written: ACCOUNT_ID@PROJECT.iam.gserviceaccount.com.
const sandboxEmail = "-sandbox@"

// checkExecutorIdentity: the executor job runs as google_service_account.sandbox,
// and no workload runs as the host identity, google_service_account.executor.
func checkExecutorIdentity(c *config, errorf errorf) {
	job := c.one("resource", "google_cloud_run_v2_job", "executor")
	if got := c.text(job, "template.template.service_account"); got != "google_service_account.sandbox.email" {
		errorf("the executor job runs as %s, want google_service_account.sandbox.email", got)
	}
	sandbox := c.all("resource", "google_service_account", "sandbox")
	if len(sandbox) != 1 {
		errorf("want one google_service_account.sandbox, found %d", len(sandbox))
	} else if got := c.text(sandbox[0], "account_id"); got != `"${var.name_prefix}-sandbox"` {
		errorf("google_service_account.sandbox has account_id %s, want \"${var.name_prefix}-sandbox\"", got)
	}
	workloads := 0
	for _, b := range c.all("resource") {
		walkAttrs(b.Body, func(a *hclsyntax.Attribute) {
			if a.Name != "service_account" && a.Name != "service_account_email" {
				return
			}
			workloads++
			if refersTo(a.Expr, "google_service_account", "executor") {
				errorf("%s runs as the host identity google_service_account.executor (%s); only minted tokens may carry it", resourceName(b), a.Name)
			}
		})
	}
	if workloads < 2 { // the executor and the dispatcher (which runs the reaper's loop)
		errorf("found %d runtime service accounts, want at least 2", workloads)
	}
}

// checkSandboxHoldsNothing: no IAM resource or policy document, whatever its
// type (and no ACL), names google_service_account.sandbox, directly, through
// a local, or by its address written out.
func checkSandboxHoldsNothing(c *config, errorf errorf) {
	// Locals that carry the sandbox account, to a fixed point.
	tainted := map[string]bool{}
	for changed := true; changed; {
		changed = false
		for _, b := range c.all("locals") {
			for name, a := range b.Body.Attributes {
				if tainted[name] {
					continue
				}
				carries := refersTo(a.Expr, "google_service_account", "sandbox")
				for l := range tainted {
					carries = carries || refersTo(a.Expr, "local", l)
				}
				if carries {
					tainted[name], changed = true, true
				}
			}
		}
	}

	checked := 0
	for _, b := range c.blocks {
		if b.Type != "resource" && b.Type != "data" {
			continue
		}
		if typ := b.Labels[0]; !strings.Contains(typ, "iam") && !strings.Contains(typ, "_acl") && !strings.Contains(typ, "access_control") {
			continue
		}
		checked++
		name := b.Type + " " + resourceName(b)
		walkAttrs(b.Body, func(a *hclsyntax.Attribute) {
			if refersTo(a.Expr, "google_service_account", "sandbox") {
				errorf("%s: %s refers to google_service_account.sandbox, which must hold nothing", name, a.Name)
			}
			for l := range tainted {
				if refersTo(a.Expr, "local", l) {
					errorf("%s: %s refers to local.%s, which carries google_service_account.sandbox", name, a.Name, l)
				}
			}
			hclsyntax.VisitAll(a.Expr, func(n hclsyntax.Node) hcl.Diagnostics {
				lit, ok := n.(*hclsyntax.LiteralValueExpr)
				if ok && lit.Val.Type() == cty.String && strings.Contains(lit.Val.AsString(), sandboxEmail) {
					errorf("%s: %s names the sandbox account by address (%q)", name, a.Name, lit.Val.AsString())
				}
				return nil
			})
		})
	}
	if checked < 20 {
		errorf("checked %d IAM resources; the configuration has more", checked)
	}
}

// checkHostTokenMinterRole: the custom role holds getAccessToken and nothing
// else, and the API that serves it is enabled.
func checkHostTokenMinterRole(c *config, errorf errorf) {
	roles := c.all("resource", "google_project_iam_custom_role", "host_token_minter")
	if len(roles) != 1 {
		errorf("want one google_project_iam_custom_role.host_token_minter, found %d", len(roles))
		return
	}
	role := roles[0]
	if got := c.text(role, "role_id"); got != `"${local.role_prefix}HostTokenMinter"` {
		errorf("host_token_minter has role_id %s", got)
	}
	for _, meta := range []string{"count", "for_each"} {
		if _, ok := role.Body.Attributes[meta]; ok {
			errorf("host_token_minter has %s: the dispatcher always needs it", meta)
		}
	}
	var perms []string
	for _, p := range c.literal(role, "permissions").AsValueSlice() {
		perms = append(perms, p.AsString())
	}
	if len(perms) != 1 || perms[0] != "iam.serviceAccounts.getAccessToken" {
		errorf("host_token_minter has permissions %q, want exactly [iam.serviceAccounts.getAccessToken]", perms)
	}

	services := c.local("services")
	if services == nil {
		errorf("no local.services")
		return
	}
	list := services.Expr
	if call, ok := list.(*hclsyntax.FunctionCallExpr); ok && call.Name == "toset" && len(call.Args) == 1 {
		list = call.Args[0]
	}
	v, diags := list.Value(nil)
	if diags.HasErrors() {
		errorf("local.services is not a constant: %v", diags)
		return
	}
	if got := c.text(c.one("resource", "google_project_service", "apis"), "for_each"); got != "local.services" {
		errorf("google_project_service.apis enables %s, not local.services", got)
	}
	enabled := false
	for _, s := range v.AsValueSlice() {
		enabled = enabled || s.AsString() == "iamcredentials.googleapis.com"
	}
	if !enabled {
		errorf("iamcredentials.googleapis.com, which serves generateAccessToken, is not enabled")
	}
}

// checkHostTokenMinterGrants: the minter role is granted to exactly the
// dispatcher (which runs the reaper's loop), once, with google_service_account_iam_member
// on google_service_account.executor; nothing else is granted on that
// account; and the programs are deployed after their grant.
func checkHostTokenMinterGrants(c *config, errorf errorf) {
	want := map[string]string{ // member -> the program's Cloud Run resource
		"google_service_account.dispatcher.member": "google_cloud_run_v2_worker_pool.dispatcher",
	}
	granted := map[string][]string{} // member -> grants
	for _, b := range c.all("resource") {
		role, ok := b.Body.Attributes["role"]
		onHost := false
		if sa, ok := b.Body.Attributes["service_account_id"]; ok {
			onHost = refersTo(sa.Expr, "google_service_account", "executor")
		}
		minter := ok && refersTo(role.Expr, "google_project_iam_custom_role", "host_token_minter")
		if !minter && !onHost {
			continue
		}
		name := resourceName(b)
		if !minter {
			errorf("%s grants %s on the host identity; only the dispatcher's minter grant belongs there", name, c.text(b, "role"))
			continue
		}
		if b.Labels[0] != "google_service_account_iam_member" {
			errorf("%s grants the minter role with %s, want google_service_account_iam_member", name, b.Labels[0])
			continue
		}
		if got := c.text(b, "service_account_id"); got != "google_service_account.executor.name" {
			errorf("%s grants the minter role on %s, want google_service_account.executor.name", name, got)
		}
		for _, meta := range []string{"count", "for_each"} {
			if _, ok := b.Body.Attributes[meta]; ok {
				errorf("%s has %s", name, meta)
			}
		}
		member := c.text(b, "member")
		if _, ok := want[member]; !ok {
			errorf("%s grants the minter role to %s; only the dispatcher launches hosts", name, member)
		}
		granted[member] = append(granted[member], name)
	}
	for member, program := range want {
		grants := granted[member]
		if len(grants) != 1 {
			errorf("%s holds the minter role through %d grants %v, want 1", member, len(grants), grants)
			continue
		}
		parts := strings.SplitN(program, ".", 2)
		deps := ""
		if bs := c.all("resource", parts[0], parts[1]); len(bs) == 1 {
			if _, ok := bs[0].Body.Attributes["depends_on"]; ok {
				deps = c.text(bs[0], "depends_on")
			}
		}
		if !strings.Contains(deps, grants[0]) {
			errorf("%s does not depend on %s: it could start before it may mint the host's tokens", program, grants[0])
		}
	}
}

// envEntries returns the keys of the environment map local.name and the
// source of each value, following merge() (later maps win), locals, and
// both branches of a conditional.
func envEntries(c *config, name string, errorf errorf) map[string]string {
	a := c.local(name)
	if a == nil {
		errorf("no local.%s", name)
		return nil
	}
	out := map[string]string{}
	var add func(e hclsyntax.Expression)
	add = func(e hclsyntax.Expression) {
		switch e := e.(type) {
		case *hclsyntax.FunctionCallExpr:
			if e.Name != "merge" {
				errorf("local.%s: cannot follow %s()", name, e.Name)
				return
			}
			for _, arg := range e.Args {
				add(arg)
			}
		case *hclsyntax.ConditionalExpr:
			add(e.FalseResult)
			add(e.TrueResult)
		case *hclsyntax.ScopeTraversalExpr:
			if e.Traversal.RootName() != "local" || len(e.Traversal) != 2 {
				errorf("local.%s: cannot follow %s", name, c.exprText(e))
				return
			}
			for k, v := range envEntries(c, e.Traversal[1].(hcl.TraverseAttr).Name, errorf) {
				out[k] = v
			}
		case *hclsyntax.ObjectConsExpr:
			for _, item := range e.Items {
				k, diags := item.KeyExpr.Value(nil)
				if diags.HasErrors() || k.Type() != cty.String {
					errorf("local.%s: a key is not a constant: %s", name, c.exprText(item.KeyExpr))
					continue
				}
				out[k.AsString()] = c.exprText(item.ValueExpr)
			}
		default:
			errorf("local.%s: cannot follow %s", name, c.exprText(e))
		}
	}
	add(a.Expr)
	return out
}

// exprText returns the source of an expression.
func (c *config) exprText(e hclsyntax.Expression) string {
	r := e.Range()
	return string(r.SliceBytes(c.sources[r.Filename]))
}

// checkHostServiceAccountEnv: the dispatcher is told the
// host identity's address in SANDRUN_HOST_SERVICE_ACCOUNT; the executor is
// not.
func checkHostServiceAccountEnv(c *config, errorf errorf) {
	const key = "SANDRUN_HOST_SERVICE_ACCOUNT"
	programs := []struct {
		local, resource, env string
		host                 bool
	}{
		{"dispatcher_env", "google_cloud_run_v2_worker_pool.dispatcher", "template.containers.dynamic.for_each", true},
		{"executor_env", "google_cloud_run_v2_job.executor", "template.template.containers.dynamic.for_each", false},
	}
	for _, p := range programs {
		parts := strings.SplitN(p.resource, ".", 2)
		if got := c.text(c.one("resource", parts[0], parts[1]), p.env); got != "local."+p.local {
			errorf("%s takes its environment from %s, want local.%s", p.resource, got, p.local)
		}
		got, ok := envEntries(c, p.local, errorf)[key]
		switch {
		case p.host && !ok:
			errorf("local.%s has no %s", p.local, key)
		case p.host && got != "google_service_account.executor.email":
			errorf("local.%s sets %s = %s, want google_service_account.executor.email", p.local, key, got)
		case !p.host && ok:
			errorf("local.%s sets %s = %s: the executor is given tokens, never the account to mint them for", p.local, key, got)
		}
	}
}

// TestExecutorRunsAsSandbox checks that the executor job runs as the
// sandbox account and nothing runs as the host identity.
func TestExecutorRunsAsSandbox(t *testing.T) {
	checkExecutorIdentity(parse(t), t.Errorf)
}

// TestSandboxHoldsNothing checks that no IAM resource names the sandbox
// account.
func TestSandboxHoldsNothing(t *testing.T) {
	checkSandboxHoldsNothing(parse(t), t.Errorf)
}

// TestHostTokenMinterRole checks the minter role's one permission.
func TestHostTokenMinterRole(t *testing.T) {
	checkHostTokenMinterRole(parse(t), t.Errorf)
}

// TestHostTokenMinterGrants checks who may mint the host's tokens.
func TestHostTokenMinterGrants(t *testing.T) {
	checkHostTokenMinterGrants(parse(t), t.Errorf)
}

// TestHostServiceAccountEnv checks SANDRUN_HOST_SERVICE_ACCOUNT in the
// programs' environments.
func TestHostServiceAccountEnv(t *testing.T) {
	checkHostServiceAccountEnv(parse(t), t.Errorf)
}

// TestHostIdentityChecksCatchMistakes breaks a copy of the configuration in
// ways that would give the sandbox rights or the host identity to the wrong
// party, and checks that the checks above report each.
func TestHostIdentityChecksCatchMistakes(t *testing.T) {
	tests := []struct {
		name      string
		check     func(*config, errorf)
		file, old string
		new, want string
	}{
		{"job runs as the host identity", checkExecutorIdentity, "run.tf",
			"service_account = google_service_account.sandbox.email", "service_account = google_service_account.executor.email",
			"the executor job runs as google_service_account.executor.email"},
		{"another workload runs as the host identity", checkExecutorIdentity, "run.tf",
			"service_account = google_service_account.dispatcher.email", "service_account = google_service_account.executor.email",
			"google_cloud_run_v2_worker_pool.dispatcher runs as the host identity"},
		{"sandbox granted a role", checkSandboxHoldsNothing, "iam.tf",
			"  role   = google_project_iam_custom_role.completion_publisher.name\n  member = google_service_account.executor.member", "  role   = google_project_iam_custom_role.completion_publisher.name\n  member = google_service_account.sandbox.member",
			"google_pubsub_topic_iam_member.executor_completions: member refers to google_service_account.sandbox"},
		{"binding on the sandbox account", checkSandboxHoldsNothing, "iam.tf",
			"service_account_id = google_service_account.backend.name", "service_account_id = google_service_account.sandbox.name",
			"google_service_account_iam_member.backend_impersonators: service_account_id refers to google_service_account.sandbox"},
		{"sandbox granted through a local", checkSandboxHoldsNothing, "iam.tf",
			`pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"`, "pubsub_agent = google_service_account.sandbox.member",
			"refers to local.pubsub_agent, which carries google_service_account.sandbox"},
		{"sandbox granted by address", checkSandboxHoldsNothing, "iam.tf",
			"  member = google_service_account.executor.member\n}", "  member = \"serviceAccount:${var.name_prefix}-sandbox@${var.project}.iam.gserviceaccount.com\"\n}",
			"names the sandbox account by address"},
		{"minter with a second permission", checkHostTokenMinterRole, "iam.tf",
			"\"iam.serviceAccounts.getAccessToken\",\n", "\"iam.serviceAccounts.getAccessToken\",\n    \"iam.serviceAccounts.signBlob\",\n",
			"want exactly [iam.serviceAccounts.getAccessToken]"},
		{"IAM Credentials off", checkHostTokenMinterRole, "apis.tf",
			"    \"iamcredentials.googleapis.com\",\n", "",
			"iamcredentials.googleapis.com, which serves generateAccessToken, is not enabled"},
		{"minter granted to the backend", checkHostTokenMinterGrants, "iam.tf",
			"  role               = google_project_iam_custom_role.host_token_minter.name\n  member             = google_service_account.dispatcher.member",
			"  role               = google_project_iam_custom_role.host_token_minter.name\n  member             = google_service_account.backend.member",
			"grants the minter role to google_service_account.backend.member"},
		{"minter on the project", checkHostTokenMinterGrants, "iam.tf",
			"resource \"google_service_account_iam_member\" \"dispatcher_host_tokens\" {\n  service_account_id = google_service_account.executor.name",
			"resource \"google_project_iam_member\" \"dispatcher_host_tokens\" {\n  project = var.project",
			"want google_service_account_iam_member"},
		{"minter on another account", checkHostTokenMinterGrants, "iam.tf",
			"service_account_id = google_service_account.executor.name\n  role               = google_project_iam_custom_role.host_token_minter.name\n  member             = google_service_account.dispatcher.member",
			"service_account_id = google_service_account.backend.name\n  role               = google_project_iam_custom_role.host_token_minter.name\n  member             = google_service_account.dispatcher.member",
			"grants the minter role on google_service_account.backend.name"},
		{"another grant on the host identity", checkHostTokenMinterGrants, "iam.tf",
			"service_account_id = google_service_account.backend.name", "service_account_id = google_service_account.executor.name",
			"google_service_account_iam_member.backend_impersonators grants \"roles/iam.serviceAccountTokenCreator\" on the host identity"},
		{"dispatcher deployed before its grant", checkHostTokenMinterGrants, "run.tf",
			"    google_service_account_iam_member.dispatcher_host_tokens,\n", "",
			"google_cloud_run_v2_worker_pool.dispatcher does not depend on google_service_account_iam_member.dispatcher_host_tokens"},
		{"dispatcher not told the host identity", checkHostServiceAccountEnv, "locals.tf",
			"dispatcher_env = merge(local.common_env, local.otel_env, local.pool_env, local.host_env, {", "dispatcher_env = merge(local.common_env, local.otel_env, local.pool_env, {",
			"local.dispatcher_env has no SANDRUN_HOST_SERVICE_ACCOUNT"},
		{"host identity is the wrong account", checkHostServiceAccountEnv, "locals.tf",
			"SANDRUN_HOST_SERVICE_ACCOUNT = google_service_account.executor.email", "SANDRUN_HOST_SERVICE_ACCOUNT = google_service_account.backend.email",
			"local.dispatcher_env sets SANDRUN_HOST_SERVICE_ACCOUNT = google_service_account.backend.email"},
		{"executor told the host identity", checkHostServiceAccountEnv, "locals.tf",
			"executor_env = merge(local.common_env, local.otel_env, {", "executor_env = merge(local.common_env, local.otel_env, local.host_env, {",
			"local.executor_env sets SANDRUN_HOST_SERVICE_ACCOUNT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			tt.check(parseDir(t, brokenCopy(t, tt.file, tt.old, tt.new)), func(format string, args ...any) {
				got = append(got, fmt.Sprintf(format, args...))
			})
			for _, msg := range got {
				if strings.Contains(msg, tt.want) {
					return
				}
			}
			t.Errorf("no problem reported contains %q; got %q", tt.want, got)
		})
	}
}

// TestEnvIsSettings checks that every SANDRUN_ variable the deployment
// sets is one the programs read (internal/system's settings table), so
// that a misspelt or retired name cannot quietly leave a program on its
// default.
func TestEnvIsSettings(t *testing.T) {
	known := map[string]bool{}
	for _, s := range system.Table() {
		known[s.Env] = true
	}
	set := regexp.MustCompile(`(?m)^\s*(SANDRUN_[A-Z0-9_]+)\s*=`)
	for _, file := range []string{"locals.tf", "run.tf"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range set.FindAllStringSubmatch(string(b), -1) {
			if !known[m[1]] {
				t.Errorf("%s sets %s, which no program reads", file, m[1])
			}
		}
	}
}
