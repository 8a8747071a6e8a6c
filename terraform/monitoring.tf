# Alerts. sandrun does not export metrics yet (OpenTelemetry metrics are
# issue 5), so the alerts read log-based metrics built from the programs'
# structured JSON logs (internal/logging): the host logs event
# "request.done" with status, op and duration_seconds; the dispatcher logs
# "request.accepted" with duration_seconds, and "request.rejected",
# "request.dead_lettered", "request.duplicate", "request.nacked".
#
# Caveat: a user command runs as the executor's own uid and can write to the
# executor's stderr, so lines in the executor's log can be forged from inside
# a sandbox. The dispatcher's logs cannot.

locals {
  metric_prefix = "logging.googleapis.com/user/"

  executor_logs = join(" AND ", [
    "resource.type=\"cloud_run_job\"",
    "resource.labels.job_name=\"${local.names.executor_job}\"",
  ])
}

# Requests answered by a host, by status (ok, error) and op.
resource "google_logging_metric" "requests_done" {
  name        = "${var.name_prefix}-requests-done"
  description = "Requests a sandrun host answered (event request.done), by status and op."
  filter      = "${local.executor_logs} AND jsonPayload.event=\"request.done\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "sandrun requests done"

    labels {
      key         = "status"
      value_type  = "STRING"
      description = "ok or error"
    }
    labels {
      key         = "op"
      value_type  = "STRING"
      description = "The request's op."
    }
  }

  label_extractors = {
    status = "EXTRACT(jsonPayload.status)"
    op     = "EXTRACT(jsonPayload.op)"
  }

  depends_on = [google_project_service.apis]
}

# How long a host spent on a request. It includes the user's own command, so
# it is for dashboards, not for an alert.
resource "google_logging_metric" "request_duration" {
  name            = "${var.name_prefix}-request-duration"
  description     = "Seconds a sandrun host spent on a request (request.done duration_seconds), by op."
  filter          = "${local.executor_logs} AND jsonPayload.event=\"request.done\""
  value_extractor = "EXTRACT(jsonPayload.duration_seconds)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "sandrun request duration"

    labels {
      key         = "op"
      value_type  = "STRING"
      description = "The request's op."
    }
  }

  label_extractors = {
    op = "EXTRACT(jsonPayload.op)"
  }

  # 5 ms to about 15 hours.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 48
      growth_factor      = 1.5
      scale              = 0.005
    }
  }

  depends_on = [google_project_service.apis]
}

# How long the dispatcher took to take a request in: validate, de-duplicate,
# enqueue, and launch a host when needed. This is the latency sandrun itself
# adds, whatever the command.
resource "google_logging_metric" "dispatch_latency" {
  name            = "${var.name_prefix}-dispatch-latency"
  description     = "Seconds the sandrun dispatcher took to accept a request (request.accepted duration_seconds)."
  filter          = "jsonPayload.event=\"request.accepted\""
  value_extractor = "EXTRACT(jsonPayload.duration_seconds)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "sandrun dispatch latency"
  }

  # 1 ms to about 25 minutes.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 36
      growth_factor      = 1.5
      scale              = 0.001
    }
  }

  depends_on = [google_project_service.apis]
}

# What became of each message the dispatcher handled.
resource "google_logging_metric" "dispatch_outcomes" {
  name        = "${var.name_prefix}-dispatch-outcomes"
  description = "Messages the sandrun dispatcher handled, by outcome (the event: request.accepted, request.rejected, request.dead_lettered, request.duplicate, request.nacked)."
  filter      = "jsonPayload.event=(\"request.accepted\" OR \"request.rejected\" OR \"request.dead_lettered\" OR \"request.duplicate\" OR \"request.nacked\")"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "sandrun dispatch outcomes"

    labels {
      key         = "event"
      value_type  = "STRING"
      description = "The dispatcher's event."
    }
  }

  label_extractors = {
    event = "EXTRACT(jsonPayload.event)"
  }

  depends_on = [google_project_service.apis]
}

# ERROR entries from sandrun's programs (every line they write has an event).
resource "google_logging_metric" "errors" {
  name        = "${var.name_prefix}-errors"
  description = "ERROR log entries of sandrun's programs, by event."
  filter      = "severity>=ERROR AND jsonPayload.event:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "sandrun errors"

    labels {
      key         = "event"
      value_type  = "STRING"
      description = "The event of the ERROR entry."
    }
  }

  label_extractors = {
    event = "EXTRACT(jsonPayload.event)"
  }

  depends_on = [google_project_service.apis]
}

