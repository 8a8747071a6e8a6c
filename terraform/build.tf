# Where the images come from: an Artifact Registry repository, and what
# deploy/cloudbuild.yaml needs to build into it with an identity of its own
# (new projects' default build identity may hold no roles at all).

resource "google_artifact_registry_repository" "images" {
  repository_id = local.names.repository
  location      = var.region
  format        = "DOCKER"
  description   = "sandrun images: dispatcher, reaper, executor."

  # Untagged images are superseded builds; tagged ones may still be what a
  # job runs, and every new execution pulls its image again.
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "1209600s"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "sandrun image builds"
  description  = "Cloud Build runs deploy/cloudbuild.yaml as this account."

  depends_on = [google_project_service.apis]
}

# `gcloud builds submit --gcs-source-staging-dir` uploads the source here.
resource "google_storage_bucket" "build_sources" {
  name                        = "${var.project}-${var.name_prefix}-build"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "build_sources" {
  bucket = google_storage_bucket.build_sources.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build_pushes" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# Build logs go to Cloud Logging only (cloudbuild.yaml's options.logging),
# which is checked on the project.
resource "google_project_iam_member" "build_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}
