package emulator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/emulator/faults"
	"github.com/sandrun/sandrun/emulator/official"
)

// The Pub/Sub fidelity scenarios: each runs on the local cloud's Pub/Sub
// and on Google's official emulator (skipped without gcloud, or with
// SANDRUN_FIDELITY_PUBSUB=off), and says where the two differ. Messages are
// pulled and acknowledged with unary RPCs so that what each server does is
// not blurred by a client library's batching.

const (
	local  = "local"
	google = "google"
)

// onBothPubSubs runs test against the local cloud's Pub/Sub and Google's
// emulator, each time in a project of its own. Google's is reached through
// the suite's proxy (Config.ExternalPubSub), as sandrun reaches it, so that
// faults reach it too.
func onBothPubSubs(t *testing.T, test func(t *testing.T, backend string, s *emulator.Suite, c *pubsub.Client)) {
	for _, backend := range []string{local, google} {
		t.Run(backend, func(t *testing.T) {
			var cfg emulator.Config
			if backend == google {
				cfg.ExternalPubSub = official.PubSub(t)
				cfg.Project = official.Project(t) // apart from other tests on that emulator
			}
			s := emulatortest.Start(t, cfg)
			test(t, backend, s, newPubSub(t, s))
		})
	}
}

// TestPubSubFaultsReachBoth: a fault rule fails the calls it names on the
// local Pub/Sub and on Google's emulator behind the proxy alike, and the
// calls it does not name pass.
func TestPubSubFaultsReachBoth(t *testing.T) {
	onBothPubSubs(t, func(t *testing.T, _ string, s *emulator.Suite, c *pubsub.Client) {
		createTopic(t, c, "requests")
		if err := s.Faults.Add(faults.Rule{Service: faults.PubSub, Method: "GetTopic", Rate: 1, Code: "PERMISSION_DENIED"}); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		name := fmt.Sprintf("projects/%s/topics/requests", c.Project())
		if _, err := c.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("GetTopic under the fault: %v, want PERMISSION_DENIED", err)
		}
		if _, err := c.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name + "-missing"}); err == nil {
			t.Fatalf("GetTopic of a missing topic under the fault: no error")
		}
		s.Faults.Clear("")
		if _, err := c.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name + "-missing"}); status.Code(err) != codes.NotFound {
			t.Fatalf("GetTopic of a missing topic: %v, want NOT_FOUND from the server", err)
		}
	})
}

// pulled is one delivery: the message's data, its ack id and its delivery
// attempt (0 when the server does not count).
type pulled struct {
	data    string
	ackID   string
	attempt int32
}

// pullN pulls until n messages arrived (or fails the test after a minute).
func pullN(t *testing.T, c *pubsub.Client, sub string, n int) []pulled {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got []pulled
	for len(got) < n {
		resp, err := c.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: int32(n - len(got))})
		if err != nil {
			t.Fatalf("pull %s after %d of %d messages: %v", sub, len(got), n, err)
		}
		for _, m := range resp.GetReceivedMessages() {
			got = append(got, pulled{string(m.GetMessage().GetData()), m.GetAckId(), m.GetDeliveryAttempt()})
		}
	}
	return got
}

func ack(t *testing.T, c *pubsub.Client, sub string, ps ...pulled) {
	t.Helper()
	if err := c.SubscriptionAdminClient.Acknowledge(context.Background(), &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ackIDs(ps)}); err != nil {
		t.Fatalf("acknowledge: %v", err)
	}
}

// nack sets the deliveries' deadline to 0, as the client libraries nack.
func nack(t *testing.T, c *pubsub.Client, sub string, ps ...pulled) {
	t.Helper()
	if err := c.SubscriptionAdminClient.ModifyAckDeadline(context.Background(), &pubsubpb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: ackIDs(ps)}); err != nil {
		t.Fatalf("nack: %v", err)
	}
}

func ackIDs(ps []pulled) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ackID)
	}
	return ids
}

func datas(ps []pulled) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.data)
	}
	return strings.Join(s, ",")
}

