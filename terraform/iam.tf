# Who may do what. One service account per program and one for backends,
# each granted only what its code calls, on the resource itself wherever
# IAM allows it. docs/deploy.md ("Least privilege") explains each grant and
# what an untrusted command in the sandbox can still reach.
#
# The executor job runs as sandrun-sandbox, which holds nothing: untrusted
# commands reach the job's identity through the metadata server. The
# session host's rights belong to sandrun-executor, which no workload runs
# as: the dispatcher (and the reaper loop in it) mints short-lived access tokens for it
# (IAM Credentials generateAccessToken) and pass them to each execution they
# launch; the host keeps them in memory and never gives them to the commands.
#
# Where a grant cannot be on the resource:
# - Firestore has no per-collection or per-document IAM: its grants are on the
#   project, narrowed by a condition to sandrun's database.
# - Pub/Sub checks subscriptions.create on the project, and has no IAM
#   conditions: the backend's temporary subscriptions need project grants.
# - Cloud Storage grants are on the bucket, narrowed by a condition to the
#   sessions/ prefix (a per-session prefix cannot be expressed: one service
#   account serves every session).
# - Cloud Trace and Cloud Monitoring keep traces and time series in the
#   project, and check their write permissions on it.

resource "google_service_account" "dispatcher" {
  account_id   = "${var.name_prefix}-dispatcher"
  display_name = "sandrun dispatcher"
  description  = "Pulls requests, enqueues them in Firestore, launches session hosts."

  depends_on = [google_project_service.apis]
}

# The host identity: attached to no workload.
resource "google_service_account" "executor" {
  account_id   = "${var.name_prefix}-executor"
  display_name = "sandrun executor (session host)"
  description  = "The session host's identity, attached to no workload: the dispatcher mints short-lived tokens for it and passes them to each execution, whose host holds them in memory."

  depends_on = [google_project_service.apis]
}

