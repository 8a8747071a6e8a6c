package terraform

import (
	"encoding/csv"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// predefinedRolesFile holds the permissions of each predefined role the
// configuration grants, as Google lists them; its header names the source
// and the date.
const predefinedRolesFile = "predefined_roles.csv"

// predefinedRoles reads predefinedRolesFile: role name to permissions.
var predefinedRoles = sync.OnceValues(func() (map[string][]string, error) {
	f, err := os.Open(predefinedRolesFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", predefinedRolesFile, err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "role,permissions" {
		return nil, fmt.Errorf("%s: the header is not role,permissions", predefinedRolesFile)
	}
	roles := map[string][]string{}
	for _, rec := range recs[1:] {
		if !strings.HasPrefix(rec[0], "roles/") || len(strings.Fields(rec[1])) == 0 || roles[rec[0]] != nil {
			return nil, fmt.Errorf("%s: row %q is not a new predefined role with its permissions", predefinedRolesFile, rec[0])
		}
		roles[rec[0]] = strings.Fields(rec[1])
	}
	return roles, nil
})

// A use is what an identity needs, or may hold, on one resource, and why.
type use struct {
	resource    string
	permissions []string
	why         string
}

// otherIdentities are the identities besides the programs that the
// configuration grants roles to, most of them predefined: what each needs
// (the calls of the client library and the SDK for the backend,
// deploy/cloudbuild.yaml for the build, Pub/Sub's dead-lettering for its
// service agent) and what else the roles it holds give it, allowed on
// purpose. A grant that gives less than the needs, or anything beyond the
// two, fails TestPredefinedRoleGrants, and so does a new permission in a
// role's row of predefined_roles.csv until it is allowed here.
var otherIdentities = map[string]struct{ needs, allowed []use }{
	"google_service_account.backend": {
		needs: []use{
			{"google_pubsub_topic.requests", []string{"pubsub.topics.publish"}, "publishing requests"},
			{"google_pubsub_subscription.backend", []string{"pubsub.subscriptions.consume"}, "receiving completions"},
			{"google_pubsub_topic.completions", []string{"pubsub.topics.attachSubscription"}, "a temporary subscription of its own to completions"},
			{"project", []string{"pubsub.subscriptions.consume", "pubsub.subscriptions.create", "pubsub.subscriptions.delete"}, "creating, receiving on and deleting its temporary subscription"},
			{"google_storage_bucket.sessions", []string{"storage.objects.get"}, "reading the outputs and downloads completions name"},
			{"google_storage_bucket.sessions", []string{"storage.objects.create"}, "staging uploads"},
		},
		allowed: []use{
			{"google_pubsub_subscription.backend", []string{"pubsub.snapshots.seek", "pubsub.topics.attachSubscription"}, "the rest of roles/pubsub.subscriber, inert on a subscription"},
			{"google_pubsub_topic.completions", []string{"pubsub.snapshots.seek", "pubsub.subscriptions.consume"}, "the rest of roles/pubsub.subscriber, inert on a topic"},
			{"google_storage_bucket.sessions", []string{"storage.objects.list", "storage.folders.get", "storage.folders.list", "storage.managedFolders.get", "storage.managedFolders.list", "resourcemanager.projects.get", "resourcemanager.projects.list"},
				"the rest of roles/storage.objectViewer, held under a condition that only results/ and transfers/ objects meet"},
			{"google_storage_bucket.sessions", []string{"storage.multipartUploads.abort", "storage.multipartUploads.create", "storage.multipartUploads.listParts", "storage.objects.createContext", "storage.folders.create", "storage.managedFolders.create", "orgpolicy.policy.get"},
				"the rest of roles/storage.objectCreator, held under a condition that only transfers/ objects meet"},
		},
	},
	"var.backend_impersonators": {
		needs: []use{
			{"google_service_account.backend", []string{"iam.serviceAccounts.getAccessToken"}, "acting as the backend"},
		},
		allowed: []use{
			{"google_service_account.backend", []string{"iam.serviceAccounts.get", "iam.serviceAccounts.getOpenIdToken", "iam.serviceAccounts.implicitDelegation", "iam.serviceAccounts.list", "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt", "resourcemanager.projects.get", "resourcemanager.projects.list"},
				"the rest of roles/iam.serviceAccountTokenCreator: impersonating the backend, on the backend's account only"},
		},
	},
	"google_service_account.build": {
		needs: []use{
			{"google_storage_bucket.build_sources", []string{"storage.objects.get"}, "fetching the source gcloud builds submit staged"},
			{"google_artifact_registry_repository.images", []string{"artifactregistry.repositories.uploadArtifacts", "artifactregistry.repositories.downloadArtifacts", "artifactregistry.tags.create", "artifactregistry.tags.update"}, "pushing and tagging the images"},
			{"project", []string{"logging.logEntries.create"}, "the build's logs (CLOUD_LOGGING_ONLY)"},
		},
		allowed: []use{
			{"google_storage_bucket.build_sources", []string{"storage.objects.list", "storage.folders.get", "storage.folders.list", "storage.managedFolders.get", "storage.managedFolders.list", "resourcemanager.projects.get", "resourcemanager.projects.list"},
				"the rest of roles/storage.objectViewer, on the build's own staging bucket"},
			{"google_artifact_registry_repository.images", []string{"artifactregistry.aptartifacts.create", "artifactregistry.dockerimages.get", "artifactregistry.dockerimages.list", "artifactregistry.files.download", "artifactregistry.files.get", "artifactregistry.files.list", "artifactregistry.files.update", "artifactregistry.kfpartifacts.create", "artifactregistry.locations.get", "artifactregistry.locations.list", "artifactregistry.mavenartifacts.get", "artifactregistry.mavenartifacts.list", "artifactregistry.npmpackages.get", "artifactregistry.npmpackages.list", "artifactregistry.packages.get", "artifactregistry.packages.list", "artifactregistry.packages.update", "artifactregistry.projectsettings.get", "artifactregistry.pythonpackages.get", "artifactregistry.pythonpackages.list", "artifactregistry.repositories.get", "artifactregistry.repositories.list", "artifactregistry.repositories.listEffectiveTags", "artifactregistry.repositories.listTagBindings", "artifactregistry.repositories.readViaVirtualRepository", "artifactregistry.tags.get", "artifactregistry.tags.list", "artifactregistry.versions.get", "artifactregistry.versions.list", "artifactregistry.yumartifacts.create"},
				"the rest of roles/artifactregistry.writer, on sandrun's images repository only"},
		},
	},
	"local.pubsub_agent": {
		needs: []use{
			{"google_pubsub_topic.dead_letters", []string{"pubsub.topics.publish"}, "forwarding a dead letter"},
			{"google_pubsub_subscription.dispatcher", []string{"pubsub.subscriptions.consume"}, "acknowledging the dead letter on its subscription"},
		},
		allowed: []use{
			{"google_pubsub_subscription.dispatcher", []string{"pubsub.snapshots.seek", "pubsub.topics.attachSubscription"}, "the rest of roles/pubsub.subscriber, inert on a subscription"},
		},
	},
}

// checkOtherGrants: each identity of otherIdentities is granted what it
// needs and nothing but that and what it is allowed; every identity
// granted anything is a program's account or one of otherIdentities.
func checkOtherGrants(c *config, errorf errorf) {
	has := granted(c, errorf)
	programs := map[string]bool{}
	for _, sa := range programAccounts {
		programs["google_service_account."+sa] = true
	}
	for _, id := range sortedKeys(has) {
		if _, ok := otherIdentities[id]; !ok && !programs[id] {
			errorf("%s is granted roles, and neither programAccounts nor otherIdentities says what it needs", id)
		}
	}
	for _, id := range sortedKeys(otherIdentities) {
		need, allowed := map[grant][]string{}, map[grant]bool{}
		for _, u := range otherIdentities[id].needs {
			for _, p := range u.permissions {
				g := grant{p, u.resource}
				need[g] = append(need[g], u.why)
			}
		}
		for _, u := range otherIdentities[id].allowed {
			for _, p := range u.permissions {
				allowed[grant{p, u.resource}] = true
			}
		}
		compareGrants(id, id, has[id], need, allowed, "none of the uses otherIdentities lists for "+id, errorf)
	}
}

// TestPredefinedRoleGrants checks the grants to the identities other than
// the programs, whose roles are mostly predefined, against what they need.
func TestPredefinedRoleGrants(t *testing.T) {
	checkOtherGrants(parse(t), t.Errorf)
}

// TestPredefinedRolesFileIsUsed: every role of predefined_roles.csv is
// granted by the configuration (a role that no longer is, goes).
func TestPredefinedRolesFileIsUsed(t *testing.T) {
	roles, err := predefinedRoles()
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t)
	for _, role := range sortedKeys(roles) {
		used := false
		for _, src := range c.sources {
			used = used || strings.Contains(string(src), `"`+role+`"`)
		}
		if !used {
			t.Errorf("%s lists %s, which no grant uses: remove the row", predefinedRolesFile, role)
		}
	}
}

