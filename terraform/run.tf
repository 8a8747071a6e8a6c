# sandrun on Cloud Run: the host job and the dispatcher (whose process also
# runs the reaper's loop).

# The sandbox: one execution hosts one session. The dispatcher starts
# executions with RunJob, overriding SANDRUN_SESSION_ID and SANDRUN_LAUNCH_ID, and hand each the host's access token (iam.tf). The job
# runs as sandrun-sandbox, which holds nothing: the metadata server gives
# commands that account's token, not the host's.
resource "google_cloud_run_v2_job" "executor" {
  name                = local.names.executor_job
  location            = var.region
  deletion_protection = var.deletion_protection

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.sandbox.email
      timeout         = "${var.executor_task_timeout_hours * 3600}s"

      # A failed host is not retried by Cloud Run: the reaper answers its
      # running request HOST_LOST (never re-running it) and launches a new
      # host for queued ones.
      max_retries = 0

      # The second generation runs a full Linux kernel interface (job
      # control, /proc, background processes), which user commands expect.
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      # RunJob's environment overrides name this container
      # (jobrunner.ContainerName); Cloud Run refuses overrides naming a
      # container the job does not have, rather than dropping them.
      containers {
        name  = "executor"
        image = local.images.executor

        resources {
          limits = {
            cpu    = var.executor_cpu
            memory = var.executor_memory
          }
        }

        dynamic "env" {
          for_each = local.executor_env
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  # The host identity's grants, which the host uses through its token.
  depends_on = [
    google_project_service.apis,
    google_project_iam_member.executor_firestore,
    google_storage_bucket_iam_member.executor_objects,
    google_pubsub_topic_iam_member.executor_completions,
  ]
}

# The dispatcher pulls; it serves no HTTP, so it runs as a worker pool (Cloud
# Run's resource for pull-based work, in beta in provider 6.50) with a fixed
# number of instances and CPU always allocated. It also runs the reaper's
# loop (SANDRUN_REAPER, on by default), so that one always-on process is the
# whole control plane: no reaper job, no scheduler.
resource "google_cloud_run_v2_worker_pool" "dispatcher" {
  name                = local.names.dispatcher_pool
  location            = var.region
  launch_stage        = "BETA"
  deletion_protection = var.deletion_protection

  scaling {
    scaling_mode          = "MANUAL"
    manual_instance_count = var.dispatcher_instances
  }

  template {
    service_account = google_service_account.dispatcher.email

    containers {
      name  = "dispatcher"
      image = local.images.dispatcher

      resources {
        limits = {
          cpu    = var.dispatcher_cpu
          memory = var.dispatcher_memory
        }
      }

      dynamic "env" {
        for_each = local.dispatcher_env
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  # Without its grants the dispatcher would start, fail to pull and restart
  # until IAM caught up.
  depends_on = [
    google_project_service.apis,
    google_pubsub_subscription_iam_member.dispatcher_requests,
    google_pubsub_topic_iam_member.dispatcher_publishes,
    google_project_iam_member.dispatcher_firestore,
    google_storage_bucket_iam_member.dispatcher_objects,
    google_cloud_run_v2_job_iam_member.dispatcher_launches,
    google_cloud_run_v2_job_iam_member.dispatcher_lists,
    google_service_account_iam_member.dispatcher_host_tokens,
  ]
}
