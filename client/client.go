// Package client is how a Go backend uses sandrun: it publishes requests to
// the requests topic (ordering key = session_id) and hands back each
// request's completion from the completions topic, once, however often
// Pub/Sub delivers it.
//
//	c, err := client.New(ctx, client.Config{Project: "my-project"})
//	...
//	defer c.Close()
//	done, err := c.Do(ctx, &api.Request{RequestID: uuid.NewString(), SessionID: "s1", Op: api.OpExec, Command: "ls"})
//
// Against the local cloud, set PUBSUB_EMULATOR_HOST and
// STORAGE_EMULATOR_HOST as `sandrun emulator` prints them; the Google clients
// underneath honour them.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/storage"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/retry"
	"github.com/sandrun/sandrun/internal/telemetry"
)

// Config says where sandrun is.
type Config struct {
	// Project is the Google Cloud project of the topics.
	Project string
	// RequestsTopic and CompletionsTopic default to sandrun-requests and
	// sandrun-completions.
	RequestsTopic    string
	CompletionsTopic string
	// Subscription is an existing subscription to the completions topic
	// that this client alone reads. When empty, New creates a temporary
	// one (deleted by Close, and expiring by itself if Close never runs).
	Subscription string
	// Filter, for a temporary subscription, selects the completions it
	// receives, as in `attributes.session_id = "s1"`.
	Filter string
	// Bucket is the deployment's bucket, where Stage puts files for
	// file.upload (default sandrun-local, the local cloud's).
	Bucket string
}

// Client publishes requests and awaits their completions. It is safe for
// concurrent use.
type Client struct {
	ps        *pubsub.Client
	cfg       Config
	publisher *pubsub.Publisher
	subName   string
	temporary bool

	mu        sync.Mutex
	waiters   map[string]chan *api.Completion
	delivered *recentSet

	cancel  context.CancelFunc
	done    chan struct{}
	recvErr error
}

// New connects to sandrun's topics and starts receiving completions.
func New(ctx context.Context, cfg Config, opts ...option.ClientOption) (*Client, error) {
	if cfg.Project == "" {
		return nil, errors.New("sandrun client: no project given")
	}
	if cfg.RequestsTopic == "" {
		cfg.RequestsTopic = "sandrun-requests"
	}
	if cfg.CompletionsTopic == "" {
		cfg.CompletionsTopic = "sandrun-completions"
	}
	if cfg.Bucket == "" {
		cfg.Bucket = "sandrun-local"
	}
	ps, err := pubsub.NewClient(ctx, cfg.Project, opts...)
	if err != nil {
		return nil, fmt.Errorf("sandrun client: connect to Pub/Sub: %w", err)
	}
	c := &Client{ps: ps, cfg: cfg, waiters: map[string]chan *api.Completion{}, delivered: newRecentSet(100000), done: make(chan struct{})}
	c.publisher = ps.Publisher(cfg.RequestsTopic)
	c.publisher.EnableMessageOrdering = true
	// A request is awaited: send it at once rather than after the default
	// batching delay.
	c.publisher.PublishSettings.DelayThreshold = time.Millisecond

	c.subName = cfg.Subscription
	if c.subName == "" {
		c.subName, err = createTemporarySubscription(ctx, ps, cfg)
		if err != nil {
			c.publisher.Stop()
			ps.Close()
			return nil, err
		}
		c.temporary = true
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	go c.receive(rctx)
	return c, nil
}

func createTemporarySubscription(ctx context.Context, ps *pubsub.Client, cfg Config) (string, error) {
	suffix := make([]byte, 6)
	rand.Read(suffix)
	name := fmt.Sprintf("projects/%s/subscriptions/sandrun-client-%s", cfg.Project, hex.EncodeToString(suffix))
	topic := cfg.CompletionsTopic
	if !strings.Contains(topic, "/") {
		topic = fmt.Sprintf("projects/%s/topics/%s", cfg.Project, topic)
	}
	_, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: name, Topic: topic, Filter: cfg.Filter, AckDeadlineSeconds: 30,
		// Pub/Sub's shortest expiry: an abandoned subscription goes away.
		ExpirationPolicy: &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(24 * time.Hour)},
	})
	if err != nil {
		return "", fmt.Errorf("sandrun client: create subscription to %s: %w", topic, err)
	}
	return name, nil
}