// TestPredefinedRoleGrantsCatchMistakes breaks a copy of the configuration
// and checks that the grant check reports each break: a role swapped for
// one that lacks a needed permission, a grant on the wrong resource, and a
// role whose permissions the data file does not know.
func TestPredefinedRoleGrantsCatchMistakes(t *testing.T) {
	checkBreakages(t, checkOtherGrants, []breakage{
		{"subscriber in place of publisher for requests", "iam.tf",
			"topic  = google_pubsub_topic.requests.name\n  role   = \"roles/pubsub.publisher\"",
			"topic  = google_pubsub_topic.requests.name\n  role   = \"roles/pubsub.subscriber\"",
			"google_service_account.backend needs pubsub.topics.publish on google_pubsub_topic.requests"},
		{"viewer in place of creator for uploads", "iam.tf", "role   = \"roles/storage.objectCreator\"", "role   = \"roles/storage.objectViewer\"",
			"google_service_account.backend needs storage.objects.create on google_storage_bucket.sessions"},
		{"the service agent cannot publish dead letters", "iam.tf",
			"topic  = google_pubsub_topic.dead_letters.name\n  role   = \"roles/pubsub.publisher\"",
			"topic  = google_pubsub_topic.dead_letters.name\n  role   = \"roles/pubsub.subscriber\"",
			"local.pubsub_agent needs pubsub.topics.publish on google_pubsub_topic.dead_letters"},
		{"the build cannot write its logs", "build.tf", "role    = \"roles/logging.logWriter\"", "role    = \"roles/logging.viewer\"",
			"google_service_account.build needs logging.logEntries.create on project"},
		{"attach granted on the wrong topic", "iam.tf",
			"topic  = google_pubsub_topic.completions.name\n  role   = \"roles/pubsub.subscriber\"",
			"topic  = google_pubsub_topic.requests.name\n  role   = \"roles/pubsub.subscriber\"",
			"google_service_account.backend is granted pubsub.topics.attachSubscription on google_pubsub_topic.requests"},
		{"a role the data file does not know", "build.tf", "role       = \"roles/artifactregistry.writer\"", "role       = \"roles/artifactregistry.repoAdmin\"",
			"(every permission of roles/artifactregistry.repoAdmin)"},
	})
}
