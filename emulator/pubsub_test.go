package emulator_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
)

func newPubSub(t *testing.T, s *emulator.Suite) *pubsub.Client {
	t.Helper()
	c, err := pubsub.NewClient(context.Background(), s.Project)
	if err != nil {
		t.Fatalf("pubsub client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func createTopic(t *testing.T, c *pubsub.Client, id string) string {
	t.Helper()
	name := fmt.Sprintf("projects/%s/topics/%s", c.Project(), id)
	if _, err := c.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: name}); err != nil {
		t.Fatalf("create topic %s: %v", id, err)
	}
	return name
}

func createSubscription(t *testing.T, c *pubsub.Client, sub *pubsubpb.Subscription) {
	t.Helper()
	if _, err := c.SubscriptionAdminClient.CreateSubscription(context.Background(), sub); err != nil {
		t.Fatalf("create subscription %s: %v", sub.Name, err)
	}
}

func subName(c *pubsub.Client, id string) string {
	return fmt.Sprintf("projects/%s/subscriptions/%s", c.Project(), id)
}

// receive runs Receive until n messages arrived or the deadline passes, and
// returns them in the order they were handed over.
func receive(t *testing.T, sub *pubsub.Subscriber, n int, ack bool) []*pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []*pubsub.Message
	err := sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		if ack {
			m.Ack()
		} else {
			m.Nack()
		}
		if len(got) >= n {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < n {
		t.Fatalf("received %d messages before the deadline, want %d", len(got), n)
	}
	return got
}

func TestPubSubOrderingAndFilter(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{})
	c := newPubSub(t, s)
	topic := createTopic(t, c, "requests")
	createSubscription(t, c, &pubsubpb.Subscription{
		Name: subName(c, "dispatcher"), Topic: topic, EnableMessageOrdering: true,
		Filter: `attributes.kind = "keep"`, AckDeadlineSeconds: 10,
	})

	pub := c.Publisher(topic)
	pub.EnableMessageOrdering = true
	t.Cleanup(pub.Stop)
	const perKey = 30
	var results []*pubsub.PublishResult
	for i := range perKey {
		for _, key := range []string{"a", "b"} {
			results = append(results, pub.Publish(context.Background(), &pubsub.Message{
				Data: []byte(fmt.Sprintf("%s-%02d", key, i)), OrderingKey: key,
				Attributes: map[string]string{"kind": "keep"},
			}))
		}
		results = append(results, pub.Publish(context.Background(), &pubsub.Message{
			Data: []byte("dropped"), OrderingKey: "a", Attributes: map[string]string{"kind": "drop"},
		}))
	}
	for _, r := range results {
		if _, err := r.Get(context.Background()); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}

	got := receive(t, c.Subscriber(subName(c, "dispatcher")), 2*perKey, true)
	next := map[string]int{}
	for _, m := range got {
		if m.Attributes["kind"] != "keep" {
			t.Fatalf("filtered message delivered: %s", m.Data)
		}
		want := fmt.Sprintf("%s-%02d", m.OrderingKey, next[m.OrderingKey])
		if string(m.Data) != want {
			t.Fatalf("key %s: got %s, want %s (out of order)", m.OrderingKey, m.Data, want)
		}
		next[m.OrderingKey]++
	}
}

func TestPubSubDeadLetter(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{})
	c := newPubSub(t, s)
	topic := createTopic(t, c, "requests")
	dead := createTopic(t, c, "dead-letters")
	createSubscription(t, c, &pubsubpb.Subscription{
		Name: subName(c, "dispatcher"), Topic: topic, AckDeadlineSeconds: 10,
		DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dead, MaxDeliveryAttempts: 5},
		RetryPolicy:      &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(0), MaximumBackoff: durationpb.New(0)},
	})
	createSubscription(t, c, &pubsubpb.Subscription{Name: subName(c, "dead-letters"), Topic: dead, AckDeadlineSeconds: 10})

	pub := c.Publisher(topic)
	t.Cleanup(pub.Stop)
	if _, err := pub.Publish(context.Background(), &pubsub.Message{Data: []byte("poison")}).Get(context.Background()); err != nil {
		t.Fatalf("publish: %v", err)
	}
	// Every delivery is refused; after five the message moves on.
	nacked := receive(t, c.Subscriber(subName(c, "dispatcher")), 5, false)
	last := nacked[len(nacked)-1]
	if last.DeliveryAttempt == nil || *last.DeliveryAttempt != 5 {
		t.Fatalf("fifth delivery attempt is %v, want 5", last.DeliveryAttempt)
	}
	got := receive(t, c.Subscriber(subName(c, "dead-letters")), 1, true)
	if string(got[0].Data) != "poison" {
		t.Fatalf("dead letter holds %q, want poison", got[0].Data)
	}
}
