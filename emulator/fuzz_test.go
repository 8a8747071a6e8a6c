package emulator_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
)

// FuzzStorageHTTP sends arbitrary HTTP requests to the Cloud Storage
// endpoint: each gets an HTTP answer, and the endpoint keeps serving.
func FuzzStorageHTTP(f *testing.F) {
	for _, seed := range []struct{ method, path, body string }{
		{"GET", "/storage/v1/b/b/o", ""},
		{"POST", "/upload/storage/v1/b/b/o?uploadType=multipart", "--x\r\n\r\n{}\r\n--x--"},
		{"POST", "/upload/storage/v1/b/b/o?uploadType=resumable&name=o", "{}"},
		{"PUT", "/upload/storage/v1/b/b/o?upload_id=zz", "data"},
		{"GET", "/b/o", ""},
		{"DELETE", "/storage/v1/b/b/o/%ff", ""},
		{"PATCH", "/storage/v1/b/b", "{\"versioning\":7}"},
		{"POST", "/batch/storage/v1", "--b\r\nContent-Type: application/http\r\n\r\nGET /x HTTP/1.1\r\n\r\n--b--"},
	} {
		f.Add(seed.method, seed.path, []byte(seed.body))
	}
	s := emulatortest.Start(f, emulator.Config{Buckets: []string{"b"}})
	h := s.StorageHandler()
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://"+s.StorageAddr+path, bytes.NewReader(body))
		if err != nil {
			return // not a request any client could send
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("%s %s answered status %d", method, path, rec.Code)
		}
		if rec.Code == http.StatusInternalServerError && strings.Contains(rec.Body.String(), "panicked") {
			t.Logf("fake-gcs-server panicked on %s %q (recovered): %s", method, path, rec.Body.String())
		}
	})
}

// pubsubMethods are the Pub/Sub RPCs the fuzzer calls, with a request of
// each one's type.
var pubsubMethods = []struct {
	name string
	req  func() proto.Message
	resp func() proto.Message
}{
	{"/google.pubsub.v1.Publisher/CreateTopic", func() proto.Message { return &pubsubpb.Topic{} }, func() proto.Message { return &pubsubpb.Topic{} }},
	{"/google.pubsub.v1.Publisher/Publish", func() proto.Message { return &pubsubpb.PublishRequest{} }, func() proto.Message { return &pubsubpb.PublishResponse{} }},
	{"/google.pubsub.v1.Publisher/UpdateTopic", func() proto.Message { return &pubsubpb.UpdateTopicRequest{} }, func() proto.Message { return &pubsubpb.Topic{} }},
	{"/google.pubsub.v1.Publisher/DeleteTopic", func() proto.Message { return &pubsubpb.DeleteTopicRequest{} }, func() proto.Message { return &pubsubpb.Topic{} }},
	{"/google.pubsub.v1.Subscriber/CreateSubscription", func() proto.Message { return &pubsubpb.Subscription{} }, func() proto.Message { return &pubsubpb.Subscription{} }},
	{"/google.pubsub.v1.Subscriber/UpdateSubscription", func() proto.Message { return &pubsubpb.UpdateSubscriptionRequest{} }, func() proto.Message { return &pubsubpb.Subscription{} }},
	{"/google.pubsub.v1.Subscriber/Pull", func() proto.Message { return &pubsubpb.PullRequest{} }, func() proto.Message { return &pubsubpb.PullResponse{} }},
	{"/google.pubsub.v1.Subscriber/Acknowledge", func() proto.Message { return &pubsubpb.AcknowledgeRequest{} }, func() proto.Message { return &pubsubpb.PullResponse{} }},
	{"/google.pubsub.v1.Subscriber/ModifyAckDeadline", func() proto.Message { return &pubsubpb.ModifyAckDeadlineRequest{} }, func() proto.Message { return &pubsubpb.PullResponse{} }},
	{"/google.pubsub.v1.Subscriber/Seek", func() proto.Message { return &pubsubpb.SeekRequest{} }, func() proto.Message { return &pubsubpb.SeekResponse{} }},
}

// FuzzPubSub sends arbitrary protobuf requests to the Pub/Sub endpoint over
// gRPC: each gets a status, and the endpoint keeps serving.
func FuzzPubSub(f *testing.F) {
	name := func(s string) string { return "projects/sandrun-local/topics/" + s }
	seeds := []proto.Message{
		&pubsubpb.Topic{Name: name("top")},
		&pubsubpb.PublishRequest{Topic: name("top"), Messages: []*pubsubpb.PubsubMessage{{Data: []byte("x"), OrderingKey: "k"}}},
		&pubsubpb.Subscription{Name: "projects/sandrun-local/subscriptions/sub", Topic: name("top"), Filter: `attributes.a = "b"`, EnableMessageOrdering: true,
			DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{DeadLetterTopic: name("top"), MaxDeliveryAttempts: 5}},
		&pubsubpb.PullRequest{Subscription: "projects/sandrun-local/subscriptions/sub", MaxMessages: 10},
	}
	for i, m := range seeds {
		b, _ := proto.Marshal(m)
		f.Add(uint8(i), b)
	}
	s := emulatortest.Start(f, emulator.Config{})
	conn, err := grpc.NewClient(s.PubSubAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		m := pubsubMethods[int(which)%len(pubsubMethods)]
		req := m.req()
		if proto.Unmarshal(data, req) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := conn.Invoke(ctx, m.name, req, m.resp())
		if status.Code(err) == codes.Internal && strings.Contains(err.Error(), "panicked") {
			t.Fatalf("the local Pub/Sub panicked on %s: %v", m.name, err)
		}
		// Whatever that did, the endpoint still answers.
		if err := conn.Invoke(ctx, "/google.pubsub.v1.Publisher/ListTopics", &pubsubpb.ListTopicsRequest{Project: "projects/sandrun-local"}, &pubsubpb.ListTopicsResponse{}); err != nil {
			t.Fatalf("after %s the endpoint no longer answers: %v", m.name, err)
		}
	})
}
