package pubsub

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Options configure a Server.
type Options struct {
	// Tick is how often ack deadlines and backoffs are checked (default
	// 50 ms): a deadline expires at most this late.
	Tick time.Duration
	// Logger receives dead-lettering events (default: discard).
	Logger *slog.Logger
}

// Server is the local Pub/Sub: the Publisher and Subscriber services, in
// memory. Create it with New, register it on a gRPC server with Register,
// and Close it before stopping that server (Close ends open streams).
type Server struct {
	pubsubpb.UnimplementedPublisherServer
	pubsubpb.UnimplementedSubscriberServer

	logger *slog.Logger

	mu     sync.Mutex
	topics map[string]*topic
	subs   map[string]*subscription
	nextID int64 // message ids, ack ids and publish order

	done    chan struct{}
	stopped chan struct{}
}

type topic struct {
	pb   *pubsubpb.Topic
	subs map[string]*subscription
}

type subscription struct {
	pb          *pubsubpb.Subscription
	project, id string
	filter      filter
	queues      map[string]*queue
	acks        map[string]*entry // outstanding deliveries by ack id
	// wake is closed (and replaced) when something may have become
	// deliverable; wakeAt is when the next backoff ends.
	wake    chan struct{}
	wakeAt  time.Time
	deleted bool
	stats   Stats
}

// Stats counts what a subscription delivered, for tests and reports that
// look at redelivery.
type Stats struct {
	// Deliveries counts every delivery; Redeliveries those of a message
	// delivered before on this subscription.
	Deliveries   int64 `json:"deliveries"`
	Redeliveries int64 `json:"redeliveries"`
	// DeadLettered counts messages forwarded to the dead-letter topic.
	DeadLettered int64 `json:"dead_lettered"`
	// MaxAttempts is the highest delivery attempt of any message.
	MaxAttempts int32 `json:"max_attempts"`
}

// Stats returns what the subscription named (projects/P/subscriptions/S)
// has delivered, and false if there is none.
func (s *Server) Stats(subscription string) (Stats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[subscription]
	if sub == nil {
		return Stats{}, false
	}
	return sub.stats, true
}

func (sub *subscription) notify() {
	close(sub.wake)
	sub.wake = make(chan struct{})
}

func (sub *subscription) wakeBy(t time.Time) {
	if sub.wakeAt.IsZero() || t.Before(sub.wakeAt) {
		sub.wakeAt = t
	}
}

// New returns a running server with no topics.
func New(opts Options) *Server {
	if opts.Tick <= 0 {
		opts.Tick = 50 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{logger: opts.Logger, topics: map[string]*topic{}, subs: map[string]*subscription{},
		done: make(chan struct{}), stopped: make(chan struct{})}
	go s.tick(opts.Tick)
	return s
}

// Register adds the Publisher and Subscriber services to g.
func (s *Server) Register(g *grpc.Server) {
	pubsubpb.RegisterPublisherServer(g, s)
	pubsubpb.RegisterSubscriberServer(g, s)
}

// Close ends open streams with UNAVAILABLE and stops the deadline checks.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.mu.Unlock()
	<-s.stopped
}

func (s *Server) tick(every time.Duration) {
	defer close(s.stopped)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.mu.Lock()
			s.expire(now)
			s.mu.Unlock()
		}
	}
}

// deletedTopic is what a subscription's topic reads once the topic is gone.
const deletedTopic = "_deleted-topic_"

func (s *Server) CreateTopic(_ context.Context, t *pubsubpb.Topic) (*pubsubpb.Topic, error) {
	if _, err := parseName("topic", t.GetName()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.topics[t.GetName()] != nil {
		return nil, status.Errorf(codes.AlreadyExists, "topic %s already exists", t.GetName())
	}
	pb := proto.Clone(t).(*pubsubpb.Topic)
	pb.State = pubsubpb.Topic_ACTIVE
	s.topics[t.GetName()] = &topic{pb: pb, subs: map[string]*subscription{}}
	return proto.Clone(pb).(*pubsubpb.Topic), nil
}

func (s *Server) topic(name string) (*topic, error) {
	t := s.topics[name]
	if t == nil {
		return nil, status.Errorf(codes.NotFound, "topic %s not found", name)
	}
	return t, nil
}

func (s *Server) GetTopic(_ context.Context, r *pubsubpb.GetTopicRequest) (*pubsubpb.Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.topic(r.GetTopic())
	if err != nil {
		return nil, err
	}
	return proto.Clone(t.pb).(*pubsubpb.Topic), nil
}

// projectOf checks "projects/P" and returns its prefix for names in it.
func projectOf(project string) (string, error) {
	if p, ok := strings.CutPrefix(project, "projects/"); !ok || p == "" || strings.Contains(p, "/") {
		return "", status.Errorf(codes.InvalidArgument, "invalid project %q: want projects/PROJECT", project)
	}
	return project + "/", nil
}

func (s *Server) ListTopics(_ context.Context, r *pubsubpb.ListTopicsRequest) (*pubsubpb.ListTopicsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	topics, err := listed(r.GetProject(), s.topics, func(t *topic) *pubsubpb.Topic { return t.pb })
	return &pubsubpb.ListTopicsResponse{Topics: topics}, err
}

// listed returns copies of what m holds in project ("projects/P"), in name
// order, in one page.
func listed[V any, P proto.Message](project string, m map[string]V, pb func(V) P) ([]P, error) {
	prefix, err := projectOf(project)
	if err != nil {
		return nil, err
	}
	var out []P
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if strings.HasPrefix(name, prefix) {
			out = append(out, proto.Clone(pb(m[name])).(P))
		}
	}
	return out, nil
}

