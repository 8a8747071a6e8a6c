# Alerts, on log-based metrics built from the programs' structured JSON
# logs (internal/logging), each selecting entries by the resource that
# wrote them and the event field sandrun writes, never by free text:
#   - the host (executor job) logs event "request.done" with status, op,
#     duration_seconds and total_seconds (accepted to answered);
#   - the dispatcher (worker pool) logs "request.accepted" with
#     duration_seconds, and "request.rejected", "request.dead_lettered",
#     "request.duplicate", "request.nacked";
#   - the reaper's loop, in the dispatcher's process, logs "reaper.pass"
#     with outcome ok or failed.
# tfcheck (checkMonitoring) refuses a log-based metric without a
# resource.type restriction or an event match, one that reads textPayload,
# and an alert filter without a metric type and a resource type that
# matches the metric's.
#
# Caveat: a user command runs as the executor's own uid and can write to the
# executor's stderr, so request.done lines can be forged from inside a
# sandbox (docs/deploy.md). The dispatcher's logs (the reaper's included)
# cannot.
#
# The resource type of a Cloud Run worker pool's log entries,
# cloud_run_worker_pool, is not verified against Google Cloud yet
# (docs/deploy.md, "Not yet verified").

locals {
  metric_prefix = "logging.googleapis.com/user/"

  executor_logs = join(" AND ", [
    "resource.type=\"cloud_run_job\"",
    "resource.labels.job_name=\"${local.names.executor_job}\"",
  ])
  dispatcher_logs = "resource.type=\"cloud_run_worker_pool\""
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

# A request's end-to-end time: accepted by the dispatcher (after the
# request's Pub/Sub hop) to answered by its host, host launch, queueing and
# the command's run included (the completion's timing.total_seconds).
resource "google_logging_metric" "end_to_end" {
  name            = "${var.name_prefix}-end-to-end"
  description     = "Seconds from a sandrun request's acceptance to its answer (request.done total_seconds), by op."
  filter          = "${local.executor_logs} AND jsonPayload.event=\"request.done\""
  value_extractor = "EXTRACT(jsonPayload.total_seconds)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "sandrun end-to-end latency"

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
# enqueue, and launch a host when needed. For dashboards: the latency
# sandrun itself adds, whatever the command.
resource "google_logging_metric" "dispatch_latency" {
  name            = "${var.name_prefix}-dispatch-latency"
  description     = "Seconds the sandrun dispatcher took to accept a request (request.accepted duration_seconds)."
  filter          = "${local.dispatcher_logs} AND jsonPayload.event=\"request.accepted\""
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
  filter      = "${local.dispatcher_logs} AND jsonPayload.event=(\"request.accepted\" OR \"request.rejected\" OR \"request.dead_lettered\" OR \"request.duplicate\" OR \"request.nacked\")"

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

# Reaper passes, by outcome: every pass logs one reaper.pass line whose
# outcome is ok or failed (internal/reaper).
resource "google_logging_metric" "reaper_passes" {
  name        = "${var.name_prefix}-reaper-passes"
  description = "Reaper passes (event reaper.pass), by outcome: ok, or failed when a step failed."
  filter      = "${local.dispatcher_logs} AND jsonPayload.event=\"reaper.pass\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "sandrun reaper passes"

    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "ok or failed"
    }
  }

  label_extractors = {
    outcome = "EXTRACT(jsonPayload.outcome)"
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
      filter             = "metric.type=\"${local.metric_prefix}${google_logging_metric.requests_done.name}\" AND resource.type=\"cloud_run_job\" AND metric.label.status=\"error\""
      denominator_filter = "metric.type=\"${local.metric_prefix}${google_logging_metric.requests_done.name}\" AND resource.type=\"cloud_run_job\""
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

# The p99 of the end-to-end time is over its target.
resource "google_monitoring_alert_policy" "end_to_end_latency" {
  display_name          = "sandrun: p99 end-to-end latency above ${var.end_to_end_p99_seconds}s"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "p99 of request.done total_seconds over 10 minutes"

    condition_threshold {
      filter          = "metric.type=\"${local.metric_prefix}${google_logging_metric.end_to_end.name}\" AND resource.type=\"cloud_run_job\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.end_to_end_p99_seconds
      duration        = "0s"

      aggregations {
        alignment_period     = "600s"
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
    content   = "1% of requests took more than ${var.end_to_end_p99_seconds}s from acceptance to answer. Break ${google_logging_metric.end_to_end.name} down by op: long user commands count too. Cold starts (completions with cold_start true and timing.launch_seconds), slow restores (timing.restore_seconds) and Firestore contention are sandrun's own causes; ${google_logging_metric.dispatch_latency.name} shows the dispatcher's part."
  }
}

# More than error_rate_objective of the messages the dispatcher handles end
# in error: rejected (invalid), dead-lettered (undecodable) or nacked (a
# step failed; Pub/Sub redelivers).
resource "google_monitoring_alert_policy" "error_rate" {
  display_name          = "sandrun: dispatcher error rate above ${var.error_rate_objective}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"

  conditions {
    display_name = "rejected, dead-lettered and nacked messages / all messages over 10 minutes"

    condition_threshold {
      filter             = "metric.type=\"${local.metric_prefix}${google_logging_metric.dispatch_outcomes.name}\" AND resource.type=\"cloud_run_worker_pool\" AND metric.label.event=one_of(\"request.rejected\", \"request.dead_lettered\", \"request.nacked\")"
      denominator_filter = "metric.type=\"${local.metric_prefix}${google_logging_metric.dispatch_outcomes.name}\" AND resource.type=\"cloud_run_worker_pool\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_rate_objective
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
    content   = "Break ${google_logging_metric.dispatch_outcomes.name} down by event. request.rejected: backends send invalid requests (each got an error completion). request.dead_lettered: undecodable messages, on the dead-letter topic. request.nacked: a step failed (Firestore, RunJob) and the message will be redelivered; its error field names the step."
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
      filter          = "metric.type=\"${local.metric_prefix}${google_logging_metric.reaper_passes.name}\" AND resource.type=\"cloud_run_worker_pool\" AND metric.label.outcome=\"failed\""
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
    content   = "The reaper's passes fail. Read the worker pool ${local.names.dispatcher_pool}'s log, where the reaper's loop runs: the reaper.pass line has outcome failed, and the reaper.failed line names the steps that failed. Right after the first deployment, the Firestore indexes may still be building."
  }
}

# The running hosts stay at max_hosts: new sessions wait in line for a host
# (the dispatcher never launches past it; `sandrun status` shows the line).
resource "google_monitoring_alert_policy" "hosts" {
  display_name          = "sandrun: ${var.max_hosts} session hosts, the most allowed"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "running executions of ${local.names.executor_job}"

    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/job/running_executions\" AND resource.type=\"cloud_run_job\" AND resource.label.job_name=\"${google_cloud_run_v2_job.executor.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.max_hosts - 1
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
    content   = "${var.max_hosts} executions of ${local.names.executor_job} run, the most max_hosts allows: new sessions wait in line (`sandrun status` lists them). Each live session with background processes keeps its host; idle hosts leave after ${var.idle_timeout_seconds}s. Check for sessions that are never destroyed, or raise max_hosts within the region's job instance quota (docs/cost.md)."
  }

  depends_on = [google_project_service.apis]
}
