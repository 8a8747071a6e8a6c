package pubsub

import (
	"slices"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Delivery state. Everything here runs under Server.mu.
//
// A subscription keeps its messages in queues: one per ordering key when
// the subscription orders messages, and one per message otherwise. A queue
// holds its messages in publish order from the first one not yet
// acknowledged; each is pending (waiting to be delivered), outstanding
// (delivered under an ack id and a deadline) or acknowledged (kept only
// while an earlier message of the key is not). The pending messages of a
// queue are always its tail, from queue.next on, so that a key is
// delivered in order: the next message of a key goes out only after every
// earlier one has.

type state int

const (
	pending state = iota
	outstanding
	acked
)

// entry is one message on one subscription.
type entry struct {
	msg   *pubsubpb.PubsubMessage
	seq   int64 // publish order across the server
	size  int64
	queue *queue
	state state
	// attempts counts deliveries on this subscription (Google's
	// delivery_attempt).
	attempts int32
	// availableAt is when a pending entry may go out (the retry policy's
	// backoff after a nack or an expiry).
	availableAt time.Time
	// While outstanding: the delivery's ack id, its deadline and the
	// puller it went to.
	ackID    string
	deadline time.Time
	holder   *puller
}

// queue is an ordering key's messages on one subscription, or one
// unordered message.
type queue struct {
	key     string
	ordered bool
	entries []*entry
	next    int // first pending entry
	// holder is the puller that holds the key's outstanding messages: as
	// Google does, the later messages of a key go to the stream that has
	// the earlier ones, and to no other until none is outstanding.
	holder      *puller
	outstanding int
}

// puller is one StreamingPull stream, or one Pull call, with the flow
// control its client asked for.
type puller struct {
	ackDeadline  time.Duration
	maxMessages  int64 // 0: no limit
	maxBytes     int64 // 0: no limit
	messages     int64 // outstanding on this puller
	bytes        int64
	responseSize int64 // a response's bound, at least one message
}

// maxResponseBytes bounds one response, as Google keeps a response's
// messages within the 10 MB a publish may carry.
const maxResponseBytes = 10 << 20

// enqueue adds a published message to sub, unless its filter rejects it.
func (s *Server) enqueue(sub *subscription, m *pubsubpb.PubsubMessage, seq int64) {
	if sub.filter != nil && !sub.filter.match(m.GetAttributes()) {
		return // Google acknowledges filtered messages at once.
	}
	key, ordered := "u:"+m.GetMessageId(), false
	if sub.pb.GetEnableMessageOrdering() && m.GetOrderingKey() != "" {
		key, ordered = "k:"+m.GetOrderingKey(), true
	}
	q := sub.queues[key]
	if q == nil {
		q = &queue{key: key, ordered: ordered}
		sub.queues[key] = q
	}
	q.entries = append(q.entries, &entry{msg: m, seq: seq, size: int64(proto.Size(m)), queue: q})
	sub.notify()
}

// take picks what p may be sent now, in publish order: for every queue not
// held by another puller, its pending entries that are due, up to p's flow
// control and the response size.
func (sub *subscription) take(p *puller, now time.Time) []*entry {
	var due []*entry
	for _, q := range sub.queues {
		if q.ordered && q.holder != nil && q.holder != p {
			continue
		}
		for _, e := range q.entries[q.next:] {
			if e.availableAt.After(now) {
				sub.wakeBy(e.availableAt)
				break
			}
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *entry) int { return int(a.seq - b.seq) })
	// Stopping at the first entry that does not fit keeps what is taken of
	// each key a prefix of its pending entries.
	var size int64
	for i, e := range due {
		full := (p.maxMessages > 0 && p.messages+int64(i) >= p.maxMessages) ||
			(p.maxBytes > 0 && p.bytes+size+e.size > p.maxBytes) ||
			size+e.size > p.responseSize
		if full && (i > 0 || p.messages > 0) {
			return due[:i]
		}
		size += e.size
	}
	return due
}

// deliver hands e to p and returns what the client receives.
func (s *Server) deliver(sub *subscription, e *entry, p *puller, now time.Time) *pubsubpb.ReceivedMessage {
	q := e.queue
	q.next++
	q.outstanding++
	q.holder = p
	s.nextID++
	e.state = outstanding
	e.attempts++
	e.ackID = "ack-" + strconv.FormatInt(s.nextID, 10)
	e.deadline = now.Add(p.ackDeadline)
	e.holder = p
	p.messages++
	p.bytes += e.size
	sub.acks[e.ackID] = e
	sub.stats.Deliveries++
	if e.attempts > 1 {
		sub.stats.Redeliveries++
	}
	sub.stats.MaxAttempts = max(sub.stats.MaxAttempts, e.attempts)
	rm := &pubsubpb.ReceivedMessage{AckId: e.ackID, Message: e.msg}
	if sub.pb.GetDeadLetterPolicy() != nil {
		// Google sets the count only on subscriptions with a dead-letter
		// policy.
		rm.DeliveryAttempt = e.attempts
	}
	return rm
}

// release ends e's outstanding delivery: its ack id no longer counts.
func (sub *subscription) release(e *entry) {
	if e.state != outstanding {
		return
	}
	delete(sub.acks, e.ackID)
	e.holder.messages--
	e.holder.bytes -= e.size
	e.ackID, e.holder = "", nil
	q := e.queue
	q.outstanding--
	if q.outstanding == 0 {
		q.holder = nil
	}
}

// ack acknowledges e, and drops the acknowledged head of its queue.
func (sub *subscription) ack(e *entry) {
	sub.release(e)
	e.state = acked
	q := e.queue
	n := 0
	for n < len(q.entries) && q.entries[n].state == acked {
		n++
	}
	q.entries = q.entries[n:]
	q.next -= n
	if len(q.entries) == 0 {
		delete(sub.queues, q.key)
	}
	sub.notify() // flow control and the key's holder may have freed up
}

// nack handles a nack or an expired deadline of outstanding e, as Google
// does: after the dead-letter policy's attempts the message moves to the
// dead-letter topic; otherwise it is delivered again after the retry
// policy's backoff, and so is every later message of its key, outstanding
// or acknowledged, after it (m0, m1, m2, then m0, m1, m2 again).
func (s *Server) nack(sub *subscription, e *entry, now time.Time) {
	if s.deadLetter(sub, e, now) {
		sub.ack(e)
		return
	}
	q := e.queue
	i := slices.Index(q.entries, e)
	for _, later := range q.entries[i:] {
		sub.release(later)
		later.state = pending
	}
	q.next = i
	e.availableAt = now.Add(sub.backoff(e.attempts))
	sub.notify()
}

// backoff is the wait before the redelivery of a message delivered attempts
// times: none without a retry policy, else exponential from the policy's
// minimum (default 10 s) to its maximum (default 600 s), as Google
// documents it.
func (sub *subscription) backoff(attempts int32) time.Duration {
	r := sub.pb.GetRetryPolicy()
	if r == nil {
		return 0
	}
	lo, hi := 10*time.Second, 600*time.Second
	if r.GetMinimumBackoff() != nil {
		lo = r.GetMinimumBackoff().AsDuration()
	}
	if r.GetMaximumBackoff() != nil {
		hi = r.GetMaximumBackoff().AsDuration()
	}
	d := lo
	for i := int32(1); i < attempts && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// deadLetter forwards e to sub's dead-letter topic when it has been
// delivered the policy's number of times, and reports whether it did. The
// count is this subscription's own: other subscriptions of the topic keep
// theirs, and a forwarded message is published once.
func (s *Server) deadLetter(sub *subscription, e *entry, now time.Time) bool {
	p := sub.pb.GetDeadLetterPolicy()
	if p == nil || e.attempts < p.GetMaxDeliveryAttempts() {
		return false
	}
	t := s.topics[p.GetDeadLetterTopic()]
	if t == nil {
		return false // Google keeps delivering while the topic is missing
	}
	m := proto.Clone(e.msg).(*pubsubpb.PubsubMessage)
	if m.Attributes == nil {
		m.Attributes = map[string]string{}
	}
	// The attributes Google adds to a forwarded message.
	m.Attributes["CloudPubSubDeadLetterSourceDeliveryCount"] = strconv.Itoa(int(e.attempts))
	m.Attributes["CloudPubSubDeadLetterSourceSubscription"] = sub.id
	m.Attributes["CloudPubSubDeadLetterSourceSubscriptionProject"] = sub.project
	m.Attributes["CloudPubSubDeadLetterSourceTopicPublishTime"] = e.msg.GetPublishTime().AsTime().Format(time.RFC3339Nano)
	s.publish(t, m, now)
	sub.stats.DeadLettered++
	s.logger.Info("message dead-lettered", "event", "pubsub.dead_lettered", "subscription", sub.pb.GetName(),
		"message_id", e.msg.GetMessageId(), "ordering_key", e.msg.GetOrderingKey(), "attempts", e.attempts)
	return true
}

// publish gives m an id and a publish time and hands it to every
// subscription of t.
func (s *Server) publish(t *topic, m *pubsubpb.PubsubMessage, now time.Time) string {
	s.nextID++
	m.MessageId = strconv.FormatInt(s.nextID, 10)
	m.PublishTime = timestamppb.New(now)
	for _, sub := range t.subs {
		s.enqueue(sub, m, s.nextID)
	}
	return m.MessageId
}

// expire nacks every delivery whose deadline has passed, and wakes the
// pullers of a subscription whose backoff has ended.
func (s *Server) expire(now time.Time) {
	for _, sub := range s.subs {
		var late []*entry
		for _, e := range sub.acks {
			if now.After(e.deadline) {
				late = append(late, e)
			}
		}
		slices.SortFunc(late, func(a, b *entry) int { return int(a.seq - b.seq) })
		for _, e := range late {
			if e.state == outstanding && now.After(e.deadline) { // an earlier nack may have reset it
				s.nack(sub, e, now)
			}
		}
		if !sub.wakeAt.IsZero() && !now.Before(sub.wakeAt) {
			sub.wakeAt = time.Time{}
			sub.notify()
		}
	}
}
