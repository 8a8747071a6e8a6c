package emulator

import (
	"context"
	"regexp"
	"strings"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Limits of Google's Pub/Sub that pstest does not enforce, checked in front
// of it so that what the local cloud accepts Google accepts too.
const (
	// maxPublishBytes bounds a publish request (Google: 10 MB).
	maxPublishBytes = 10 << 20
	// Dead-letter delivery attempts: 5 to 100 (0 means Google's default, 5).
	minDeliveryAttempts, maxDeliveryAttempts = 5, 100
)

// pubsubID is a topic or subscription id as Google accepts it: 3 to 255
// characters, starting with a letter, of letters, digits and - _ . ~ + %,
// and not starting with "goog" (lower case: "Google" is accepted).
var pubsubID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$`)

func checkPubSubName(kind, name string) error {
	i := strings.LastIndex(name, "/")
	id := name[i+1:]
	if !pubsubID.MatchString(id) || strings.HasPrefix(id, "goog") {
		return status.Errorf(codes.InvalidArgument, "invalid %s name %q: an id is 3 to 255 letters, digits and - _ . ~ + %%, starts with a letter and not with \"goog\"", kind, name)
	}
	return nil
}

func checkSubscription(s *pubsubpb.Subscription) error {
	if err := checkPubSubName("subscription", s.GetName()); err != nil {
		return err
	}
	if p := s.GetDeadLetterPolicy(); p != nil {
		if n := p.GetMaxDeliveryAttempts(); n != 0 && (n < minDeliveryAttempts || n > maxDeliveryAttempts) {
			// Google answers OUT_OF_RANGE here, not INVALID_ARGUMENT.
			return status.Errorf(codes.OutOfRange, "dead letter policy: max delivery attempts %d is outside %d to %d", n, minDeliveryAttempts, maxDeliveryAttempts)
		}
	}
	return nil
}

// pubsubLimits rejects, as Google does, what pstest would accept: invalid
// topic and subscription names, dead-letter attempts outside 5 to 100 and
// publish requests over 10 MB.
func pubsubLimits(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var err error
	switch r := req.(type) {
	case *pubsubpb.Topic:
		err = checkPubSubName("topic", r.GetName())
	case *pubsubpb.Subscription:
		err = checkSubscription(r)
	case *pubsubpb.UpdateSubscriptionRequest:
		err = checkSubscription(r.GetSubscription())
	case *pubsubpb.PublishRequest:
		if n := proto.Size(r); n > maxPublishBytes {
			err = status.Errorf(codes.InvalidArgument, "publish request is %d bytes; the limit is %d", n, maxPublishBytes)
		}
	}
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}
