// Command gobackend runs one command in a sandrun session over Pub/Sub, as
// a backend would, and prints the output. It is the Go example of
// docs/protocol.md.
//
//	eval "$(cat ~/.sandrun/dev.env)"   # the local cloud of `sandrun dev`
//	go run ./api/examples/gobackend -session demo -- 'echo hello; pwd'
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/client"
)

func main() {
	session := flag.String("session", "demo", "session id")
	flag.Parse()
	project := firstSet(os.Getenv("SANDRUN_PROJECT"), os.Getenv("GOOGLE_CLOUD_PROJECT"), "sandrun-local")
	requests := firstSet(os.Getenv("SANDRUN_REQUESTS_TOPIC"), "sandrun-requests")
	completions := firstSet(os.Getenv("SANDRUN_COMPLETIONS_TOPIC"), "sandrun-completions")

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	c, err := run(ctx, project, requests, completions, *session, strings.Join(flag.Args(), " "))
	if err != nil {
		log.Fatal(err)
	}
	// A completion over api.MaxCompletionBytes of JSON arrives as a
	// summary; the whole one is in the Cloud Storage object it names.
	if c, err = client.FetchResult(ctx, c); err != nil {
		log.Fatal(err)
	}
	stdout, _ := c.StdoutData() // decodes base64 output
	stderr, _ := c.StderrData()
	os.Stdout.Write(stdout)
	os.Stderr.Write(stderr)
	if c.StdoutObject != "" {
		fmt.Fprintf(os.Stderr, "(the whole stdout, %d bytes, is in %s)\n", c.StdoutBytes, c.StdoutObject)
	}
	code := c.ExitCode
	if c.Status == api.StatusError {
		fmt.Fprintf(os.Stderr, "%s: %s\n", c.Error.Code, c.Error.Message)
		if code <= 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// run publishes one exec request and returns its completion.
func run(ctx context.Context, project, requestsTopic, completionsTopic, sessionID, command string) (*api.Completion, error) {
	// With PUBSUB_EMULATOR_HOST set, the client talks to the local cloud.
	client, err := pubsub.NewClient(ctx, project)
	if err != nil {
		return nil, err
	}
	defer client.Close()

	// Subscribe before publishing, so that no completion is missed. This
	// subscription receives the completions of this session only.
	sub := fmt.Sprintf("projects/%s/subscriptions/backend-%s-%s", project, sessionID, rand.Text()[:8])
	_, err = client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:               sub,
		Topic:              fmt.Sprintf("projects/%s/topics/%s", project, completionsTopic),
		Filter:             fmt.Sprintf("attributes.session_id = %q", sessionID),
		AckDeadlineSeconds: 60,
		// An abandoned subscription goes away by itself after a day.
		ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(24 * time.Hour)},
	})
	if err != nil {
		return nil, fmt.Errorf("create subscription: %w", err)
	}
	defer client.SubscriptionAdminClient.DeleteSubscription(context.WithoutCancel(ctx),
		&pubsubpb.DeleteSubscriptionRequest{Subscription: sub})

	// Publish the request with ordering key = session_id and its attributes.
	req := api.Request{
		RequestID: rand.Text(), // any unique id of 1-128 [A-Za-z0-9._:-]
		SessionID: sessionID, Op: api.OpExec, Command: command, TimeoutSeconds: 60,
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(&req)
	if err != nil {
		return nil, err
	}
	publisher := client.Publisher(requestsTopic)
	publisher.EnableMessageOrdering = true
	defer publisher.Stop()
	msg := &pubsub.Message{Data: data, Attributes: req.Attributes(), OrderingKey: req.SessionID}
	if _, err := publisher.Publish(ctx, msg).Get(ctx); err != nil {
		// A failed publish pauses the ordering key until it is resumed.
		publisher.ResumePublish(req.SessionID)
		return nil, fmt.Errorf("publish request %s: %w", req.RequestID, err)
	}

	// Receive until this request's completion arrives. Completions of other
	// requests of the session are routed by request_id (here: skipped), and
	// copies of one completion are the same, so the first one is kept.
	rctx, stop := context.WithTimeout(ctx, 10*time.Minute)
	defer stop()
	var (
		mu   sync.Mutex
		done *api.Completion
	)
	err = client.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		if m.Attributes[api.AttrRequestID] != req.RequestID {
			return
		}
		var c api.Completion
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if done == nil {
			done = &c
			stop()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if done != nil {
		return done, nil
	}
	if err == nil {
		err = rctx.Err()
	}
	return nil, errors.Join(fmt.Errorf("no completion for request %s", req.RequestID), err)
}

func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