# The executor job's runtime identity. Untrusted commands can obtain its
# token from the metadata server, so it is granted nothing, anywhere.
resource "google_service_account" "sandbox" {
  account_id   = "${var.name_prefix}-sandbox"
  display_name = "sandrun sandbox (executor job runtime)"
  description  = "The executor job's runtime identity. Untrusted commands can obtain its token through the metadata server, so it holds no roles."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "backend" {
  account_id   = "${var.name_prefix}-backend"
  display_name = "sandrun backend"
  description  = "For backends: publishes requests, reads completions and their output objects."

  depends_on = [google_project_service.apis]
}

# --- custom roles -------------------------------------------------------------
# The programs hold custom roles only, each with exactly the permissions
# their calls check: permissions.csv lists every Google API call each
# program makes (TestPermissionTableMatchesCode finds them in the code) and
# TestProgramGrants proves that these grants give each program exactly
# what its rows need, on the resource they need it on. The predefined roles
# that would fit each carry more (roles/datastore.user, roles/run.viewer,
# roles/run.jobsExecutorWithOverrides), and the permission lists of
# predefined roles can change under a deployment.

# Transactions (beginTransaction, rollback: datastore.databases.get), gets,
# queries, listens, and the writes a commit carries: creates, updates, and
# deletes (session.destroy, the reaper's stale sessions, and the warm
# pool's members leaving and being removed all delete documents in
# transactions).
resource "google_project_iam_custom_role" "session_state" {
  role_id     = "${local.role_prefix}SessionState"
  title       = "sandrun session state"
  description = "Read, write and delete sandrun's session documents."
  permissions = [
    "datastore.databases.get",
    "datastore.entities.create",
    "datastore.entities.delete",
    "datastore.entities.get",
    "datastore.entities.list",
    "datastore.entities.update",
  ]

  depends_on = [google_project_service.apis]
}

# The host's objects: create-only writes, reads of checkpoints, deletes of
# replaced checkpoints, and the listing that purging a destroyed session
# does.
resource "google_project_iam_custom_role" "session_objects" {
  role_id     = "${local.role_prefix}SessionObjects"
  title       = "sandrun session objects"
  description = "Create, read, list and delete session objects."
  permissions = [
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
  ]

  depends_on = [google_project_service.apis]
}

# Purging a destroyed session: list its prefix, delete what is there.
resource "google_project_iam_custom_role" "session_purger" {
  role_id     = "${local.role_prefix}SessionPurger"
  title       = "sandrun session purger"
  description = "List and delete session objects."
  permissions = [
    "storage.objects.delete",
    "storage.objects.list",
  ]

  depends_on = [google_project_service.apis]
}

# client.New without a Subscription creates one on the completions topic,
# reads it, and deletes it on Close.
resource "google_project_iam_custom_role" "temporary_subscriptions" {
  count = var.backend_temporary_subscriptions ? 1 : 0

  role_id     = "${local.role_prefix}TemporarySubscriptions"
  title       = "sandrun temporary subscriptions"
  description = "Create, consume and delete Pub/Sub subscriptions."
  permissions = [
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.delete",
  ]

  depends_on = [google_project_service.apis]
}

# Publishing completions (and, for the dispatcher, dead letters), granted
# on each topic. roles/pubsub.publisher is meant to be this, but its list is
# Google's to change.
resource "google_project_iam_custom_role" "completion_publisher" {
  role_id     = "${local.role_prefix}Publisher"
  title       = "sandrun publisher"
  description = "Publish to a topic."
  permissions = [
    "pubsub.topics.publish",
  ]

  depends_on = [google_project_service.apis]
}

# StreamingPull, acknowledge and modifyAckDeadline on the dispatcher's
# subscription.
resource "google_project_iam_custom_role" "request_consumer" {
  role_id     = "${local.role_prefix}Consumer"
  title       = "sandrun consumer"
  description = "Pull and acknowledge from a subscription."
  permissions = [
    "pubsub.subscriptions.consume",
  ]

  depends_on = [google_project_service.apis]
}

# RunJob with environment overrides (run.jobs.run checks the job,
# run.jobs.runWithOverrides the overrides) and cancelling executions,
# granted on the executor job: launching hosts and pool members, and
# cancelling orphans and surplus members.
resource "google_project_iam_custom_role" "host_launcher" {
  role_id     = "${local.role_prefix}HostLauncher"
  title       = "sandrun host launcher"
  description = "Run the host job with overrides and cancel its executions."
  permissions = [
    "run.executions.cancel",
    "run.jobs.run",
    "run.jobs.runWithOverrides",
  ]

  depends_on = [google_project_service.apis]
}

# Reading and listing the executor job's executions: the reaper's orphan and
# lost-host passes, and counting the running hosts against max_hosts.
resource "google_project_iam_custom_role" "host_inspector" {
  role_id     = "${local.role_prefix}HostInspector"
  title       = "sandrun host inspector"
  description = "Get and list the host job's executions."
  permissions = [
    "run.executions.get",
    "run.executions.list",
  ]

  depends_on = [google_project_service.apis]
}

# generateAccessToken, granted on the host identity only.
# roles/iam.serviceAccountTokenCreator would also sign blobs and JWTs and
# mint ID tokens.
resource "google_project_iam_custom_role" "host_token_minter" {
  role_id     = "${local.role_prefix}HostTokenMinter"
  title       = "sandrun host token minter"
  description = "Mint access tokens for the session host's service account."
  permissions = [
    "iam.serviceAccounts.getAccessToken",
  ]

  depends_on = [google_project_service.apis]
}

# What Google's OpenTelemetry exporters call (internal/telemetry/export):
# Cloud Trace's BatchWriteSpans, and Cloud Monitoring's GetMetricDescriptor,
# CreateMetricDescriptor (once per instrument a process records) and
# CreateTimeSeries. roles/cloudtrace.agent and roles/monitoring.metricWriter
# would add reading descriptors of every metric and listing resources.
resource "google_project_iam_custom_role" "telemetry_writer" {
  role_id     = "${local.role_prefix}TelemetryWriter"
  title       = "sandrun telemetry writer"
  description = "Write spans to Cloud Trace and sandrun's workload metrics to Cloud Monitoring."
  permissions = [
    "cloudtrace.traces.patch",
    "monitoring.metricDescriptors.create",
    "monitoring.metricDescriptors.get",
    "monitoring.timeSeries.create",
  ]

  depends_on = [google_project_service.apis]
}

# Each program writes its traces and metrics as itself: the executor with
# the host token it was launched with, never the sandbox account. Granted
# whether or not var.google_telemetry turns the export on: four write
# permissions, no reads of anything sandrun keeps.
resource "google_project_iam_member" "telemetry" {
  for_each = {
    dispatcher = google_service_account.dispatcher.member
    executor   = google_service_account.executor.member
  }

  project = var.project
  role    = google_project_iam_custom_role.telemetry_writer.name
  member  = each.value
}

# --- dispatcher ---------------------------------------------------------------

resource "google_pubsub_subscription_iam_member" "dispatcher_requests" {
  subscription = google_pubsub_subscription.dispatcher.name
  role         = google_project_iam_custom_role.request_consumer.name
  member       = google_service_account.dispatcher.member
}

# Error completions for invalid requests, and dead letters.
resource "google_pubsub_topic_iam_member" "dispatcher_publishes" {
  for_each = {
    completions  = google_pubsub_topic.completions.name
    dead_letters = google_pubsub_topic.dead_letters.name
  }

  topic  = each.value
  role   = google_project_iam_custom_role.completion_publisher.name
  member = google_service_account.dispatcher.member
}

resource "google_project_iam_member" "dispatcher_firestore" {
  project = var.project
  role    = google_project_iam_custom_role.session_state.name
  member  = google_service_account.dispatcher.member

  condition {
    title      = "sandrun database only"
    expression = local.firestore_condition
  }
}

# A session.destroy the dispatcher answers itself purges the objects.
resource "google_storage_bucket_iam_member" "dispatcher_objects" {
  bucket = google_storage_bucket.sessions.name
  role   = google_project_iam_custom_role.session_purger.name
  member = google_service_account.dispatcher.member

  condition {
    title      = "sessions prefix only"
    expression = local.sessions_objects_condition
  }
}

# RunJob with environment overrides on the executor job, and cancelling the
# pool's surplus members.
resource "google_cloud_run_v2_job_iam_member" "dispatcher_launches" {
  location = google_cloud_run_v2_job.executor.location
  name     = google_cloud_run_v2_job.executor.name
  role     = google_project_iam_custom_role.host_launcher.name
  member   = google_service_account.dispatcher.member
}

# Lists the executor job's executions: the reaper's loop finds orphans and
# hosts that died, and the launcher counts the running hosts (max_hosts).
resource "google_cloud_run_v2_job_iam_member" "dispatcher_lists" {
  location = google_cloud_run_v2_job.executor.location
  name     = google_cloud_run_v2_job.executor.name
  role     = google_project_iam_custom_role.host_inspector.name
  member   = google_service_account.dispatcher.member
}

# The host's access tokens, for the executions it launches; on the executor
# account only.
resource "google_service_account_iam_member" "dispatcher_host_tokens" {
  service_account_id = google_service_account.executor.name
  role               = google_project_iam_custom_role.host_token_minter.name
  member             = google_service_account.dispatcher.member
}

# --- executor: the host identity ----------------------------------------------

resource "google_pubsub_topic_iam_member" "executor_completions" {
  topic  = google_pubsub_topic.completions.name
  role   = google_project_iam_custom_role.completion_publisher.name
  member = google_service_account.executor.member
}

resource "google_project_iam_member" "executor_firestore" {
  project = var.project
  role    = google_project_iam_custom_role.session_state.name
  member  = google_service_account.executor.member

  condition {
    title      = "sandrun database only"
    expression = local.firestore_condition
  }
}

resource "google_storage_bucket_iam_member" "executor_objects" {
  bucket = google_storage_bucket.sessions.name
  role   = google_project_iam_custom_role.session_objects.name
  member = google_service_account.executor.member

  condition {
    title      = "sessions prefix only"
    expression = local.sessions_objects_condition
  }
}

# --- backend ------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "backend_requests" {
  topic  = google_pubsub_topic.requests.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.backend.member
}

