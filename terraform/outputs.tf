# What a backend (and docs/deploy.md) needs to reach this deployment.

output "project" {
  description = "The project of the deployment."
  value       = var.project
}

output "region" {
  description = "The region of the Cloud Run workloads."
  value       = var.region
}

output "requests_topic" {
  description = "Topic id to publish requests to, with ordering key = session_id (SANDRUN_REQUESTS_TOPIC)."
  value       = google_pubsub_topic.requests.name
}

output "completions_topic" {
  description = "Topic id of completions (SANDRUN_COMPLETIONS_TOPIC)."
  value       = google_pubsub_topic.completions.name
}

output "completions_subscription" {
  description = "A standing subscription to the completions topic that the backend service account may read (client.Config.Subscription)."
  value       = google_pubsub_subscription.backend.name
}

output "dead_letter_subscription" {
  description = "Subscription that keeps dead letters for people to read."
  value       = google_pubsub_subscription.dead_letters.name
}

output "bucket" {
  description = "Bucket of the sessions' state; completions name their full outputs in it as gs:// URIs."
  value       = google_storage_bucket.sessions.name
}

output "backend_service_account" {
  description = "Service account a backend runs as (or impersonates) to publish requests and read completions and outputs."
  value       = google_service_account.backend.email
}

output "executor_job" {
  description = "Cloud Run job whose executions host sessions."
  value       = google_cloud_run_v2_job.executor.name
}

output "dispatcher_worker_pool" {
  description = "Cloud Run worker pool of the dispatcher."
  value       = google_cloud_run_v2_worker_pool.dispatcher.name
}

output "image_repository" {
  description = "Artifact Registry path the images are pushed to (cloudbuild.yaml's _REPOSITORY is its last segment)."
  value       = local.registry
}

output "build_service_account" {
  description = "Service account to run deploy/cloudbuild.yaml as (gcloud builds submit --service-account)."
  value       = google_service_account.build.id
}

output "build_staging_dir" {
  description = "Where gcloud builds submit uploads the source (--gcs-source-staging-dir)."
  value       = "gs://${google_storage_bucket.build_sources.name}/source"
}

output "backend_env" {
  description = "Environment for sandrun's client commands (sandrun exec, sandrun session) against this deployment."
  value = {
    SANDRUN_PROJECT           = var.project
    SANDRUN_REQUESTS_TOPIC    = google_pubsub_topic.requests.name
    SANDRUN_COMPLETIONS_TOPIC = google_pubsub_topic.completions.name
  }
}