func (c *Client) receive(ctx context.Context) {
	defer close(c.done)
	sub := c.ps.Subscriber(c.subName)
	// Pub/Sub may end the stream (UNKNOWN, UNAVAILABLE): pull again.
	err := retry.Reconnect(ctx, retry.Stream, nil, "receive completions", func(ctx context.Context) error {
		return sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
			m.Ack()
			var done api.Completion
			if err := json.Unmarshal(m.Data, &done); err != nil || done.RequestID == "" {
				return // not a completion; nothing awaits it
			}
			c.deliver(&done)
		})
	})
	c.mu.Lock()
	c.recvErr = err
	c.mu.Unlock()
}

// deliver hands a completion to its waiter, once per request id.
func (c *Client) deliver(done *api.Completion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.delivered.add(done.RequestID) {
		return // a repeat: the first one was handed over already
	}
	if w, ok := c.waiters[done.RequestID]; ok {
		w <- done
		delete(c.waiters, done.RequestID)
	}
}

// ErrTooLarge is wrapped by the error of Send and Do for a request whose
// JSON is over api.MaxRequestBytes: it is refused before it is published.
var ErrTooLarge = errors.New("request too large")

// Send publishes a request without waiting for its completion. A request
// over api.MaxRequestBytes is not published: the error wraps ErrTooLarge.
func (c *Client) Send(ctx context.Context, req *api.Request) (err error) {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request %s: %w", req.RequestID, err)
	}
	if len(data) > api.MaxRequestBytes {
		// The dispatcher would only answer INVALID_ARGUMENT.
		return fmt.Errorf("request %s is %d bytes of JSON; the limit is %d (api.MaxRequestBytes; send large content with Stage and file.upload): %w",
			req.RequestID, len(data), api.MaxRequestBytes, ErrTooLarge)
	}
	// The request's trace starts here (or goes on from the caller's span):
	// its traceparent attribute carries it to the dispatcher.
	ctx, span := telemetry.Start(ctx, "sandrun.publish "+string(req.Op), trace.SpanKindProducer,
		attribute.String("sandrun.session_id", req.SessionID), attribute.String("sandrun.request_id", req.RequestID), attribute.String("sandrun.op", string(req.Op)))
	defer func() { telemetry.End(span, err) }()
	attrs := req.Attributes()
	if tp := telemetry.Traceparent(ctx); tp != "" {
		attrs[api.AttrTraceparent] = tp
	}
	msg := &pubsub.Message{Data: data, Attributes: attrs, OrderingKey: req.SessionID}
	if _, err := c.publisher.Publish(ctx, msg).Get(ctx); err != nil {
		// A failed publish pauses the session's ordering key; resume it so
		// that the caller may retry.
		c.publisher.ResumePublish(req.SessionID)
		return fmt.Errorf("publish request %s: %w", req.RequestID, err)
	}
	return nil
}

// Do publishes a request and waits for its completion until ctx ends. A
// completion too large for a message (api.MaxCompletionBytes) arrives as a
// summary naming its result object: Do reads the whole completion from
// that object (as ReadObject does) and returns it.
func (c *Client) Do(ctx context.Context, req *api.Request) (*api.Completion, error) {
	wait := c.expect(req.RequestID)
	if err := c.Send(ctx, req); err != nil {
		c.forget(req.RequestID)
		return nil, err
	}
	done, err := c.await(ctx, req.RequestID, wait)
	if err != nil || done.ResultObject == "" {
		return done, err
	}
	return FetchResult(ctx, done)
}

