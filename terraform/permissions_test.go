package terraform

import (
	"encoding/csv"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// permissionsFile is the table of every Google API call sandrun's deployed
// programs make, with the IAM permissions each needs and the resource it
// needs them on. TestPermissionTableMatchesCode keeps it equal to the code;
// TestProgramGrants keeps the Terraform equal to it.
const permissionsFile = "permissions.csv"

// A permissionRow is one line of permissions.csv.
type permissionRow struct {
	program     string   // dispatcher, executor; * for calls that reach no API
	call        string   // the client function, as callName writes it; terraform:ADDRESS for a call the Terraform makes as the program
	api         string   // the API method, for the reader
	permissions []string // what the call needs
	resources   []string // the Terraform addresses it needs them on
	need        string   // required; optional (a /ready check that counts PERMISSION_DENIED as an answer); local (no API)
}

func readPermissions(t *testing.T) []permissionRow {
	t.Helper()
	f, err := os.Open(permissionsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", permissionsFile, err)
	}
	want := []string{"program", "call", "api_method", "permissions", "resource", "need"}
	if len(recs) == 0 || strings.Join(recs[0], ",") != strings.Join(want, ",") {
		t.Fatalf("%s: header is not %v", permissionsFile, want)
	}
	var rows []permissionRow
	for i, r := range recs[1:] {
		row := permissionRow{program: r[0], call: r[1], api: r[2], need: r[5]}
		if r[3] != "-" {
			row.permissions = strings.Fields(r[3])
		}
		if r[4] != "-" {
			row.resources = strings.Fields(r[4])
		}
		switch {
		case row.need == "local" && (row.program != "*" || row.permissions != nil || row.resources != nil):
			t.Errorf("%s line %d: a local call is program * with no permissions or resource", permissionsFile, i+2)
		case row.need != "local" && (row.permissions == nil || row.resources == nil):
			t.Errorf("%s line %d: %s names no permission or resource", permissionsFile, i+2, row.call)
		case row.need != "local" && row.need != "required" && row.need != "optional":
			t.Errorf("%s line %d: need %q is not required, optional or local", permissionsFile, i+2, row.need)
		}
		rows = append(rows, row)
	}
	return rows
}

// TestPermissionTableMatchesCode finds every call of an official Google
// client that each deployed program can reach and checks that
// permissions.csv has a row for it, and no row for a call the program no
// longer makes: a new call without a row fails here.
func TestPermissionTableMatchesCode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole program as SSA (about 20 s)")
	}
	found, err := programCalls()
	if err != nil {
		t.Fatal(err)
	}
	rows := readPermissions(t)
	local := map[string]bool{}
	listed := map[string]map[string]bool{}
	for _, r := range rows {
		if r.program == "*" {
			local[r.call] = true
			continue
		}
		if listed[r.program] == nil {
			listed[r.program] = map[string]bool{}
		}
		listed[r.program][r.call] = true
	}
	used := map[string]bool{}
	for _, program := range sortedKeys(found) {
		for _, call := range sortedKeys(found[program]) {
			used[call] = true
			if !listed[program][call] && !local[call] {
				t.Errorf("%s calls %s (from %s), which %s does not list: add a row with the API method and the permissions it needs",
					program, call, found[program][call], permissionsFile)
			}
		}
	}
	for _, program := range sortedKeys(listed) {
		for _, call := range sortedKeys(listed[program]) {
			if strings.HasPrefix(call, "terraform:") {
				continue
			}
			if _, ok := found[program][call]; !ok {
				t.Errorf("%s lists %s for %s, which the program no longer calls: remove the row", permissionsFile, call, program)
			}
		}
	}
	for _, call := range sortedKeys(local) {
		if !used[call] {
			t.Errorf("%s lists the local call %s, which no program makes: remove the row", permissionsFile, call)
		}
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// programAccounts are the service accounts the programs act as: the
// dispatcher (with the reaper's loop in it) runs as its own; the executor acts with the
// host identity's minted token; the sandbox account is what the executor
// job runs as, reachable by every command, and must hold nothing.
var programAccounts = map[string]string{
	"dispatcher": "dispatcher",
	"executor":   "executor",
	"sandbox":    "sandbox",
}

// A grant is one permission on one resource, with the Terraform resource
// that gives it.
type grant struct{ permission, resource string }

// iamTargets names, for each IAM member resource type, the argument that
// says what the grant is on.
var iamTargets = map[string]string{
	"google_project_iam_member":                      "project",
	"google_storage_bucket_iam_member":               "bucket",
	"google_pubsub_topic_iam_member":                 "topic",
	"google_pubsub_subscription_iam_member":          "subscription",
	"google_cloud_run_v2_job_iam_member":             "name",
	"google_service_account_iam_member":              "service_account_id",
	"google_artifact_registry_repository_iam_member": "repository",
}

// granted returns, per identity (google_service_account.NAME, a local
// naming a service agent, or the variable a for_each grants to), the
// permissions the configuration grants it and on what, read from the IAM
// member resources; custom roles' permissions are read from their
// google_project_iam_custom_role, predefined roles' from
// predefined_roles.csv. Anything it cannot follow is reported.
func granted(c *config, errorf errorf) map[string]map[grant][]string {
	known, err := predefinedRoles()
	if err != nil {
		errorf("%v", err)
	}
	roles := map[string][]string{}
	for _, b := range c.all("resource", "google_project_iam_custom_role") {
		var perms []string
		for _, p := range c.literal(b, "permissions").AsValueSlice() {
			perms = append(perms, p.AsString())
		}
		roles[b.Labels[1]] = perms
	}
	out := map[string]map[grant][]string{}
	for _, b := range c.all("resource") {
		targetArg, ok := iamTargets[b.Labels[0]]
		if !ok {
			if strings.Contains(b.Labels[0], "_iam_") && b.Labels[0] != "google_project_iam_custom_role" {
				errorf("%s: an IAM resource type this test does not read; teach iamTargets its target", resourceName(b))
			}
			continue
		}
		name := resourceName(b)
		members := memberIdentities(c, b, errorf)
		targets := eachValues(c, b, targetArg, errorf)
		var target []string
		for _, tr := range targets {
			addr := address(tr)
			if b.Labels[0] == "google_project_iam_member" {
				addr = "project"
				if cond, ok := nestedAttr(b.Body, "condition", "expression"); ok && c.exprText(cond.Expr) == "local.firestore_condition" {
					addr = "google_firestore_database.sessions"
				}
			}
			target = append(target, addr)
		}
		role := b.Body.Attributes["role"]
		var perms []string
		if tr := firstTraversal(role.Expr); tr != nil && tr.RootName() == "google_project_iam_custom_role" {
			perms, ok = roles[address(tr)[len("google_project_iam_custom_role."):]]
			if !ok {
				errorf("%s: role %s is not declared", name, c.exprText(role.Expr))
			}
		} else {
			v, diags := role.Expr.Value(nil)
			if diags.HasErrors() {
				errorf("%s: cannot read role %s", name, c.exprText(role.Expr))
				continue
			}
			perms = known[v.AsString()]
			if perms == nil {
				perms = []string{"(every permission of " + v.AsString() + ")"}
			}
		}
		for _, sa := range members {
			if out[sa] == nil {
				out[sa] = map[grant][]string{}
			}
			for _, p := range perms {
				for _, tg := range target {
					g := grant{p, tg}
					out[sa][g] = append(out[sa][g], name)
				}
			}
		}
	}
	return out
}

// memberIdentities returns who b grants its role to: service accounts of
// the configuration and locals (a service agent) by their address, and the
// members of a for_each over a variable by the variable's.
func memberIdentities(c *config, b *hclsyntax.Block, errorf errorf) []string {
	var ids []string
	for _, m := range eachValues(c, b, "member", errorf) {
		if root := m.RootName(); root == "google_service_account" || root == "local" {
			ids = append(ids, address(m))
		}
	}
	if fe, ok := b.Body.Attributes["for_each"]; ok {
		if tr := firstTraversal(fe.Expr); tr != nil && tr.RootName() == "var" {
			ids = append(ids, address(tr))
		}
	}
	return ids
}

// eachValues returns the traversals an argument of b refers to, following
// for_each over a map or set of references (each.value, each.key).
func eachValues(c *config, b *hclsyntax.Block, arg string, errorf errorf) []hcl.Traversal {
	a, ok := b.Body.Attributes[arg]
	if !ok {
		errorf("%s has no %s", resourceName(b), arg)
		return nil
	}
	tr := firstTraversal(a.Expr)
	if tr == nil {
		return nil
	}
	if tr.RootName() != "each" {
		return []hcl.Traversal{tr}
	}
	fe, ok := b.Body.Attributes["for_each"]
	if !ok {
		errorf("%s: each without for_each", resourceName(b))
		return nil
	}
	obj, ok := fe.Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		// for_each over a variable (backend_impersonators): its members
		// are not service accounts of this configuration.
		return nil
	}
	var out []hcl.Traversal
	for _, item := range obj.Items {
		if t := firstTraversal(item.ValueExpr); t != nil {
			out = append(out, t)
		}
	}
	return out
}

