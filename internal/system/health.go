package system

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandrun/sandrun/internal/health"
	"github.com/sandrun/sandrun/internal/jobrunner"
)

// HTTP is the operational HTTP server of a dispatcher or a reaper: /live,
// /health, /ready and /metrics (see package health).
type HTTP struct {
	// Addr is where to serve (host:port); empty serves nothing.
	Addr string
	// Metrics serves /metrics (package telemetry/prometheus's handler), or
	// is nil.
	Metrics http.Handler
}

// readyDoc is what the Firestore check reads: a document that never
// exists (no session id starts with an underscore), so the read is one
// cheap lookup answered NOT_FOUND.
const readyDoc = "sessions/_ready"

// checks are the readiness checks of a program connected by s: Firestore,
// the completions topic, the dispatcher's subscription when subscription
// is set, and the host job on Cloud Run. Each only reads. An answer of
// PERMISSION_DENIED counts as reachable: the service answered, and the
// deployment grants the programs what they do (publish, pull, run), not
// reading topics, subscriptions or jobs.
func checks(c *Config, s *services, runner *jobrunner.Runner, subscription bool) []health.Check {
	ps := s.clients.PubSub
	out := []health.Check{
		{Name: "firestore", Run: func(ctx context.Context) error {
			_, err := s.clients.Firestore.Doc(readyDoc).Get(ctx)
			if status.Code(err) == codes.NotFound {
				return nil
			}
			return answered(err, "read Firestore document "+readyDoc)
		}},
		{Name: "pubsub.topic", Run: func(ctx context.Context) error {
			name := fmt.Sprintf("projects/%s/topics/%s", c.Project, c.Names.Completions)
			_, err := ps.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name})
			return answered(err, "get topic "+name)
		}},
		{Name: "cloudrun.job", Run: func(ctx context.Context) error {
			return answered(runner.CheckJob(ctx), "")
		}},
	}
	if subscription {
		out = append(out, health.Check{Name: "pubsub.subscription", Run: func(ctx context.Context) error {
			name := fmt.Sprintf("projects/%s/subscriptions/%s", c.Project, c.Names.Dispatcher)
			_, err := ps.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
			return answered(err, "get subscription "+name)
		}})
	}
	return out
}

// answered turns a check's error into its verdict: nil when the service
// answered, even to refuse the read.
func answered(err error, what string) error {
	switch {
	case err == nil, status.Code(err) == codes.PermissionDenied:
		return nil
	case what != "":
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}

// startHTTP serves cfg with checks when cfg.Addr is set. stop shuts the
// server down, bounded by health.ShutdownTimeout.
func startHTTP(ctx context.Context, cfg HTTP, checks []health.Check, logger *slog.Logger) (srv *health.Server, stop func(), err error) {
	if cfg.Addr == "" {
		return nil, func() {}, nil
	}
	srv, err = health.Listen(health.Config{Addr: cfg.Addr, Checks: checks, Metrics: cfg.Metrics, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return srv, func() {
		if err := srv.Shutdown(context.WithoutCancel(ctx)); err != nil {
			logger.Warn("health server did not stop cleanly", "event", "http.shutdown_failed", "error", err.Error())
		}
	}, nil
}
