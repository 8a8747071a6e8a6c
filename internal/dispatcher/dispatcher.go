// Package dispatcher is the Pub/Sub queue worker in front of the session
// hosts. For each message it decodes and validates the request, enqueues it
// in its session's inbox (de-duplicated, in order) and launches a host when
// the session has none. It answers what needs no host, and sends what is not
// a request to the dead-letter topic.
//
// The dispatcher never runs user commands, and holds no state of its own:
// run as many as load needs.
package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/retry"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/telemetry"
)

// Launches carries out, in the background, the host launches that the
// dispatcher claims (package launch): a request never waits for a launch,
// nor for other sessions' launches.
type Launches interface {
	Request(sessionID string, claim *session.Launch, traceparent string)
}

// Store is what the dispatcher keeps in a session's state (package
// session provides it, over Firestore; package memstore in memory).
type Store interface {
	Enqueue(ctx context.Context, req *api.Request, raw []byte, traceparent string) (session.Accepted, error)
	Reject(ctx context.Context, c *api.Completion, raw []byte) (item session.Item, duplicate bool, err error)
	MarkPublished(ctx context.Context, sessionID, requestID string) error
	Purge(ctx context.Context, sessionID string) error
}

// Queue publishes what the dispatcher answers and dead-letters what it
// cannot (package outbox's Publisher).
type Queue interface {
	PublishCompletion(ctx context.Context, data []byte, traceparent string) error
	DeadLetter(ctx context.Context, m *pubsub.Message, reason string) error
}

// Config tunes the dispatcher. Zero fields take the defaults below.
type Config struct {
	// MaxOutstanding bounds the messages in hand at once (flow control).
	MaxOutstanding int
	// HandleTimeout bounds the handling of one message.
	HandleTimeout time.Duration
	// ShutdownTimeout bounds the wait for messages in hand once the
	// dispatcher is told to stop.
	ShutdownTimeout time.Duration
	// AckExtension is how far at a time the dispatcher extends the ack
	// deadline of the messages in hand (Pub/Sub allows 10 s to 600 s): when
	// a dispatcher dies, its messages, and the later requests of their
	// sessions, wait about that long for redelivery.
	AckExtension time.Duration
	// OrderHold is how long a message that failed keeps the later messages
	// of its session refused while its redelivery is awaited. It covers
	// the subscription's longest retry backoff (60 s) plus an ack deadline
	// (60 s); after it the dispatcher assumes the message will not come
	// back to it (dead-lettered, or redelivered to another dispatcher).
	OrderHold time.Duration
	// RefuseDelay is how long the messages of a session held behind an
	// earlier one are kept in hand at most before they are nacked (they
	// are handled at once when the earlier one is). It frees the flow
	// control they pin and spaces out their redeliveries, each of which
	// counts against the dead-letter policy's delivery attempts.
	RefuseDelay time.Duration
}

// Defaults of Config.
const (
	DefaultMaxOutstanding  = 200
	DefaultHandleTimeout   = 2 * time.Minute
	DefaultShutdownTimeout = 30 * time.Second
	DefaultAckExtension    = 10 * time.Second
	DefaultOrderHold       = 2 * time.Minute
	DefaultRefuseDelay     = 5 * time.Second
)

// Dispatcher handles requests from one subscription.
type Dispatcher struct {
	cfg   Config
	store Store
	pub   Queue
	// relay publishes recorded completions and marks them published.
	relay    *outbox.Relay
	launches Launches
	sub      *pubsub.Subscriber
	logger   *slog.Logger
	// order keeps each session's messages in publish order across
	// redeliveries.
	order *orderGate

	// answered counts the requests the dispatcher answers itself,
	// deadLetters the messages it dead-letters, by reason.
	answered    metric.Int64Counter
	deadLetters metric.Int64Counter

	// handle, ack and nack are Handle, Message.Ack and Message.Nack; tests
	// replace them to fail a delivery, to lose its nack so that its
	// deadline expires, or to see what was settled.
	handle    func(context.Context, *pubsub.Message) error
	ack, nack func(*pubsub.Message)
}

// meterName is the instrumentation scope of the dispatcher's metrics.
const meterName = "github.com/sandrun/sandrun/internal/dispatcher"