// firstTraversal returns the first reference in e, or nil.
func firstTraversal(e hclsyntax.Expression) hcl.Traversal {
	vars := e.Variables()
	if len(vars) == 0 {
		return nil
	}
	return vars[0]
}

// address returns TYPE.NAME of a reference such as
// google_pubsub_topic.completions.name.
func address(tr hcl.Traversal) string {
	if len(tr) < 2 {
		return tr.RootName()
	}
	if a, ok := tr[1].(hcl.TraverseAttr); ok {
		return tr.RootName() + "." + a.Name
	}
	return tr.RootName()
}

// firstBlock returns the body of b's first nested block typ.
func firstBlock(b *hclsyntax.Block, typ string) *hclsyntax.Body {
	for _, nb := range b.Body.Blocks {
		if nb.Type == typ {
			return nb.Body
		}
	}
	return &hclsyntax.Body{}
}

// nestedAttr returns the argument name of the first block typ in body.
func nestedAttr(body *hclsyntax.Body, typ, name string) (*hclsyntax.Attribute, bool) {
	for _, nb := range body.Blocks {
		if nb.Type == typ {
			a, ok := nb.Body.Attributes[name]
			return a, ok
		}
	}
	return nil, false
}

// checkProgramGrants: each program's service account is granted every
// permission permissions.csv says its calls need, on the resource they
// need it on, and nothing else; the sandbox account is granted nothing.
func checkProgramGrants(c *config, rows []permissionRow, errorf errorf) {
	has := granted(c, errorf)
	for _, program := range sortedKeys(programAccounts) {
		sa := "google_service_account." + programAccounts[program]
		need := map[grant][]string{}
		optional := map[grant]bool{}
		for _, r := range rows {
			if r.program != program {
				continue
			}
			for _, p := range r.permissions {
				for _, res := range r.resources {
					g := grant{p, res}
					if r.need == "optional" {
						optional[g] = true
						continue
					}
					need[g] = append(need[g], r.call)
				}
			}
		}
		compareGrants(program, sa, has[sa], need, optional, "no call of the "+program, errorf)
	}
}

