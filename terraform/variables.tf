# Inputs of a sandrun deployment. Only project and image_tag have no default;
# every other default matches the programs' own defaults (`sandrun <program>
# --help`), so that a backend using sandrun's default names needs no flags.

variable "project" {
  type        = string
  description = "Google Cloud project to deploy into. A project of its own is best: some grants (Firestore, temporary subscriptions) cannot be narrower than the project."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run workloads, the bucket, the image repository and the scheduler."
  default     = "us-central1"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name. The default, sandrun, gives the names the programs use by default (sandrun-requests, sandrun-executor, ...)."
  default     = "sandrun"

  validation {
    # Service account ids are at most 30 characters and the longest suffix
    # is "-dispatcher".
    condition     = can(regex("^[a-z][a-z0-9-]{0,17}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2 to 19 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}
}

# --- images -----------------------------------------------------------------

variable "image_tag" {
  type        = string
  description = "Tag of the images that deploy/cloudbuild.yaml pushed (its _TAG substitution), such as a commit hash. Cloud Run resolves a tag once, when a revision or job is deployed, so every release needs a new tag."

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a Docker tag other than latest: a moving tag would not roll out."
  }
}

variable "dispatcher_image" {
  type        = string
  description = "Full reference of the dispatcher image; null means REGION-docker.pkg.dev/PROJECT/NAME_PREFIX/dispatcher:IMAGE_TAG."
  default     = null
}

variable "executor_image" {
  type        = string
  description = "Full reference of the executor (sandbox) image; null means REGION-docker.pkg.dev/PROJECT/NAME_PREFIX/executor:IMAGE_TAG."
  default     = null
}

# --- state --------------------------------------------------------------------

variable "bucket_name" {
  type        = string
  description = "Name of the bucket of the sessions' checkpoints and outputs; null means PROJECT-NAME_PREFIX-sessions."
  default     = null
}

variable "state_retention_days" {
  type        = number
  description = "Age in days after which Cloud Storage deletes any object under sessions/ (checkpoints, outputs, logs; not the checkpoints' file blobs under blobs/, which a session's purge deletes). Must cover session_ttl_hours."
  default     = 7

  validation {
    condition     = var.state_retention_days >= 1 && floor(var.state_retention_days) == var.state_retention_days
    error_message = "state_retention_days must be a whole number of days, at least 1."
  }
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database (a region such as us-central1, or a multi-region such as nam5); null means var.region."
  default     = null
}

variable "bucket_force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the sessions bucket with its objects in it."
  default     = false
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to destroy the Cloud Run job and worker pool through Terraform. They hold no state, so the default allows it."
  default     = false
}

# --- sessions and hosts -------------------------------------------------------

variable "session_ttl_hours" {
  type        = number
  description = "Hours an idle session lives before the reaper destroys it (SANDRUN_SESSION_TTL); Firestore's TTL removes its documents after that."
  default     = 168

  validation {
    condition     = var.session_ttl_hours >= 1 && floor(var.session_ttl_hours) == var.session_ttl_hours
    error_message = "session_ttl_hours must be a whole number of hours, at least 1."
  }
}

variable "idle_timeout_seconds" {
  type        = number
  description = "Seconds a host without requests and without background processes waits before it checkpoints and exits (SANDRUN_IDLE_TIMEOUT)."
  default     = 120

  validation {
    condition     = var.idle_timeout_seconds >= 5
    error_message = "idle_timeout_seconds must be at least 5."
  }
}

variable "lease_ttl_seconds" {
  type        = number
  description = "Seconds a host's lease lasts unrenewed (SANDRUN_LEASE_TTL). A dead host's running requests are answered HOST_LOST by the first reaper pass after it."
  default     = 15

  validation {
    condition     = var.lease_ttl_seconds >= 5
    error_message = "lease_ttl_seconds must be at least 5."
  }
}

variable "checkpoint_interval_seconds" {
  type        = number
  description = "Seconds between checkpoints of a busy host (SANDRUN_CHECKPOINT_INTERVAL)."
  default     = 60

  validation {
    condition     = var.checkpoint_interval_seconds >= 10
    error_message = "checkpoint_interval_seconds must be at least 10."
  }
}

variable "executor_cpu" {
  type        = string
  description = "CPU limit of one sandbox (one session host), in Cloud Run units: 1, 2, 4, 6 or 8. 1 (with 2Gi) keeps the smallest deployment of docs/cost.md within $135 a month."
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.executor_cpu)
    error_message = "executor_cpu must be 1, 2, 4, 6 or 8."
  }
}