// New returns a dispatcher reading sub, whose launches go to launches.
func New(cfg Config, sub *pubsub.Subscriber, store Store, pub Queue, launches Launches, logger *slog.Logger) *Dispatcher {
	if cfg.MaxOutstanding <= 0 {
		cfg.MaxOutstanding = DefaultMaxOutstanding
	}
	if cfg.HandleTimeout <= 0 {
		cfg.HandleTimeout = DefaultHandleTimeout
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.AckExtension <= 0 {
		cfg.AckExtension = DefaultAckExtension
	}
	if cfg.OrderHold <= 0 {
		cfg.OrderHold = DefaultOrderHold
	}
	if cfg.RefuseDelay <= 0 {
		cfg.RefuseDelay = DefaultRefuseDelay
	}
	d := &Dispatcher{cfg: cfg, store: store, pub: pub, relay: outbox.NewRelay(pub, store, logger), launches: launches, sub: sub, logger: logger,
		order: newOrderGate(cfg.OrderHold, cfg.RefuseDelay, time.Now)}
	d.handle, d.ack, d.nack = d.Handle, (*pubsub.Message).Ack, (*pubsub.Message).Nack
	// From the global meter provider: no-ops unless metrics are on.
	m := otel.GetMeterProvider().Meter(meterName)
	d.answered = telemetry.RequestCounter(m)
	d.deadLetters, _ = m.Int64Counter("sandrun.dispatcher.dead_letters", metric.WithUnit("{message}"),
		metric.WithDescription("messages that are not requests, sent to the dead-letter topic, by reason"))
	return d
}

// Run pulls and handles messages until ctx ends, then stops pulling and
// waits for the messages in hand, up to the shutdown timeout.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.sub.ReceiveSettings.MaxOutstandingMessages = d.cfg.MaxOutstanding
	d.sub.ReceiveSettings.MinDurationPerAckExtension = d.cfg.AckExtension
	d.sub.ReceiveSettings.MaxDurationPerAckExtension = d.cfg.AckExtension
	// No timeout for the client library: with one, Receive returns before
	// the acks of the messages it finished are sent, and a program that
	// exits then gets them redelivered only after their ack deadline,
	// holding up their sessions' later requests. The shutdown timeout is
	// kept below instead.
	d.sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Timeout: -1, Behavior: pubsub.ShutdownBehaviorWaitForProcessing}
	d.logger.Info("dispatcher started", "event", "dispatcher.started", "subscription", d.sub.String())
	received := make(chan error, 1)
	// Pub/Sub may end the stream (UNKNOWN, UNAVAILABLE): pull again.
	go func() {
		received <- retry.Reconnect(ctx, retry.Stream, d.logger, "receive from "+d.sub.String(), d.receive)
		d.nackAllHeld()
	}()
	var err error
	select {
	case err = <-received:
	case <-ctx.Done():
		select {
		case err = <-received:
		case <-time.After(d.cfg.ShutdownTimeout):
			d.logger.Error("messages still in hand at the shutdown timeout; Pub/Sub will redeliver them", "event", "dispatcher.shutdown_timeout",
				"shutdown_timeout", d.cfg.ShutdownTimeout.String())
			return fmt.Errorf("stop receiving from %s: messages still in hand after %v", d.sub.String(), d.cfg.ShutdownTimeout)
		}
	}
	d.logger.Info("dispatcher stopped", "event", "dispatcher.stopped")
	if err != nil {
		return fmt.Errorf("receive from %s: %w", d.sub.String(), err)
	}
	return nil
}

// receive pulls and handles messages until ctx ends or the stream fails,
// and returns once the messages in hand are handled and their acks sent.
func (d *Dispatcher) receive(ctx context.Context) error {
	return d.sub.Receive(ctx, d.process)
}

// process handles a message in hand and acks or nacks it, unless the order
// gate holds it.
func (d *Dispatcher) process(ctx context.Context, m *pubsub.Message) {
	// A message in hand is finished even when shutdown begins: its own
	// deadline, not the receive loop's, bounds it.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.HandleTimeout)
	defer cancel()
	switch d.deliver(hctx, m) {
	case ack:
		d.ack(m)
	case nack:
		d.nack(m)
	}
}