// publishKeyed publishes data in order with one ordering key.
func publishKeyed(t *testing.T, c *pubsub.Client, topic, key string, data ...string) {
	t.Helper()
	p := c.Publisher(topic)
	p.EnableMessageOrdering = true
	defer p.Stop()
	var rs []*pubsub.PublishResult
	for _, d := range data {
		rs = append(rs, p.Publish(context.Background(), &pubsub.Message{Data: []byte(d), OrderingKey: key}))
	}
	for _, r := range rs {
		if _, err := r.Get(context.Background()); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// TestPubSubOrderedRedelivery: m0, m1, m2 of one key are delivered
// together; m0 fails (nacked, or its 10 s deadline expires) while m1 and m2
// are acknowledged. Both servers deliver m0 again before anything later of
// the key. The local Pub/Sub then delivers m1 and m2 again too, as Google
// documents for its service (a redelivery resends the later messages of
// the key, acknowledged or not); Google's emulator redelivers m0 alone.
func TestPubSubOrderedRedelivery(t *testing.T) {
	for _, how := range []string{"nack", "expire"} {
		t.Run(how, func(t *testing.T) {
			onBothPubSubs(t, func(t *testing.T, backend string, _ *emulator.Suite, c *pubsub.Client) {
				topic := createTopic(t, c, "requests")
				sub := subName(c, "ordered")
				createSubscription(t, c, &pubsubpb.Subscription{Name: sub, Topic: topic, EnableMessageOrdering: true, AckDeadlineSeconds: 10})
				publishKeyed(t, c, "requests", "session-1", "m0", "m1", "m2")

				first := pullN(t, c, sub, 3)
				if got := datas(first); got != "m0,m1,m2" {
					t.Fatalf("first deliveries %s, want m0,m1,m2 (in order, the later ones before m0 is acknowledged)", got)
				}
				if how == "nack" {
					nack(t, c, sub, first[0])
				}
				ack(t, c, sub, first[1:]...)
				want := map[string]string{local: "m0,m1,m2", google: "m0"}[backend]
				again := pullN(t, c, sub, strings.Count(want, ",")+1)
				if got := datas(again); got != want {
					t.Fatalf("after m0's %s: redelivered %s, want %s", how, got, want)
				}
				ack(t, c, sub, again...)
			})
		})
	}
}

// TestPubSubDeadLetterCountsPerSubscription: a message refused on one
// subscription of a topic with two is dead-lettered once, after the
// policy's five attempts, while the other subscription receives it once;
// delivery_attempt counts 1 to 5. Google's emulator counts and stops
// delivering as the service does, but never publishes to the dead-letter
// topic, so that last step is checked on the local Pub/Sub only.
func TestPubSubDeadLetterCountsPerSubscription(t *testing.T) {
	onBothPubSubs(t, func(t *testing.T, backend string, _ *emulator.Suite, c *pubsub.Client) {
		topic := createTopic(t, c, "requests")
		dead := createTopic(t, c, "dead-letters")
		refusing, other, deadSub := subName(c, "refusing"), subName(c, "other"), subName(c, "dead-letters")
		createSubscription(t, c, &pubsubpb.Subscription{Name: refusing, Topic: topic, AckDeadlineSeconds: 10,
			DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dead, MaxDeliveryAttempts: 5}})
		createSubscription(t, c, &pubsubpb.Subscription{Name: other, Topic: topic, AckDeadlineSeconds: 10})
		createSubscription(t, c, &pubsubpb.Subscription{Name: deadSub, Topic: dead, AckDeadlineSeconds: 10})
		publishKeyed(t, c, "requests", "", "poison")

		for attempt := int32(1); attempt <= 5; attempt++ {
			got := pullN(t, c, refusing, 1)[0]
			if got.data != "poison" || got.attempt != attempt {
				t.Fatalf("delivery %d: %q with delivery_attempt %d, want poison with %d", attempt, got.data, got.attempt, attempt)
			}
			nack(t, c, refusing, got)
		}
		// The message is no longer delivered there: a message published
		// after it comes next.
		publishKeyed(t, c, "requests", "", "marker")
		if got := pullN(t, c, refusing, 1); got[0].data != "marker" {
			t.Fatalf("after five refusals %s got %q, want the marker", refusing, got[0].data)
		} else {
			ack(t, c, refusing, got...)
		}
		if got := pullN(t, c, other, 2); datas(got) != "poison,marker" || got[0].attempt != 0 {
			t.Fatalf("other subscription got %+v, want poison once (without a delivery attempt), then the marker", got)
		} else {
			ack(t, c, other, got...)
		}
		if backend == google {
			// Its emulator drops the message instead: nothing reached the
			// dead-letter subscription within a minute when tried.
			return
		}
		// A marker published after the forward: what the dead-letter
		// subscription holds before it is every copy that was forwarded.
		publishKeyed(t, c, "dead-letters", "", "marker")
		got := pullN(t, c, deadSub, 2)
		if datas(got) != "poison,marker" {
			t.Fatalf("dead-letter subscription holds %s, want poison once, then the marker", datas(got))
		}
		ack(t, c, deadSub, got...)
	})
}

// TestPubSubNamesAndLimits: the local cloud's Pub/Sub rejects what Google's
// rejects (names, dead-letter attempts, oversized publishes) and accepts
// what it accepts.
func TestPubSubNamesAndLimits(t *testing.T) {
	onBothPubSubs(t, func(t *testing.T, _ string, _ *emulator.Suite, c *pubsub.Client) {
		ctx := context.Background()
		topic := func(id string) string { return fmt.Sprintf("projects/%s/topics/%s", c.Project(), id) }
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
			_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subName(c, tc.id), Topic: topic("requests"),
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
