package emulator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/emulator/official"
)

// TestPubSubNamesAndLimits: the local cloud's Pub/Sub rejects what Google's
// rejects (names, dead-letter attempts, oversized publishes) and accepts
// what it accepts; the same cases run on Google's official emulator
// (skipped without gcloud).
func TestPubSubNamesAndLimits(t *testing.T) {
	for _, backend := range []string{"local", "google"} {
		t.Run(backend, func(t *testing.T) {
			var cfg emulator.Config
			if backend == "google" {
				cfg.Project = official.Project(t) // apart from other tests on that emulator
			}
			s := emulatortest.Start(t, cfg)
			if backend == "google" {
				t.Setenv(emulator.EnvPubSub, official.PubSub(t))
			}
			c := newPubSub(t, s)
			ctx := context.Background()
			topic := func(id string) string { return fmt.Sprintf("projects/%s/topics/%s", s.Project, id) }
			sub := func(id string) string { return fmt.Sprintf("projects/%s/subscriptions/%s", s.Project, id) }
			for _, tc := range []struct {
				id string
				ok bool
			}{{"requests", true}, {"a.b_c-d~e+f%20", true}, {"goog-requests", false}, {"Google", true}, {"ab", false}, {"1abc", false}, {strings.Repeat("a", 256), false}} {
				_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic(tc.id)})
				if (err == nil) != tc.ok || (err != nil && status.Code(err) != codes.InvalidArgument) {
					t.Errorf("create topic %.20q: %v; want ok=%v (else INVALID_ARGUMENT)", tc.id, err, tc.ok)
				}
			}
			for _, tc := range []struct {
				id       string
				attempts int32
				want     codes.Code
			}{{"sub-5", 5, codes.OK}, {"sub-100", 100, codes.OK}, {"sub-4", 4, codes.OutOfRange}, {"sub-101", 101, codes.OutOfRange}, {"goog-sub", 5, codes.InvalidArgument}} {
				_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub(tc.id), Topic: topic("requests"),
					DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: topic("a.b_c-d~e+f%20"), MaxDeliveryAttempts: tc.attempts}})
				if status.Code(err) != tc.want {
					t.Errorf("create subscription %s (dead letter after %d attempts): %v; want %v", tc.id, tc.attempts, err, tc.want)
				}
			}
			p := c.Publisher("requests")
			defer p.Stop()
			if _, err := p.Publish(ctx, &pubsub.Message{Data: make([]byte, 9<<20)}).Get(ctx); err != nil {
				t.Errorf("publish 9 MiB: %v", err)
			}
			if _, err := p.Publish(ctx, &pubsub.Message{Data: make([]byte, 10<<20+1)}).Get(ctx); err == nil {
				t.Errorf("publish of 10 MiB + 1 byte accepted")
			}
		})
	}
}