variable "executor_memory" {
  type        = string
  description = "Memory limit of one sandbox. Cloud Run's file system is in memory, so the workspace counts against it: leave room for sandrun's 500 MB files. 1 vCPU allows up to 4Gi."
  default     = "2Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.executor_memory))
    error_message = "executor_memory must be a quantity in Mi or Gi, such as 4Gi."
  }
}

variable "executor_task_timeout_hours" {
  type        = number
  description = "Hours one host may live before Cloud Run stops it; a later request starts a new host from the last checkpoint. Cloud Run Jobs allow a task timeout of up to 168 hours (7 days)."
  default     = 24

  validation {
    condition     = var.executor_task_timeout_hours >= 1 && var.executor_task_timeout_hours <= 168
    error_message = "executor_task_timeout_hours must be between 1 and 168 (Cloud Run's longest task timeout)."
  }
}

variable "max_hosts" {
  type        = number
  description = "Most session hosts running at once (running executions of the executor job, warm pool hosts included; SANDRUN_MAX_HOSTS): new sessions beyond wait in line, first come first served, and `sandrun status` shows their place. The default stays within Cloud Run's quota of container instances of all running job executions in a region, 200 at 1 vCPU and 2 GiB (docs/cost.md), leaving room for other jobs of the project. The hosts alert fires when the line stays full."
  default     = 100

  validation {
    condition     = var.max_hosts >= 1 && var.max_hosts <= 1000
    error_message = "max_hosts must be between 1 and 1000 (Cloud Run's limit of running executions per project and region)."
  }
}

# --- warm pool ----------------------------------------------------------------

variable "pool_min" {
  type        = number
  description = "Idle session hosts the warm pool keeps at all times, used or not (SANDRUN_POOL_MIN). With pool_target, 0 turns the pool off. Each idle host is a running execution of the executor job, billed as one while it waits."
  default     = 0

  validation {
    condition     = var.pool_min >= 0 && var.pool_min <= 1000
    error_message = "pool_min must be between 0 and 1000; above pool_max, pool_max wins."
  }
}

variable "pool_target" {
  type        = number
  description = "Idle session hosts the warm pool keeps while new sessions arrive (SANDRUN_POOL_TARGET); it grows past this with the arrival rate, up to pool_max, and shrinks back to pool_min once no session arrived for pool_idle_timeout_seconds. 0 with pool_min 0: no pool, every new session waits for a cold start."
  default     = 0

  validation {
    condition     = var.pool_target >= 0 && var.pool_target <= 1000
    error_message = "pool_target must be between 0 and 1000; above pool_max, pool_max wins."
  }
}

variable "pool_max" {
  type        = number
  description = "Most warm pool hosts, idle and starting (SANDRUN_POOL_MAX). They count against the region's 1000 running executions, as session hosts do."
  default     = 10

  validation {
    condition     = var.pool_max >= 1 && var.pool_max <= 1000
    error_message = "pool_max must be between 1 and 1000."
  }
}

variable "pool_peak" {
  type        = number
  description = "The burst of new sessions the warm pool holds idle hosts for, as a multiple of the last minute's arrival rate beyond 1 (SANDRUN_POOL_PEAK): a burst at up to 1 + pool_peak times the rate, lasting about one host start, is served from the pool. Each unit costs rate x start-time idle hosts (6 at one new session a second and 6 s starts). 4 serves a burst of 20 at four a second after a steady one a second, with pool_max of at least 24."
  default     = 0.5

  validation {
    condition     = var.pool_peak > 0 && var.pool_peak <= 100
    error_message = "pool_peak must be above 0 and at most 100."
  }
}

