# Session coordination (internal/session): sessions/{session_id}, written by
# the dispatcher; sessions/{session_id}/inbox/{request_id};
# sessions/{session_id}/runtime/{lease,state}, written by the session's
# host; and sessions/{session_id}/processes/{epoch}-{pid}, its background
# processes. The programs use the project's (default) database.
resource "google_firestore_database" "sessions" {
  name        = "(default)"
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"

  # Pessimistic, Standard edition's default, chosen and stated so that a
  # change is deliberate (docs/deploy.md, "Firestore concurrency"):
  # sandrun's transactions read then write one session document that
  # dispatchers and the host contend for; under pessimistic locking a
  # contender waits for the lock instead of redoing its work after an abort
  # at commit, and server client libraries are designed for it. The local
  # cloud's Firestore models this mode (locks, waits, the lock timeout's
  # ABORTED), checked against Google's emulator; a test pins it.
  database_edition            = "STANDARD"
  concurrency_mode            = "PESSIMISTIC"
  app_engine_integration_mode = "DISABLED"

  # The sessions' state outlives a `terraform destroy` unless removed by hand.
  deletion_policy = "ABANDON"

  # Firestore itself refuses to delete the database (from Terraform, the
  # console or gcloud) until this is turned off: the sessions' state is not
  # lost to one mistaken command.
  delete_protection_state = "DELETE_PROTECTION_ENABLED"

  depends_on = [google_project_service.apis]
}

# TTL policies and index exemptions, one resource per field. expire_at is
# set on every session document, inbox item, runtime document and process
# entry (internal/session); Firestore deletes a document within about a day
# of that time. Timestamp fields that only ever grow make index hot spots,
# and nothing queries expire_at, so it is not indexed. The large fields that
# nothing queries are not indexed either: indexing them only costs writes.
locals {
  firestore_fields = {
    sessions_expire_at = { collection = "sessions", field = "expire_at", ttl = true }
    inbox_expire_at    = { collection = "inbox", field = "expire_at", ttl = true }
    inbox_request      = { collection = "inbox", field = "request", ttl = false }
    inbox_completion   = { collection = "inbox", field = "completion", ttl = false }
    runtime_expire_at  = { collection = "runtime", field = "expire_at", ttl = true }
    runtime_shell      = { collection = "runtime", field = "shell", ttl = false }
    process_expire_at  = { collection = "processes", field = "expire_at", ttl = true }
    pool_expire_at     = { collection = "pool", field = "expire_at", ttl = true }
  }

  # Fields the reaper queries across every session (collection group
  # queries), which need single-field indexes of collection group scope
  # besides the automatic ones of collection scope.
  firestore_group_fields = {
    # Sessions with queued requests: inbox where status == "queued".
    inbox_status = { collection = "inbox", field = "status" }
    # Lapsed hosts: runtime where lease_expires is past.
    runtime_lease_expires = { collection = "runtime", field = "lease_expires" }
    # Live hosts, for orphaned executions: runtime where execution > "".
    runtime_execution = { collection = "runtime", field = "execution" }
    # Completions whose publish a lease tracks, due: runtime where
    # publish_due is past.
    runtime_publish_due = { collection = "runtime", field = "publish_due" }
    # Processes whose host may be gone: processes where status == "running"
    # (SettleProcesses).
    processes_status = { collection = "processes", field = "status" }
  }
}

resource "google_firestore_field" "fields" {
  for_each = local.firestore_fields

  database = google_firestore_database.sessions.name
  # For a subcollection, collection is the collection group id: the inbox
  # policies cover every session's inbox.
  collection = each.value.collection
  field      = each.value.field

  # An empty index_config removes the field's single-field indexes.
  index_config {}

  dynamic "ttl_config" {
    for_each = each.value.ttl ? [1] : []
    content {}
  }
}

resource "google_firestore_field" "group_indexed" {
  for_each = local.firestore_group_fields

  database   = google_firestore_database.sessions.name
  collection = each.value.collection
  field      = each.value.field

  index_config {
    indexes {
      query_scope = "COLLECTION"
      order       = "ASCENDING"
    }
    indexes {
      query_scope = "COLLECTION_GROUP"
      order       = "ASCENDING"
    }
  }
}

# Recent requests across every session, newest first (`sandrun status`,
# Store.Overview): inbox where finished_at > t, ordered by finished_at
# descending, a collection group query. The collection scope keeps the
# automatic indexes that finishedSince uses.
resource "google_firestore_field" "inbox_finished_at" {
  database   = google_firestore_database.sessions.name
  collection = "inbox"
  field      = "finished_at"

  index_config {
    indexes {
      query_scope = "COLLECTION"
      order       = "ASCENDING"
    }
    indexes {
      query_scope = "COLLECTION"
      order       = "DESCENDING"
    }
    indexes {
      query_scope = "COLLECTION_GROUP"
      order       = "DESCENDING"
    }
  }
}

# Composite indexes of sandrun's queries; single-field filters use the
# automatic indexes. The warm pool's queries (pool where status == or in,
# pool where assigned_at >) are single-field ones of collection scope.

# `sandrun session list`: sessions where status == "active", newest
# activity first.
resource "google_firestore_index" "sessions_status_updated_at_desc" {
  database    = google_firestore_database.sessions.name
  collection  = "sessions"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "updated_at"
    order      = "DESCENDING"
  }
}

# Stale: sessions where status == "active" and updated_at < cutoff.
resource "google_firestore_index" "sessions_status_updated_at" {
  database    = google_firestore_database.sessions.name
  collection  = "sessions"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "updated_at"
    order      = "ASCENDING"
  }
}

# A host's queue: one session's inbox where status == "queued", by seq.
resource "google_firestore_index" "inbox_status_seq" {
  database    = google_firestore_database.sessions.name
  collection  = "inbox"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "seq"
    order      = "ASCENDING"
  }
}

# Unpublished: every inbox (collection group) where status == "done" and
# published == false and finished_at < cutoff.
resource "google_firestore_index" "inbox_unpublished" {
  database    = google_firestore_database.sessions.name
  collection  = "inbox"
  query_scope = "COLLECTION_GROUP"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "published"
    order      = "ASCENDING"
  }
  fields {
    field_path = "finished_at"
    order      = "ASCENDING"
  }
}