// FetchResult returns the whole completion that a summary's result object
// holds, or done itself when it names none.
func FetchResult(ctx context.Context, done *api.Completion, opts ...option.ClientOption) (*api.Completion, error) {
	if done.ResultObject == "" {
		return done, nil
	}
	r, err := ReadObject(ctx, done.ResultObject, opts...)
	if err != nil {
		return nil, fmt.Errorf("fetch the completion of request %s: %w", done.RequestID, err)
	}
	defer r.Close()
	var whole api.Completion
	if err := json.NewDecoder(r).Decode(&whole); err != nil {
		return nil, fmt.Errorf("decode the completion of request %s from %s: %w", done.RequestID, done.ResultObject, err)
	}
	return &whole, nil
}

// expect registers interest in a request's completion before it is sent,
// so that a fast completion is not missed.
func (c *Client) expect(requestID string) chan *api.Completion {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := make(chan *api.Completion, 1)
	c.waiters[requestID] = w
	return w
}

func (c *Client) forget(requestID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.waiters, requestID)
}

func (c *Client) await(ctx context.Context, requestID string, w chan *api.Completion) (*api.Completion, error) {
	select {
	case done := <-w:
		return done, nil
	case <-ctx.Done():
		c.forget(requestID)
		return nil, fmt.Errorf("await completion of request %s: %w", requestID, ctx.Err())
	case <-c.done:
		c.mu.Lock()
		err := c.recvErr
		c.mu.Unlock()
		return nil, fmt.Errorf("await completion of request %s: receiving stopped: %v", requestID, err)
	}
}

// Stage uploads what r holds to the object a file.upload request names:
// gs://BUCKET/sessions/SESSION/transfers/REQUEST/NAME, streaming it, and
// returns that name for the request's object field.
func (c *Client) Stage(ctx context.Context, sessionID, requestID, name string, r io.Reader, opts ...option.ClientOption) (string, error) {
	gcs, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return "", fmt.Errorf("stage %s: connect to Cloud Storage: %w", name, err)
	}
	defer gcs.Close()
	object := "sessions/" + sessionID + "/transfers/" + requestID + "/" + name
	w := gcs.Bucket(c.cfg.Bucket).Object(object).NewWriter(ctx)
	w.ContentType = "application/octet-stream"
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return "", fmt.Errorf("stage %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("stage %s: %w", name, err)
	}
	return "gs://" + c.cfg.Bucket + "/" + object, nil
}

// ReadObject streams a Cloud Storage object that a completion names
// (gs://bucket/name), such as the whole output of a long command.
func ReadObject(ctx context.Context, uri string, opts ...option.ClientOption) (io.ReadCloser, error) {
	bucket, name, ok := strings.Cut(strings.TrimPrefix(uri, "gs://"), "/")
	if !strings.HasPrefix(uri, "gs://") || !ok {
		return nil, fmt.Errorf("read object: %q is not a gs://bucket/name", uri)
	}
	gcs, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("read object: connect to Cloud Storage: %w", err)
	}
	r, err := gcs.Bucket(bucket).Object(name).NewReader(ctx)
	if err != nil {
		gcs.Close()
		return nil, fmt.Errorf("read object %s: %w", uri, err)
	}
	return objectReader{r, gcs}, nil
}

type objectReader struct {
	*storage.Reader
	gcs *storage.Client
}

func (o objectReader) Close() error { return errors.Join(o.Reader.Close(), o.gcs.Close()) }

// Close stops receiving, deletes a temporary subscription and closes the
// connections.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	c.publisher.Stop()
	var errs []error
	if c.temporary {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.ps.SubscriptionAdminClient.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: c.subName}); err != nil {
			errs = append(errs, fmt.Errorf("delete subscription %s: %w", c.subName, err))
		}
	}
	errs = append(errs, c.ps.Close())
	return errors.Join(errs...)
}

// recentSet remembers up to max strings, forgetting the oldest first.
type recentSet struct {
	max   int
	seen  map[string]bool
	order []string
}

func newRecentSet(max int) *recentSet { return &recentSet{max: max, seen: map[string]bool{}} }

// add reports whether s was new.
func (r *recentSet) add(s string) bool {
	if r.seen[s] {
		return false
	}
	r.seen[s] = true
	r.order = append(r.order, s)
	if len(r.order) > r.max {
		delete(r.seen, r.order[0])
		r.order = r.order[1:]
	}
	return true
}