resource "google_pubsub_subscription_iam_member" "backend_completions" {
  subscription = google_pubsub_subscription.backend.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.backend.member
}

# Attaching a new subscription to a topic checks
# pubsub.topics.attachSubscription on the topic; on a topic, that is all
# roles/pubsub.subscriber grants.
resource "google_pubsub_topic_iam_member" "backend_attach" {
  count = var.backend_temporary_subscriptions ? 1 : 0

  topic  = google_pubsub_topic.completions.name
  role   = "roles/pubsub.subscriber"
  member = google_service_account.backend.member
}

# Creating a subscription is checked on the project, and the new
# subscription's name is random, so reading and deleting it cannot be
# granted on it in advance. This lets the backend read or delete any
# subscription in the project: see docs/deploy.md.
resource "google_project_iam_member" "backend_temporary_subscriptions" {
  count = var.backend_temporary_subscriptions ? 1 : 0

  project = var.project
  role    = google_project_iam_custom_role.temporary_subscriptions[0].name
  member  = google_service_account.backend.member
}

# Objects that a completion names, read by name; no listing, no
# checkpoints, no process logs: full outputs
# (sessions/S/results/R/stdout|stderr) and file.download's files
# (sessions/S/transfers/R/NAME).
resource "google_storage_bucket_iam_member" "backend_results" {
  bucket = google_storage_bucket.sessions.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.backend.member

  condition {
    title      = "completion outputs and transfers only"
    expression = "resource.name.startsWith(\"${local.objects_prefix}\") && (resource.name.extract(\"/objects/sessions/{session}/results/\") != \"\" || resource.name.extract(\"/objects/sessions/{session}/transfers/\") != \"\")"
  }
}

# file.upload: the backend stages a file as sessions/S/transfers/R/NAME
# before it names it in the request. Create only: it cannot overwrite or
# delete what is there.
resource "google_storage_bucket_iam_member" "backend_transfers" {
  bucket = google_storage_bucket.sessions.name
  role   = "roles/storage.objectCreator"
  member = google_service_account.backend.member

  condition {
    title      = "staging of uploads only"
    expression = "resource.name.startsWith(\"${local.objects_prefix}\") && resource.name.extract(\"/objects/sessions/{session}/transfers/\") != \"\""
  }
}

resource "google_service_account_iam_member" "backend_impersonators" {
  for_each = toset(var.backend_impersonators)

  service_account_id = google_service_account.backend.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

# --- service agents -------------------------------------------------------------

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# Dead-lettering is done by Pub/Sub itself, as its service agent: it must
# publish to the dead-letter topic and acknowledge on the source
# subscription.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letters" {
  topic  = google_pubsub_topic.dead_letters.name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_dispatcher" {
  subscription = google_pubsub_subscription.dispatcher.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