variable "pool_idle_timeout_seconds" {
  type        = number
  description = "Seconds a warm pool host waits unclaimed before it exits, and how long after the last new session the pool shrinks to pool_min (SANDRUN_POOL_IDLE_TIMEOUT)."
  default     = 600

  validation {
    condition     = var.pool_idle_timeout_seconds >= 30
    error_message = "pool_idle_timeout_seconds must be at least 30."
  }
}

# --- dispatcher (and the reaper's loop in it) -----------------------------------

variable "dispatcher_instances" {
  type        = number
  description = "Dispatcher instances. Each pulls with streaming pull; Pub/Sub keeps each session's requests in order across them."
  default     = 1

  validation {
    condition     = var.dispatcher_instances >= 1
    error_message = "dispatcher_instances must be at least 1: without a dispatcher no request is served."
  }
}

variable "dispatcher_max_outstanding" {
  type        = number
  description = "Messages one dispatcher holds at once (SANDRUN_MAX_OUTSTANDING)."
  default     = 200
}

variable "dispatcher_cpu" {
  type        = string
  description = "CPU limit of one dispatcher instance."
  default     = "1"
}

variable "dispatcher_memory" {
  type        = string
  description = "Memory limit of one dispatcher instance."
  default     = "512Mi"
}

variable "log_level" {
  type        = string
  description = "Log level of every program (SANDRUN_LOG_LEVEL)."
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be debug, info, warn or error."
  }
}

variable "google_telemetry" {
  type        = bool
  description = "Every program writes its traces to Cloud Trace and its metrics to Cloud Monitoring (workload.googleapis.com/sandrun.*) with Google's OpenTelemetry exporters, as its own service account (OTEL_TRACES_EXPORTER=google_cloud_trace, OTEL_METRICS_EXPORTER=google_cloud_monitoring). False: only otel_exporter_otlp_endpoint, if set."
  default     = true
}

variable "otel_exporter_otlp_endpoint" {
  type        = string
  description = "Where every program sends its traces and metrics over OTLP (gRPC), e.g. an OpenTelemetry Collector that forwards to Cloud Trace and Cloud Monitoring (OTEL_EXPORTER_OTLP_ENDPOINT), where google_telemetry is false. Empty, with google_telemetry false: nothing is exported and instrumentation costs nothing."
  default     = ""
}

# --- backend --------------------------------------------------------------------

variable "backend_temporary_subscriptions" {
  type        = bool
  description = "Let the backend service account create, read and delete its own subscriptions to the completions topic, as sandrun's Go client and `sandrun exec` do. Pub/Sub has no IAM conditions, so this is granted on the project: see docs/deploy.md."
  default     = true
}

variable "backend_impersonators" {
  type        = list(string)
  description = "Principals (user:..., group:..., serviceAccount:...) allowed to act as the backend service account, for example to run `sandrun exec` with the backend's rights."
  default     = []
}

# --- alerts -----------------------------------------------------------------------

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) the alerts notify. Empty: incidents only show in the console."
  default     = []
}

variable "success_rate_objective" {
  type        = number
  description = "Fraction of requests a host must answer with status ok over 10 minutes; below it the success-rate alert fires."
  default     = 0.99

  validation {
    condition     = var.success_rate_objective > 0 && var.success_rate_objective < 1
    error_message = "success_rate_objective must be between 0 and 1."
  }
}

variable "end_to_end_p99_seconds" {
  type        = number
  description = "p99 of a request's end-to-end time (accepted by the dispatcher to answered by its host, the completion's timing.total_seconds) above which the latency alert fires. It includes the command's own run time."
  default     = 15
}

variable "error_rate_objective" {
  type        = number
  description = "Fraction of the messages the dispatcher handles that may end in error (rejected, dead-lettered, or nacked for redelivery) over 10 minutes; above it the error-rate alert fires."
  default     = 0.01

  validation {
    condition     = var.error_rate_objective > 0 && var.error_rate_objective < 1
    error_message = "error_rate_objective must be between 0 and 1."
  }
}
