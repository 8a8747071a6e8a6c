# Topics and subscriptions, configured as internal/outbox.Provision creates
# them on the local cloud.

resource "google_pubsub_topic" "requests" {
  name = local.names.requests_topic

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "completions" {
  name = local.names.completions_topic

  depends_on = [google_project_service.apis]
}

# Messages that are not requests at all (the dispatcher publishes them with
# a reason attribute) and requests Pub/Sub gave up delivering.
resource "google_pubsub_topic" "dead_letters" {
  name = local.names.dead_letter_topic

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "dispatcher" {
  name  = local.names.dispatcher_subscription
  topic = google_pubsub_topic.requests.id

  # Requests are published with ordering key = session_id; ordered delivery
  # is what keeps a session's commands in the order they were sent.
  enable_message_ordering = true

  # The Go client extends deadlines while a message is handled; 60 s covers
  # a dispatcher that dies holding one.
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  # A message the dispatcher keeps failing on must not block its session's
  # ordering key for ever. The most attempts Pub/Sub allows: killed
  # dispatchers and the order gate spend attempts of healthy requests too
  # (docs/reliability.md), and with the retry backoff 100 attempts last
  # about 1.5 hours. Kept equal to queue.MaxDeliveryAttempts.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letters.id
    max_delivery_attempts = 100
  }

  retry_policy {
    minimum_backoff = "1s"
    maximum_backoff = "60s"
  }

  # The default expiry deletes a subscription after 31 idle days.
  expiration_policy {
    ttl = ""
  }
}

# Keeps dead letters for people to read.
resource "google_pubsub_subscription" "dead_letters" {
  name                       = local.names.dead_letter_sub
  topic                      = google_pubsub_topic.dead_letters.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

# A standing subscription to the completions topic for a backend that reads
# completions from one place (client.Config.Subscription). Pub/Sub hands each
# message to one of a subscription's readers, so a backend with several
# replicas awaiting their own requests uses a subscription per replica
# instead (the client's temporary subscriptions).
resource "google_pubsub_subscription" "backend" {
  name                       = local.names.backend_subscription
  topic                      = google_pubsub_topic.completions.id
  ack_deadline_seconds       = 30
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}
