locals {
  # Resource names. With the default prefix they are the programs' defaults
  # (internal/outbox.DefaultNames, internal/system.DefaultJob), so that
  # `sandrun exec --project P` reaches this deployment without more flags.
  names = {
    requests_topic          = "${var.name_prefix}-requests"
    completions_topic       = "${var.name_prefix}-completions"
    dead_letter_topic       = "${var.name_prefix}-dead-letters"
    dispatcher_subscription = "${var.name_prefix}-dispatcher"
    dead_letter_sub         = "${var.name_prefix}-dead-letters"
    backend_subscription    = "${var.name_prefix}-backend"
    executor_job            = "${var.name_prefix}-executor"
    dispatcher_pool         = "${var.name_prefix}-dispatcher"
    repository              = var.name_prefix
  }

  bucket_name        = coalesce(var.bucket_name, "${var.project}-${var.name_prefix}-sessions")
  firestore_location = coalesce(var.firestore_location, var.region)

  # Custom role ids take no hyphens.
  role_prefix = replace(var.name_prefix, "-", "_")

  registry = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
  images = {
    dispatcher = coalesce(var.dispatcher_image, "${local.registry}/dispatcher:${var.image_tag}")
    executor   = coalesce(var.executor_image, "${local.registry}/executor:${var.image_tag}")
  }

  # The settings every program reads (internal/system.Config.Define). Each
  # program takes only what it needs, but one set keeps them in agreement.
  # Google's exporters when var.google_telemetry (they take precedence over
  # an OTLP endpoint); else OTEL_EXPORTER_OTLP_ENDPOINT only when set: its
  # presence turns OTLP export on.
  otel_env = merge(var.otel_exporter_otlp_endpoint == "" ? {} : {
    OTEL_EXPORTER_OTLP_ENDPOINT = var.otel_exporter_otlp_endpoint
    }, !var.google_telemetry ? {} : {
    OTEL_TRACES_EXPORTER  = "google_cloud_trace"
    OTEL_METRICS_EXPORTER = "google_cloud_monitoring"
  })

  common_env = {
    SANDRUN_PROJECT           = var.project
    SANDRUN_REGION            = var.region
    SANDRUN_JOB               = local.names.executor_job
    SANDRUN_BUCKET            = google_storage_bucket.sessions.name
    SANDRUN_REQUESTS_TOPIC    = google_pubsub_topic.requests.name
    SANDRUN_COMPLETIONS_TOPIC = google_pubsub_topic.completions.name
    SANDRUN_DEAD_LETTER_TOPIC = google_pubsub_topic.dead_letters.name
    SANDRUN_SUBSCRIPTION      = google_pubsub_subscription.dispatcher.name
    SANDRUN_SESSION_TTL       = "${var.session_ttl_hours}h"
    SANDRUN_LOG_LEVEL         = var.log_level
  }

  # The executor's own settings (internal/system.HostConfig.DefineHost).
  executor_env = merge(local.common_env, local.otel_env, {
    SANDRUN_IDLE_TIMEOUT        = "${var.idle_timeout_seconds}s"
    SANDRUN_LEASE_TTL           = "${var.lease_ttl_seconds}s"
    SANDRUN_CHECKPOINT_INTERVAL = "${var.checkpoint_interval_seconds}s"
    SANDRUN_WORKSPACE           = "/workspace"
  })

  # The warm pool's policy (internal/pool.Policy.Define), which the
  # dispatcher uses to claim, to refill as it takes, and to refill in each
  # reaper pass. Pool hosts learn their side from their launch.
  pool_env = {
    SANDRUN_POOL_MIN          = tostring(var.pool_min)
    SANDRUN_POOL_TARGET       = tostring(var.pool_target)
    SANDRUN_POOL_MAX          = tostring(var.pool_max)
    SANDRUN_POOL_IDLE_TIMEOUT = "${var.pool_idle_timeout_seconds}s"
    SANDRUN_POOL_PEAK         = tostring(var.pool_peak)
  }

  # The host identity whose access tokens the dispatcher mints
  # for the executions they launch (iam.tf). Not the executor's: it is given
  # a token, never the means to mint one.
  host_env = {
    SANDRUN_HOST_SERVICE_ACCOUNT = google_service_account.executor.email
  }

  dispatcher_env = merge(local.common_env, local.otel_env, local.pool_env, local.host_env, {
    SANDRUN_MAX_OUTSTANDING = tostring(var.dispatcher_max_outstanding)
    # The reaper's loop runs in the dispatcher's process (run.tf).
    SANDRUN_REAPER = "true"
    # New sessions beyond max_hosts running hosts wait in line.
    SANDRUN_MAX_HOSTS = tostring(var.max_hosts)
  })


  # IAM condition pieces. Object names in conditions are
  # projects/_/buckets/BUCKET/objects/NAME; a list request is checked on the
  # bucket, with the prefix it asks for as an API attribute.
  objects_prefix = "projects/_/buckets/${google_storage_bucket.sessions.name}/objects/sessions/"
  # Checkpoint blobs live under blobs/, out of reach of the lifecycle
  # rule's age (storage.tf).
  blobs_prefix = "projects/_/buckets/${google_storage_bucket.sessions.name}/objects/blobs/"
  sessions_objects_condition = join(" || ", [
    "resource.name.startsWith(\"${local.objects_prefix}\")",
    "resource.name.startsWith(\"${local.blobs_prefix}\")",
    "(resource.type == \"storage.googleapis.com/Bucket\" && api.getAttribute(\"storage.googleapis.com/objectListPrefix\", \"\").startsWith(\"sessions/\"))",
    "(resource.type == \"storage.googleapis.com/Bucket\" && api.getAttribute(\"storage.googleapis.com/objectListPrefix\", \"\").startsWith(\"blobs/\"))",
  ])
  firestore_condition = "resource.name == \"projects/${var.project}/databases/${google_firestore_database.sessions.name}\""
}