// What to do with a message once deliver returns.
type verdict int

const (
	ack  verdict = iota
	nack         // deliver it again
	held         // kept in hand by the order gate, which settles it later
)

// deliver handles a message, in its session's order when it has an
// ordering key, and says what to do with it.
func (d *Dispatcher) deliver(ctx context.Context, m *pubsub.Message) verdict {
	if m.OrderingKey == "" {
		return d.try(ctx, m)
	}
	return d.ordered(ctx, m)
}

// messageLog is the logger of what happens to m, built only when there is
// something to log: With encodes its attributes at once, which cost every
// message when the logger was built ahead.
func (d *Dispatcher) messageLog(m *pubsub.Message) *slog.Logger {
	return d.logger.With("message_id", m.ID, "session_id", m.Attributes[api.AttrSessionID], "request_id", m.Attributes[api.AttrRequestID])
}

// try handles a message and says whether it may be acknowledged.
func (d *Dispatcher) try(ctx context.Context, m *pubsub.Message) verdict {
	if err := d.handle(ctx, m); err != nil {
		d.messageLog(m).Error("request not handled; Pub/Sub will redeliver it", "event", "request.nacked", "error", err.Error())
		return nack
	}
	return ack
}

// Handle does everything a message needs and returns nil when it may be
// acknowledged; an error means it must be delivered again.
func (d *Dispatcher) Handle(ctx context.Context, m *pubsub.Message) (err error) {
	start := time.Now()
	// The request's trace goes on through this span: the inbox item, the
	// host's launch and the host's own spans carry its context.
	ctx, span := telemetry.Start(telemetry.WithTraceparent(ctx, m.Attributes[api.AttrTraceparent]), "sandrun.dispatch", trace.SpanKindConsumer,
		attribute.String("messaging.message.id", m.ID), attribute.String("sandrun.session_id", m.Attributes[api.AttrSessionID]),
		attribute.String("sandrun.request_id", m.Attributes[api.AttrRequestID]), attribute.String("sandrun.op", m.Attributes[api.AttrOp]))
	defer func() { telemetry.End(span, err) }()
	req, err := api.ParseRequest(m.Data)
	if err == nil {
		err = checkAttributes(&req, m)
	}
	if err != nil {
		var rerr *api.RequestError
		if !errors.As(err, &rerr) {
			return err
		}
		return d.reject(ctx, m, rerr)
	}
	traceparent := telemetry.Traceparent(ctx)

	// The store retries what may go away on its own; an error here is
	// final for this delivery, and Pub/Sub delivers the message again.
	acc, err := d.store.Enqueue(ctx, &req, m.Data, traceparent)
	if err != nil {
		return err
	}
	switch {
	case acc.Duplicate:
		d.requestLog(&req).Info("duplicate request ignored", "event", "request.duplicate", "status", acc.Item.Status)
		if acc.Item.Status == session.ItemDone && !acc.Item.Published {
			return d.publish(ctx, &acc.Item)
		}
		return nil
	case acc.Answer != nil:
		// A launch the answer claimed (a session.create warms its session)
		// is requested before the publish: a redelivery after a failed
		// publish is a duplicate and would not request it again.
		if acc.Launch != nil {
			d.launches.Request(req.SessionID, acc.Launch, traceparent)
			acc.Launch = nil
		}
		// Counted once, as recorded: a redelivery after a failed publish
		// finds it a duplicate and publishes it again, uncounted.
		telemetry.CountAnswer(ctx, d.answered, telemetry.AnsweredByDispatcher, acc.Answer)
		if err := d.publish(ctx, &acc.Item); err != nil {
			return err
		}
	}
	if len(acc.Aborted) > 0 {
		// The destroy answered the requests that waited for a host.
		for _, u := range acc.Aborted {
			// Recorded: the reaper publishes what was not (the relay logs it).
			_ = d.relay.Send(ctx, outbox.Recorded{SessionID: u.SessionID, RequestID: u.RequestID, Completion: u.Completion})
		}
	}
	if acc.Purge {
		if err := d.store.Purge(ctx, req.SessionID); err != nil {
			// The reaper purges what is left; the request is answered.
			d.requestLog(&req).Warn("purge of destroyed session failed", "event", "session.purge_failed", "error", err.Error())
		}
	}
	if acc.Launch != nil {
		d.launches.Request(req.SessionID, acc.Launch, traceparent)
	}
	// The line every request logs, with the attributes requestLog gives
	// the others, but without a logger built for it (see messageLog).
	d.logger.LogAttrs(ctx, slog.LevelInfo, "request accepted",
		slog.String("session_id", req.SessionID), slog.String("request_id", req.RequestID), slog.String("op", string(req.Op)),
		slog.String("event", "request.accepted"), slog.Int64("seq", acc.Item.Seq), slog.String("status", acc.Item.Status),
		slog.Bool("launch", acc.Launch != nil), slog.Float64("duration_seconds", time.Since(start).Seconds()))
	return nil
}

