// Package pubsub is sandrun's own Pub/Sub: an in-memory server of the
// google.pubsub.v1 Publisher and Subscriber gRPC services that the official
// clients (Go, Python) talk to when PUBSUB_EMULATOR_HOST points at it. It
// replaces pstest in the local cloud because pstest keeps its delivery state
// private and does not redeliver as Google does, which is where sandrun's
// ordering depends on Pub/Sub.
//
// # What it reproduces of Google's Pub/Sub
//
// Each line is checked by a test that runs on this server and on Google's
// own emulator (emulator/pubsub_fidelity_test.go; internal/dispatcher
// TestOrderedRedelivery), except where it says that
// Google's emulator differs:
//
//   - Ordered delivery: on a subscription with message ordering, the
//     messages of an ordering key are delivered in publish order, several at
//     a time (a key's next message does not wait for the earlier one's
//     ack), and while a key has messages outstanding its later messages go
//     to the same stream only.
//   - Ordered redelivery: when a message of a key is nacked (or its
//     deadline set to 0) or its ack deadline expires, it is delivered again,
//     and so is every later message of its key that was delivered,
//     acknowledged or not, after it and in order: m0, m1, m2, then m0, m1,
//     m2. Google documents this for its service; its emulator instead
//     redelivers only the failed message, after the later ones (m0, m1, m2,
//     m0), which the dispatcher must survive too.
//   - Redelivery backoff: a nacked or expired message waits the
//     subscription's retry policy's backoff, exponential from the minimum
//     (10 s by default) to the maximum (600 s), doubling with each delivery
//     attempt; without a policy it is redelivered at once. Google's
//     emulator ignores the policy.
//   - Dead-lettering: each subscription counts the delivery attempts of
//     each of its messages (delivery_attempt, set only on subscriptions
//     with a dead-letter policy); when a message delivered the policy's
//     number of times is nacked or expires, it is published once to the
//     dead-letter topic, with Google's CloudPubSubDeadLetterSource*
//     attributes, and acknowledged on its subscription; the later messages
//     of its key are then delivered. Another subscription of the same
//     topic keeps its own count. Google's emulator counts and stops
//     delivering the same way, but never publishes to the dead-letter
//     topic (nothing arrived there within a minute when tried).
//   - Filters: Google's filter language over attributes (=, !=, :,
//     hasPrefix, NOT, AND, OR, parentheses, no AND and OR mixed without
//     them); a filtered-out message is never delivered.
//   - Names and limits: topic and subscription ids of 3 to 255 letters,
//     digits and - _ . ~ + %, starting with a letter and not with "goog"
//     (INVALID_ARGUMENT); dead-letter attempts 5 to 100 (OUT_OF_RANGE);
//     publish requests up to 10 MB; 100 attributes per message, keys up to
//     256 bytes and values up to 1024; ordering keys up to 1024 bytes; ack
//     deadlines 10 to 600 s; filters up to 256 bytes.
//   - Streams: StreamingPull honours the client's flow control
//     (max_outstanding_messages and _bytes), takes acks and deadline
//     changes on the stream as well as by RPC, and tells the client whether
//     the subscription orders messages (subscription_properties, which the
//     Go client needs to order its callbacks). Deliveries outlive the
//     stream that carried them: they end with an ack, a nack or their
//     deadline. A stream ends with NOT_FOUND when its subscription is
//     deleted. StreamingPull ending with UNKNOWN or UNAVAILABLE, as Google's
//     does from time to time, is injected in front of this server by the
//     local cloud's fault rules (emulator/faults, MidStream).
//
// # What it does not emulate
//
// Exactly-once delivery and push, BigQuery and Cloud Storage subscriptions
// (refused with UNIMPLEMENTED); schemas, snapshots and Seek; message
// retention, retained acknowledged messages and subscription expiry (the
// fields are kept and reported, never acted on); UpdateTopic; paging of
// listings (one page); Google's occasional duplicate delivery of a message
// that was acknowledged in time.
package pubsub
