package faults

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRuleValidate(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		ok   bool
	}{
		{"error rate", Rule{Service: Firestore, Rate: 0.5, Code: "ABORTED"}, true},
		{"lower-case code", Rule{Service: CloudRun, Rate: 1, Code: "resource_exhausted"}, true},
		{"default code", Rule{Service: PubSub, Rate: 1}, true},
		{"latency only", Rule{Service: Storage, Latency: Duration(time.Millisecond)}, true},
		{"storage status", Rule{Service: Storage, Rate: 1, HTTPStatus: 503}, true},
		{"unknown service", Rule{Service: "bigtable", Rate: 1}, false},
		{"rate above one", Rule{Service: PubSub, Rate: 1.5}, false},
		{"negative rate", Rule{Service: PubSub, Rate: -0.1}, false},
		{"does nothing", Rule{Service: PubSub}, false},
		{"unknown code", Rule{Service: Firestore, Rate: 1, Code: "SLOW"}, false},
		{"OK is no error", Rule{Service: Firestore, Rate: 1, Code: "OK"}, false},
		{"code on storage", Rule{Service: Storage, Rate: 1, Code: "ABORTED"}, false},
		{"status on grpc", Rule{Service: Firestore, Rate: 1, HTTPStatus: 503}, false},
		{"success status", Rule{Service: Storage, Rate: 1, HTTPStatus: 200}, false},
		{"negative latency", Rule{Service: Storage, Latency: -1}, false},
		{"negative times", Rule{Service: Storage, Rate: 1, Times: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rule.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tt.rule, err, tt.ok)
			}
		})
	}
}

func TestRuleJSON(t *testing.T) {
	var r Rule
	if err := json.Unmarshal([]byte(`{"service":"firestore","method":"Commit","rate":0.25,"code":"ABORTED","latency":"150ms","times":3}`), &r); err != nil {
		t.Fatal(err)
	}
	want := Rule{Service: Firestore, Method: "Commit", Rate: 0.25, Code: "ABORTED", Latency: Duration(150 * time.Millisecond), Times: 3}
	if r != want {
		t.Fatalf("decoded %+v, want %+v", r, want)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Rule
	if err := json.Unmarshal(b, &back); err != nil || back != want {
		t.Fatalf("round trip through %s gave %+v, %v", b, back, err)
	}
}

// unary calls the injector's interceptor the way a gRPC server would.
func unary(in *Injector, service, method string) error {
	handler := func(ctx context.Context, req any) (any, error) { return "ok", nil }
	_, err := in.UnaryInterceptor(service)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method}, handler)
	return err
}

func TestInjectorUnary(t *testing.T) {
	in := New()
	const commit = "/google.firestore.v1.Firestore/Commit"
	if err := unary(in, Firestore, commit); err != nil {
		t.Fatalf("no rules: %v", err)
	}
	if err := in.Add(Rule{Service: Firestore, Method: "Commit", Rate: 1, Code: "ABORTED", Times: 2}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if got := status.Code(unary(in, Firestore, commit)); got != codes.Aborted {
			t.Fatalf("call %d: code %v, want Aborted", i, got)
		}
	}
	if err := unary(in, Firestore, commit); err != nil {
		t.Fatalf("after Times ran out: %v", err)
	}
	if err := unary(in, Firestore, "/google.firestore.v1.Firestore/BatchGetDocuments"); err != nil {
		t.Fatalf("other method: %v", err)
	}
	if err := unary(in, PubSub, "/google.pubsub.v1.Publisher/Commit"); err != nil {
		t.Fatalf("other service: %v", err)
	}
	stats := in.Rules()
	if len(stats) != 1 || stats[0].Matched != 3 || stats[0].Injected != 2 {
		t.Fatalf("stats %+v, want matched 3 injected 2", stats)
	}
	in.Clear(Firestore)
	if len(in.Rules()) != 0 {
		t.Fatalf("rules left after Clear: %+v", in.Rules())
	}
}

func TestInjectorRate(t *testing.T) {
	in := New()
	rolls := []float64{0.1, 0.6, 0.29, 0.3}
	in.chance = func() float64 { r := rolls[0]; rolls = rolls[1:]; return r }
	if err := in.Add(Rule{Service: CloudRun, Rate: 0.3, Code: "RESOURCE_EXHAUSTED"}); err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.ResourceExhausted, codes.OK, codes.ResourceExhausted, codes.OK}
	for i, w := range want {
		if got := status.Code(unary(in, CloudRun, "/google.cloud.run.v2.Jobs/RunJob")); got != w {
			t.Fatalf("call %d: %v, want %v", i, got, w)
		}
	}
}

func TestInjectorLatencyHonoursContext(t *testing.T) {
	in := New()
	if err := in.Add(Rule{Service: PubSub, Latency: Duration(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	handler := func(ctx context.Context, req any) (any, error) { return nil, nil }
	_, err := in.UnaryInterceptor(PubSub)(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/google.pubsub.v1.Publisher/Publish"}, handler)
	if status.Code(err) != codes.Canceled {
		t.Fatalf("got %v, want Canceled", err)
	}
}

func TestHTTPMiddleware(t *testing.T) {
	in := New()
	srv := httptest.NewServer(in.HTTPMiddleware(Storage, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	t.Cleanup(srv.Close)
	if err := in.Add(Rule{Service: Storage, Method: "/upload/", Rate: 1, HTTPStatus: 503}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/upload/storage/v1/b/x/o", http.StatusServiceUnavailable},
		{"/storage/v1/b/x/o", http.StatusNoContent},
	} {
		resp, err := http.Post(srv.URL+tc.path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST %s: %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
}
