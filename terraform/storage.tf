# The sessions' checkpoints, full outputs, process logs and transfer staging,
# under sessions/SESSION_ID/; the checkpoints' content-addressed file blobs
# under blobs/SESSION_ID/.
resource "google_storage_bucket" "sessions" {
  name          = local.bucket_name
  location      = var.region
  force_destroy = var.bucket_force_destroy

  # IAM only (no object ACLs), so that the prefix conditions in iam.tf are
  # the whole story of who reads what; and never public.
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Session state expires after state_retention_days whatever happens to
  # the session; the reaper deletes a destroyed session's objects sooner.
  # Not blobs/: a checkpoint blob is live as long as a checkpoint names it,
  # however old (an unchanged file of a session in use for weeks); a
  # session's purge deletes them.
  lifecycle_rule {
    condition {
      age            = var.state_retention_days
      matches_prefix = ["sessions/"]
    }
    action {
      type = "Delete"
    }
  }

  # A host that dies mid-upload leaves parts behind.
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  # Deleted checkpoints and outputs are meant to be gone: soft delete would
  # keep (and bill) every replaced checkpoint for another week.
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  lifecycle {
    precondition {
      condition     = var.session_ttl_hours <= var.state_retention_days * 24
      error_message = "session_ttl_hours exceeds state_retention_days: the lifecycle rule would delete the state of sessions that are still alive."
    }
  }

  depends_on = [google_project_service.apis]
}