// compareGrants reports each grant in need that has (what identity id is
// granted) lacks, and each grant in has that is neither needed nor
// allowed. who names the identity's user in the report, unneeded who has
// no use for a grant.
func compareGrants(who, id string, has map[grant][]string, need map[grant][]string, allowed map[grant]bool, unneeded string, errorf errorf) {
	for _, g := range sortedGrants(need) {
		if _, ok := has[g]; !ok {
			errorf("%s needs %s on %s (for %s); no grant to %s gives it",
				who, g.permission, g.resource, strings.Join(need[g], ", "), id)
		}
	}
	for _, g := range sortedGrants(has) {
		if _, ok := need[g]; !ok && !allowed[g] {
			errorf("%s is granted %s on %s (by %s), which %s needs",
				id, g.permission, g.resource, strings.Join(has[g], ", "), unneeded)
		}
	}
}

func sortedGrants[V any](m map[grant]V) []grant {
	out := make([]grant, 0, len(m))
	for g := range m {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].resource != out[j].resource {
			return out[i].resource < out[j].resource
		}
		return out[i].permission < out[j].permission
	})
	return out
}

// TestProgramGrants checks the configuration's grants against
// permissions.csv, program by program.
func TestProgramGrants(t *testing.T) {
	checkProgramGrants(parse(t), readPermissions(t), t.Errorf)
}

// TestProgramGrantsCatchMistakes breaks a copy of the configuration and
// checks that the grant check reports each break.
func TestProgramGrantsCatchMistakes(t *testing.T) {
	rows := readPermissions(t)
	checkBreakages(t, func(c *config, errorf errorf) { checkProgramGrants(c, rows, errorf) }, []breakage{
		{"delete permission removed", "iam.tf", "    \"datastore.entities.delete\",\n", "",
			"needs datastore.entities.delete on google_firestore_database.sessions"},
		{"grant on the wrong topic", "iam.tf", "topic  = google_pubsub_topic.completions.name\n  role   = google_project_iam_custom_role.completion_publisher.name\n  member = google_service_account.executor.member",
			"topic  = google_pubsub_topic.requests.name\n  role   = google_project_iam_custom_role.completion_publisher.name\n  member = google_service_account.executor.member",
			"granted pubsub.topics.publish on google_pubsub_topic.requests"},
		{"a predefined role", "iam.tf", "role     = google_project_iam_custom_role.host_inspector.name", "role     = \"roles/run.viewer\"",
			"(every permission of roles/run.viewer)"},
		{"a role for the sandbox", "iam.tf", "  member = google_service_account.executor.member\n\n  condition {\n    title      = \"sessions prefix only\"",
			"  member = google_service_account.sandbox.member\n\n  condition {\n    title      = \"sessions prefix only\"",
			"google_service_account.sandbox is granted storage.objects.create on google_storage_bucket.sessions"},
		{"telemetry written as the sandbox", "iam.tf", "    executor   = google_service_account.executor.member\n", "    executor   = google_service_account.sandbox.member\n",
			"executor needs cloudtrace.traces.patch on project"},
		{"a metric permission left out", "iam.tf", "    \"monitoring.metricDescriptors.create\",\n", "",
			"needs monitoring.metricDescriptors.create on project"},
	})
}

// A breakage replaces old by new in a copy of file, and check must then
// report a problem that contains want.
type breakage struct{ name, file, old, new, want string }

// checkBreakages runs check on a broken copy of the configuration for each
// breakage, and fails unless it reports what the breakage wants.
func checkBreakages(t *testing.T, check func(*config, errorf), breakages []breakage) {
	for _, b := range breakages {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			check(parseDir(t, brokenCopy(t, b.file, b.old, b.new)), func(format string, args ...any) {
				got = append(got, fmt.Sprintf(format, args...))
			})
			for _, msg := range got {
				if strings.Contains(msg, b.want) {
					return
				}
			}
			t.Errorf("no problem reported contains %q; got %q", b.want, got)
		})
	}
}