// requestLog is the logger of what happens to req, built only to log
// (see messageLog).
func (d *Dispatcher) requestLog(req *api.Request) *slog.Logger {
	return d.logger.With("session_id", req.SessionID, "request_id", req.RequestID, "op", string(req.Op))
}

// checkAttributes rejects a request whose attributes contradict its body:
// ordering and routing rely on them agreeing.
func checkAttributes(req *api.Request, m *pubsub.Message) error {
	for _, a := range [...]struct{ attr, want string }{
		{api.AttrSessionID, req.SessionID}, {api.AttrRequestID, req.RequestID}, {api.AttrOp, string(req.Op)},
	} {
		if got, ok := m.Attributes[a.attr]; ok && got != a.want {
			return &api.RequestError{Reason: "attribute_mismatch", Code: api.CodeInvalidArgument, RequestID: req.RequestID, SessionID: req.SessionID, Op: req.Op,
				Message: fmt.Sprintf("attribute %s differs from the request's %s", a.attr, a.attr)}
		}
	}
	if m.OrderingKey != "" && m.OrderingKey != req.SessionID {
		return &api.RequestError{Reason: "attribute_mismatch", Code: api.CodeInvalidArgument, RequestID: req.RequestID, SessionID: req.SessionID, Op: req.Op,
			Message: "ordering key differs from session_id; publish with ordering key = session_id"}
	}
	return nil
}

// reject answers an invalid request, or dead-letters a message that cannot
// be answered because it names no request id.
func (d *Dispatcher) reject(ctx context.Context, m *pubsub.Message, rerr *api.RequestError) error {
	log := d.logger.With("message_id", m.ID, "reason", rerr.Reason)
	if !rerr.Answerable() {
		log.Warn("message dead-lettered", "event", "request.dead_lettered", "error", rerr.Message)
		if err := d.pub.DeadLetter(ctx, m, rerr.Reason); err != nil {
			return err
		}
		d.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", rerr.Reason)))
		return nil
	}
	c := api.ErrorCompletion(rerr.RequestID, rerr.SessionID, rerr.Op, rerr.Code, rerr.Message)
	log = log.With("session_id", rerr.SessionID, "request_id", rerr.RequestID)
	log.Warn("request rejected", "event", "request.rejected", "error_code", string(rerr.Code), "error", rerr.Message)
	if !api.ValidSessionID(rerr.SessionID) {
		// No session can record it; answering again gives the same answer.
		data, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode completion of request %s: %w", c.RequestID, err)
		}
		if err := d.pub.PublishCompletion(ctx, data, ""); err != nil {
			return err
		}
		telemetry.CountAnswer(ctx, d.answered, telemetry.AnsweredByDispatcher, c)
		return nil
	}
	item, dup, err := d.store.Reject(ctx, c, m.Data)
	if err != nil {
		return err
	}
	if !dup {
		telemetry.CountAnswer(ctx, d.answered, telemetry.AnsweredByDispatcher, c)
	}
	if dup && (item.Status != session.ItemDone || item.Published) {
		return nil
	}
	return d.publish(ctx, &item)
}

// publish sends an item's recorded completion and marks it published; an
// error means the message must be delivered again.
func (d *Dispatcher) publish(ctx context.Context, item *session.Item) error {
	return d.relay.Send(ctx, outbox.Recorded{SessionID: item.SessionID, RequestID: item.RequestID, Completion: []byte(item.Completion), Traceparent: item.Traceparent})
}