# Failed reaper passes. With --once the reaper returns a failed pass as its
# exit status, written by cli.Main as a plain line "sandrun reaper: ..." on
# stderr, not as a JSON event.
resource "google_logging_metric" "reaper_failures" {
  name        = "${var.name_prefix}-reaper-failures"
  description = "Reaper passes that failed (the reaper job's \"sandrun reaper: ...\" error line)."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_job\"",
    "resource.labels.job_name=\"${local.names.reaper_job}\"",
    "textPayload:\"sandrun reaper:\"",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "sandrun reaper failures"
  }

  depends_on = [google_project_service.apis]
}

# --- alert policies -------------------------------------------------------------

# Fewer than success_rate_objective of the host's answers are ok. Error
# answers include the user's own mistakes (NOT_FOUND for a missing file,
# TIMEOUT for a command that ran too long; a non-zero exit code is still ok),
# so set the objective for the workload.
resource "google_monitoring_alert_policy" "success_rate" {
  display_name          = "sandrun: success rate below ${var.success_rate_objective}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"

  conditions {
    display_name = "error answers / all answers over 10 minutes"

    condition_threshold {
      filter             = "metric.type=\"${local.metric_prefix}${google_logging_metric.requests_done.name}\" AND metric.label.status=\"error\""
      denominator_filter = "metric.type=\"${local.metric_prefix}${google_logging_metric.requests_done.name}\""
      comparison         = "COMPARISON_GT"
      threshold_value    = 1 - var.success_rate_objective
      duration           = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }

      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Less than ${var.success_rate_objective} of the requests sandrun hosts answered had status ok. Break the metric ${google_logging_metric.requests_done.name} down by op, then read the hosts' request.done lines and the completions' error.code."
  }
}

# The p99 of the dispatcher's handling time is over its threshold.
resource "google_monitoring_alert_policy" "dispatch_latency" {
  display_name          = "sandrun: p99 dispatch latency above ${var.dispatch_latency_p99_seconds}s"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "p99 of request.accepted duration_seconds over 5 minutes"

    condition_threshold {
      filter          = "metric.type=\"${local.metric_prefix}${google_logging_metric.dispatch_latency.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.dispatch_latency_p99_seconds
      duration        = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
      }

      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The dispatcher takes more than ${var.dispatch_latency_p99_seconds}s to accept 1% of requests. Slow Firestore transactions (contention on busy sessions) or slow RunJob calls are the usual causes: look for retry events in the dispatcher's log."
  }
}

# sandrun's programs log errors faster than the threshold.
resource "google_monitoring_alert_policy" "error_rate" {
  display_name          = "sandrun: more than ${var.error_logs_per_minute} errors per minute"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"

  conditions {
    display_name = "ERROR entries per minute over 5 minutes"

    condition_threshold {
      filter          = "metric.type=\"${local.metric_prefix}${google_logging_metric.errors.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.error_logs_per_minute / 60
      duration        = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }

      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Break the metric ${google_logging_metric.errors.name} down by event: host.launch_failed (Cloud Run refused RunJob: quota, image), reaper.failed, host.failed and request.nacked each name what failed in their error field."
  }
}

# Reaper passes keep failing: HOST_LOST answers, relaunches and lost
# publishes wait for a pass that works.
resource "google_monitoring_alert_policy" "reaper_failures" {
  display_name          = "sandrun: reaper passes failing"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"

  conditions {
    display_name = "more than 2 failed passes in 10 minutes"

    condition_threshold {
      filter          = "metric.type=\"${local.metric_prefix}${google_logging_metric.reaper_failures.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 2
      duration        = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The reaper job's executions end in error. Read its log (job ${local.names.reaper_job}): the line \"sandrun reaper: ...\" names the steps that failed. Right after the first deployment, the Firestore indexes may still be building."
  }
}

# More hosts are running than the deployment expects. Nothing stops launches
# at this number: Cloud Run has no per-job cap, and the region's limit of
# 1000 running executions is the hard one (beyond it launches fail and the
# requests are answered LAUNCH_FAILED).
resource "google_monitoring_alert_policy" "hosts" {
  display_name          = "sandrun: more than ${var.max_hosts} session hosts"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "running executions of ${local.names.executor_job}"

    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/job/running_executions\" AND resource.type=\"cloud_run_job\" AND resource.label.job_name=\"${google_cloud_run_v2_job.executor.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.max_hosts
      duration        = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "More than ${var.max_hosts} executions of ${local.names.executor_job} run. Each live session with background processes keeps its host; idle hosts leave after ${var.idle_timeout_seconds}s. Check for sessions that are never destroyed, or raise max_hosts."
  }

  depends_on = [google_project_service.apis]
}