func (s *Server) ListTopicSubscriptions(_ context.Context, r *pubsubpb.ListTopicSubscriptionsRequest) (*pubsubpb.ListTopicSubscriptionsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.topic(r.GetTopic())
	if err != nil {
		return nil, err
	}
	return &pubsubpb.ListTopicSubscriptionsResponse{Subscriptions: slices.Sorted(maps.Keys(t.subs))}, nil
}

func (s *Server) DeleteTopic(_ context.Context, r *pubsubpb.DeleteTopicRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.topic(r.GetTopic())
	if err != nil {
		return nil, err
	}
	for _, sub := range t.subs {
		sub.pb.Topic = deletedTopic
	}
	delete(s.topics, r.GetTopic())
	return &emptypb.Empty{}, nil
}

func (s *Server) Publish(_ context.Context, r *pubsubpb.PublishRequest) (*pubsubpb.PublishResponse, error) {
	if err := checkPublish(r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.topic(r.GetTopic())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	resp := &pubsubpb.PublishResponse{}
	for _, m := range r.GetMessages() {
		resp.MessageIds = append(resp.MessageIds, s.publish(t, proto.Clone(m).(*pubsubpb.PubsubMessage), now))
	}
	return resp, nil
}

func (s *Server) CreateSubscription(_ context.Context, r *pubsubpb.Subscription) (*pubsubpb.Subscription, error) {
	if err := checkSubscription(r); err != nil {
		return nil, err
	}
	if err := notEmulated(r); err != nil {
		return nil, err
	}
	f, err := parseFilter(r.GetFilter())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.topic(r.GetTopic())
	if err != nil {
		return nil, err
	}
	if s.subs[r.GetName()] != nil {
		return nil, status.Errorf(codes.AlreadyExists, "subscription %s already exists", r.GetName())
	}
	pb := proto.Clone(r).(*pubsubpb.Subscription)
	withDefaults(pb)
	parts := strings.Split(pb.GetName(), "/")
	sub := &subscription{pb: pb, project: parts[1], id: parts[3], filter: f,
		queues: map[string]*queue{}, acks: map[string]*entry{}, wake: make(chan struct{})}
	s.subs[pb.GetName()] = sub
	t.subs[pb.GetName()] = sub
	return proto.Clone(pb).(*pubsubpb.Subscription), nil
}

// notEmulated refuses, with a clear error, what this server does not do.
func notEmulated(r *pubsubpb.Subscription) error {
	switch {
	case r.GetEnableExactlyOnceDelivery():
		return status.Error(codes.Unimplemented, "exactly-once delivery is not emulated by the local Pub/Sub")
	case r.GetPushConfig().GetPushEndpoint() != "", r.GetBigqueryConfig() != nil, r.GetCloudStorageConfig() != nil:
		return status.Error(codes.Unimplemented, "push, BigQuery and Cloud Storage subscriptions are not emulated by the local Pub/Sub")
	}
	return nil
}

// withDefaults fills in what Google fills in for fields left unset.
func withDefaults(pb *pubsubpb.Subscription) {
	if pb.AckDeadlineSeconds == 0 {
		pb.AckDeadlineSeconds = minAckDeadline
	}
	if p := pb.DeadLetterPolicy; p != nil && p.MaxDeliveryAttempts == 0 {
		p.MaxDeliveryAttempts = defaultDeliveryAttempts
	}
	if pb.MessageRetentionDuration == nil {
		pb.MessageRetentionDuration = durationpb.New(7 * 24 * time.Hour)
	}
	if pb.ExpirationPolicy == nil {
		pb.ExpirationPolicy = &pubsubpb.ExpirationPolicy{Ttl: durationpb.New(31 * 24 * time.Hour)}
	}
	pb.State = pubsubpb.Subscription_ACTIVE
}

func (s *Server) subscription(name string) (*subscription, error) {
	sub := s.subs[name]
	if sub == nil {
		return nil, status.Errorf(codes.NotFound, "subscription %s not found", name)
	}
	return sub, nil
}

func (s *Server) GetSubscription(_ context.Context, r *pubsubpb.GetSubscriptionRequest) (*pubsubpb.Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.subscription(r.GetSubscription())
	if err != nil {
		return nil, err
	}
	return proto.Clone(sub.pb).(*pubsubpb.Subscription), nil
}

// updatable are the fields UpdateSubscription changes here.
var updatable = []string{"ack_deadline_seconds", "dead_letter_policy", "retry_policy", "labels", "expiration_policy", "message_retention_duration"}

func (s *Server) UpdateSubscription(_ context.Context, r *pubsubpb.UpdateSubscriptionRequest) (*pubsubpb.Subscription, error) {
	paths := r.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "update mask is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.subscription(r.GetSubscription().GetName())
	if err != nil {
		return nil, err
	}
	next := proto.Clone(sub.pb).(*pubsubpb.Subscription)
	in := r.GetSubscription()
	for _, p := range paths {
		switch p {
		case "ack_deadline_seconds":
			next.AckDeadlineSeconds = in.GetAckDeadlineSeconds()
		case "dead_letter_policy":
			next.DeadLetterPolicy = in.GetDeadLetterPolicy()
		case "retry_policy":
			next.RetryPolicy = in.GetRetryPolicy()
		case "labels":
			next.Labels = in.GetLabels()
		case "expiration_policy":
			next.ExpirationPolicy = in.GetExpirationPolicy()
		case "message_retention_duration":
			next.MessageRetentionDuration = in.GetMessageRetentionDuration()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update of %q is not emulated by the local Pub/Sub (it updates %s)", p, strings.Join(updatable, ", "))
		}
	}
	if err := checkSubscription(next); err != nil {
		return nil, err
	}
	withDefaults(next)
	sub.pb = proto.Clone(next).(*pubsubpb.Subscription)
	return next, nil
}

func (s *Server) ListSubscriptions(_ context.Context, r *pubsubpb.ListSubscriptionsRequest) (*pubsubpb.ListSubscriptionsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	subs, err := listed(r.GetProject(), s.subs, func(sub *subscription) *pubsubpb.Subscription { return sub.pb })
	return &pubsubpb.ListSubscriptionsResponse{Subscriptions: subs}, err
}

func (s *Server) DeleteSubscription(_ context.Context, r *pubsubpb.DeleteSubscriptionRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.subscription(r.GetSubscription())
	if err != nil {
		return nil, err
	}
	delete(s.subs, sub.pb.GetName())
	if t := s.topics[sub.pb.GetTopic()]; t != nil {
		delete(t.subs, sub.pb.GetName())
	}
	sub.deleted = true
	sub.notify() // its streams end with NOT_FOUND
	return &emptypb.Empty{}, nil
}

func (s *Server) Acknowledge(_ context.Context, r *pubsubpb.AcknowledgeRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.subscription(r.GetSubscription())
	if err != nil {
		return nil, err
	}
	sub.acknowledge(r.GetAckIds())
	return &emptypb.Empty{}, nil
}

// acknowledge acks what the ids name; an id that no longer counts (expired,
// or reset by a redelivery of its key) is ignored, as Google ignores it.
func (sub *subscription) acknowledge(ids []string) {
	for _, id := range ids {
		if e := sub.acks[id]; e != nil {
			sub.ack(e)
		}
	}
}

func (s *Server) ModifyAckDeadline(_ context.Context, r *pubsubpb.ModifyAckDeadlineRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, err := s.subscription(r.GetSubscription())
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, s.modify(sub, r.GetAckIds(), r.GetAckDeadlineSeconds(), time.Now())
}

// modify sets the deadline of the ids' deliveries to seconds from now; 0
// is a nack.
func (s *Server) modify(sub *subscription, ids []string, seconds int32, now time.Time) error {
	if seconds < 0 || seconds > maxAckDeadline {
		return status.Errorf(codes.InvalidArgument, "ack deadline %d s is outside 0 to %d", seconds, maxAckDeadline)
	}
	for _, id := range ids {
		e := sub.acks[id]
		switch {
		case e == nil:
		case seconds == 0:
			s.nack(sub, e, now)
		default:
			e.deadline = now.Add(time.Duration(seconds) * time.Second)
		}
	}
	return nil
}
