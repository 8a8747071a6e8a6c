# The APIs sandrun and this configuration call (iamcredentials: the
# dispatcher minting the host's access tokens, and
# impersonating the backend service account, docs/deploy.md step 6).
# serviceusage and cloudresourcemanager must be on before Terraform can
# enable the others (docs/deploy.md enables them with gcloud first); they are
# listed so that Terraform keeps them on.
locals {
  services = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudtrace.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = local.services

  project = var.project
  service = each.value

  # Turning an API off on destroy would break anything else in the project
  # that uses it.
  disable_on_destroy = false
}

# The project number names the Google-managed service agents. Reading it
# needs the Resource Manager API, which docs/deploy.md enables before the
# first apply.
data "google_project" "this" {
  project_id = var.project
}
