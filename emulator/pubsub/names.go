package pubsub

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Google's limits, as its service documents them and its emulator enforces
// them (TestPubSubNamesAndLimits runs on both).
const (
	// maxPublishBytes bounds a publish request (Google: 10 MB).
	maxPublishBytes = 10 << 20
	// Per message: 100 attributes, keys of 256 bytes, values of 1024
	// bytes, ordering keys of 1024 bytes.
	maxAttributes, maxAttributeKey, maxAttributeValue, maxOrderingKey = 100, 256, 1024, 1024
	// Dead-letter delivery attempts: 5 to 100 (0 means Google's default, 5).
	minDeliveryAttempts, maxDeliveryAttempts, defaultDeliveryAttempts = 5, 100, 5
	// Ack deadlines: a subscription's 10 to 600 s (0 means 10); a
	// ModifyAckDeadline's 0 (nack) to 600 s.
	minAckDeadline, maxAckDeadline = 10, 600
	// maxFilterBytes bounds a subscription's filter.
	maxFilterBytes = 256
)

// pubsubID is a topic or subscription id as Google accepts it: 3 to 255
// characters, starting with a letter, of letters, digits and - _ . ~ + %,
// and not starting with "goog" (lower case: "Google" is accepted).
var pubsubID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$`)

// parseName checks "projects/P/KIND/ID" and returns P.
func parseName(kind, name string) (project string, err error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[1] == "" || parts[2] != kind+"s" {
		return "", status.Errorf(codes.InvalidArgument, "invalid %s name %q: want projects/PROJECT/%ss/ID", kind, name, kind)
	}
	if id := parts[3]; !pubsubID.MatchString(id) || strings.HasPrefix(id, "goog") {
		return "", status.Errorf(codes.InvalidArgument, "invalid %s name %q: an id is 3 to 255 letters, digits and - _ . ~ + %%, starts with a letter and not with \"goog\"", kind, name)
	}
	return parts[1], nil
}

// checkSubscription validates what a subscription's creator chose.
func checkSubscription(s *pubsubpb.Subscription) error {
	if _, err := parseName("subscription", s.GetName()); err != nil {
		return err
	}
	if d := s.GetAckDeadlineSeconds(); d != 0 && (d < minAckDeadline || d > maxAckDeadline) {
		return status.Errorf(codes.InvalidArgument, "ack deadline %d s is outside %d to %d", d, minAckDeadline, maxAckDeadline)
	}
	if p := s.GetDeadLetterPolicy(); p != nil {
		if n := p.GetMaxDeliveryAttempts(); n != 0 && (n < minDeliveryAttempts || n > maxDeliveryAttempts) {
			// Google answers OUT_OF_RANGE here, not INVALID_ARGUMENT.
			return status.Errorf(codes.OutOfRange, "dead letter policy: max delivery attempts %d is outside %d to %d", n, minDeliveryAttempts, maxDeliveryAttempts)
		}
		if _, err := parseName("topic", p.GetDeadLetterTopic()); err != nil {
			return err
		}
	}
	if r := s.GetRetryPolicy(); r != nil {
		lo, hi := r.GetMinimumBackoff().AsDuration(), r.GetMaximumBackoff().AsDuration()
		if lo < 0 || hi < 0 || lo > 600e9 || hi > 600e9 || (r.GetMaximumBackoff() != nil && hi < lo) {
			return status.Errorf(codes.InvalidArgument, "retry policy: backoffs must be within 0 to 600 s, minimum not above maximum")
		}
	}
	if len(s.GetFilter()) > maxFilterBytes {
		return status.Errorf(codes.InvalidArgument, "filter is %d bytes; the limit is %d", len(s.GetFilter()), maxFilterBytes)
	}
	return nil
}

// checkPublish applies Google's limits to a publish request.
func checkPublish(r *pubsubpb.PublishRequest) error {
	if n := proto.Size(r); n > maxPublishBytes {
		return status.Errorf(codes.InvalidArgument, "publish request is %d bytes; the limit is %d", n, maxPublishBytes)
	}
	if len(r.GetMessages()) == 0 {
		return status.Error(codes.InvalidArgument, "publish request has no messages")
	}
	for i, m := range r.GetMessages() {
		if err := checkMessage(m); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return nil
}

func checkMessage(m *pubsubpb.PubsubMessage) error {
	if len(m.GetData()) == 0 && len(m.GetAttributes()) == 0 {
		return status.Error(codes.InvalidArgument, "a message needs data or attributes")
	}
	if len(m.GetAttributes()) > maxAttributes {
		return status.Errorf(codes.InvalidArgument, "%d attributes; the limit is %d", len(m.GetAttributes()), maxAttributes)
	}
	for k, v := range m.GetAttributes() {
		if k == "" || len(k) > maxAttributeKey || len(v) > maxAttributeValue {
			return status.Errorf(codes.InvalidArgument, "attribute %.40q: keys are 1 to %d bytes, values at most %d bytes", k, maxAttributeKey, maxAttributeValue)
		}
	}
	if len(m.GetOrderingKey()) > maxOrderingKey || !utf8.ValidString(m.GetOrderingKey()) {
		return status.Errorf(codes.InvalidArgument, "ordering key: at most %d bytes of UTF-8", maxOrderingKey)
	}
	return nil
}
