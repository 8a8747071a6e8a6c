// Package outbox is what sandrun sends out through Pub/Sub: it publishes
// recorded completions (Relay: publish, then mark published, the one way
// every part hands a recorded answer to the backend) and dead letters, and
// creates the topics and subscriptions the local cloud needs (Terraform
// creates them in production).
//
// The queue of requests is not here: a session's inbox is in Firestore
// (package session). The outbox never decides what a request means (package
// api decodes and validates requests) nor records a completion: it sends
// what the session store recorded, so that a lost publish is found and
// repeated.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/retry"
)

// Default names of topics and subscriptions.
const (
	DefaultRequestsTopic          = "sandrun-requests"
	DefaultCompletionsTopic       = "sandrun-completions"
	DefaultDeadLettersTopic       = "sandrun-dead-letters"
	DefaultDispatcherSubscription = "sandrun-dispatcher"
	DefaultDeadLetterSubscription = "sandrun-dead-letters"
)

// MaxDeliveryAttempts is the dispatcher's subscription's dead-letter
// policy: the most Pub/Sub allows. Killed dispatchers' expiries, key-wide
// redelivery and the order gate's nacks all spend attempts of requests that
// did nothing wrong (one reached 9 of 10 in TestReliabilityDispatcherKilled);
// with the retry policy's backoff (1 s to 60 s), 100 attempts last about 1.5
// hours, far past any outage the dispatcher rides out, so only a message it
// can never handle reaches the dead-letter topic.
const MaxDeliveryAttempts = 100

// Attributes a dead letter carries besides the original message's.
const (
	AttrReason            = "reason"
	AttrOriginalMessageID = "original_message_id"
)

// Names are a deployment's topic and subscription ids.
type Names struct {
	Requests, Completions, DeadLetters string
	// Dispatcher is the dispatcher's subscription on Requests.
	Dispatcher string
	// DeadLetterSubscription keeps dead letters for people to read.
	DeadLetterSubscription string
}

// DefaultNames are the names the local cloud and the Terraform defaults use.
func DefaultNames() Names {
	return Names{
		Requests: DefaultRequestsTopic, Completions: DefaultCompletionsTopic, DeadLetters: DefaultDeadLettersTopic,
		Dispatcher: DefaultDispatcherSubscription, DeadLetterSubscription: DefaultDeadLetterSubscription,
	}
}

// Publisher publishes completions and dead letters.
type Publisher struct {
	client      *pubsub.Client
	completions *pubsub.Publisher
	deadLetters *pubsub.Publisher
	logger      *slog.Logger
}

// NewPublisher returns a publisher to the named topics. Call Stop when
// done.
func NewPublisher(client *pubsub.Client, names Names, logger *slog.Logger) *Publisher {
	q := &Publisher{client: client, logger: logger,
		completions: client.Publisher(names.Completions), deadLetters: client.Publisher(names.DeadLetters)}
	// A completion is awaited by someone: send it at once. A bundle of
	// one is handed to a sender as it is added; with more, each
	// completion waits for the batching delay (DelayThreshold) on a timer
	// whose goroutine wakes the sender, CPU a host pays per request. A
	// host publishes one completion at a time and waits for it, so there
	// is nothing to batch.
	q.completions.PublishSettings.CountThreshold = 1
	return q
}

// Stop flushes and stops the publishers.
func (q *Publisher) Stop() {
	q.completions.Stop()
	q.deadLetters.Stop()
}

// PublishCompletion publishes a recorded completion (its JSON as recorded)
// with its attributes, and returns once Pub/Sub has it.
func (q *Publisher) PublishCompletion(ctx context.Context, data []byte, traceparent string) error {
	var c api.Completion
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("publish completion: decode recorded completion: %w", err)
	}
	attrs := c.Attributes()
	if traceparent != "" {
		attrs[api.AttrTraceparent] = traceparent
	}
	what := "publish completion of request " + c.RequestID
	return retry.Do(ctx, retry.PubSub, q.logger, what, func(ctx context.Context) error {
		if _, err := q.completions.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs}).Get(ctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// DeadLetter publishes a message that is not a request to the dead-letter
// topic, with its data and attributes and a reason attribute.
func (q *Publisher) DeadLetter(ctx context.Context, m *pubsub.Message, reason string) error {
	attrs := make(map[string]string, len(m.Attributes)+2)
	for k, v := range m.Attributes {
		attrs[k] = v
	}
	attrs[AttrReason] = reason
	attrs[AttrOriginalMessageID] = m.ID
	what := "dead-letter message " + m.ID
	return retry.Do(ctx, retry.PubSub, q.logger, what, func(ctx context.Context) error {
		if _, err := q.deadLetters.Publish(ctx, &pubsub.Message{Data: m.Data, Attributes: attrs}).Get(ctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// Provision creates the topics and subscriptions of names that do not exist
// yet, configured as Terraform configures them: the dispatcher's
// subscription delivers in order per session and hands a message that keeps
// failing to the dead-letter topic.
func Provision(ctx context.Context, client *pubsub.Client, names Names) error {
	project := client.Project()
	topic := func(id string) string { return fmt.Sprintf("projects/%s/topics/%s", project, id) }
	sub := func(id string) string { return fmt.Sprintf("projects/%s/subscriptions/%s", project, id) }
	for _, id := range []string{names.Requests, names.Completions, names.DeadLetters} {
		_, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic(id)})
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("create topic %s: %w", id, err)
		}
	}
	subs := []*pubsubpb.Subscription{
		{
			Name: sub(names.Dispatcher), Topic: topic(names.Requests),
			EnableMessageOrdering: true, AckDeadlineSeconds: 60,
			DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic(names.DeadLetters), MaxDeliveryAttempts: MaxDeliveryAttempts},
			RetryPolicy:      &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(time.Second), MaximumBackoff: durationpb.New(60 * time.Second)},
		},
		{Name: sub(names.DeadLetterSubscription), Topic: topic(names.DeadLetters), AckDeadlineSeconds: 60},
	}
	for _, s := range subs {
		_, err := client.SubscriptionAdminClient.CreateSubscription(ctx, s)
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("create subscription %s: %w", s.Name, err)
		}
	}
	return nil
}
