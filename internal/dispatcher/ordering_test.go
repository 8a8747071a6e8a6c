package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/emulator/faults"
	"github.com/sandrun/sandrun/emulator/official"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/outbox"
	"github.com/sandrun/sandrun/internal/session"
)

// A failure planned for a request's first delivery.
type failure int

const (
	noFailure failure = iota // no failure
	nacked                   // the handling fails and the message is nacked
	expired                  // the handling fails and the nack is lost: the ack deadline expires
)

func (f failure) String() string { return [...]string{"none", "nacked", "expired"}[f] }

// orderScenario is a workload of ordered requests and the failure each
// request's first delivery meets.
type orderScenario struct {
	sessions, perSession int
	plan                 func(session, i int) failure
	// faults are injected into Pub/Sub (Google's emulator through the local cloud's proxy).
	faults []faults.Rule
}

// TestOrderedRedelivery checks the promise that a session's requests enter
// its inbox in publish order, each once, when Pub/Sub redelivers: a failed
// first delivery (nacked, or left for its ack deadline to expire) is
// redelivered after later messages of its ordering key have been delivered,
// as Google's Pub/Sub does. It runs on the local cloud and on Google's
// official Pub/Sub emulator (skipped without gcloud); Firestore is the local
// cloud's in both.
func TestOrderedRedelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the local cloud (and Google's Pub/Sub emulator): not a unit test")
	}
	scenarios := map[string]orderScenario{
		// r1 of r1, r2, r3 is nacked once.
		"three/nack": {sessions: 1, perSession: 3, plan: func(_, i int) failure { return failFirst(i, nacked) }},
		// r1's nack is lost: its deadline expires.
		"three/expire": {sessions: 1, perSession: 3, plan: func(_, i int) failure { return failFirst(i, expired) }},
		// r1 is nacked, and the stream ends with UNKNOWN, which the Go
		// client does not retry, three times; some acks are lost.
		"three/unknown": {sessions: 1, perSession: 3, plan: func(_, i int) failure { return failFirst(i, nacked) }, faults: []faults.Rule{
			{Service: faults.PubSub, Method: "StreamingPull", Rate: 1, Code: "UNKNOWN", Times: 3},
			{Service: faults.PubSub, Method: "Acknowledge", Rate: 0.3, Code: "UNAVAILABLE"},
		}},
		// 50 sessions of 20 requests; one first delivery in five fails,
		// alternately nacked and left to expire.
		"many": {sessions: 50, perSession: 20, plan: func(s, i int) failure {
			n := s*20 + i
			switch {
			case n%5 != 0:
				return noFailure
			case (n/5)%2 == 0:
				return nacked
			default:
				return expired
			}
		}},
	}
	for _, backend := range []string{"local", "google"} {
		for _, name := range []string{"three/nack", "three/expire", "three/unknown", "many"} {
			t.Run(backend+"/"+name, func(t *testing.T) {
				if testing.Short() && backend == "google" && name == "many" {
					t.Skip("the long run on Google's emulator is not part of -short")
				}
				runOrdered(t, backend, scenarios[name])
			})
		}
	}
}

func failFirst(i int, f failure) failure {
	if i == 0 {
		return f
	}
	return noFailure
}

var errInjected = errors.New("injected failure of a first delivery")

// stubLauncher launches nothing: the test looks at the inbox, not at hosts.
type stubLauncher struct{}

func (stubLauncher) Request(string, *session.Launch, string) {}

func runOrdered(t *testing.T, backend string, sc orderScenario) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const bucket = "sandrun-ordering"
	cfg := emulator.Config{Buckets: []string{bucket}}
	if backend == "google" {
		// Google's emulator, behind the local cloud's proxy so that the
		// scenario's faults reach it. It serves every project: one of the
		// test's own keeps it apart from the other tests sharing it.
		cfg.ExternalPubSub = official.PubSub(t)
		cfg.Project = official.Project(t)
	}
	suite := emulatortest.Start(t, cfg)
	for _, r := range sc.faults {
		if err := suite.Faults.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	clients, err := gcp.Connect(ctx, suite.Project, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clients.Close() })
	names := outbox.DefaultNames()
	if err := outbox.Provision(ctx, clients.PubSub, names); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	t.Cleanup(func() {
		if t.Failed() {
			logMu.Lock()
			defer logMu.Unlock()
			t.Logf("dispatcher logs (last 64 KB):\n%s", tail(logs.String(), 64<<10))
		}
	})
	store := session.NewStore(clients.Firestore, clients.Storage, session.Config{Bucket: bucket})
	q := outbox.NewPublisher(clients.PubSub, names, logger)
	t.Cleanup(q.Stop)
	sub := clients.PubSub.Subscriber(names.Dispatcher)
	// A message left unsettled is not kept alive for long: its deadline
	// expires and Pub/Sub redelivers it.
	sub.ReceiveSettings.MaxExtension = time.Second
	d := New(Config{}, sub, store, q, stubLauncher{}, logger)

	// The plan, by request id; what each request went through.
	type record struct {
		fail       failure
		deliveries int
		handled    bool
	}
	var (
		mu      sync.Mutex
		records = map[string]*record{}
		left    = sc.sessions * sc.perSession
		allDone = make(chan struct{})
		lost    sync.Map // *pubsub.Message whose nack is lost
	)
	var reqs []api.Request
	for i := range sc.perSession {
		for s := range sc.sessions {
			sid := fmt.Sprintf("order-%02d", s)
			rid := fmt.Sprintf("%s-%03d", sid, i)
			reqs = append(reqs, api.Request{RequestID: rid, SessionID: sid, Op: api.OpExec, Command: "true"})
			records[rid] = &record{fail: sc.plan(s, i)}
		}
	}
	d.handle = func(ctx context.Context, m *pubsub.Message) error {
		rid := m.Attributes[api.AttrRequestID]
		mu.Lock()
		r := records[rid]
		r.deliveries++
		if r.deliveries == 1 && r.fail != noFailure {
			if r.fail == expired {
				lost.Store(m, true)
			}
			mu.Unlock()
			return errInjected
		}
		mu.Unlock()
		if err := d.Handle(ctx, m); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if !r.handled {
			r.handled = true
			if left--; left == 0 {
				close(allDone)
			}
		}
		return nil
	}
	d.nack = func(m *pubsub.Message) {
		if _, ok := lost.LoadAndDelete(m); !ok {
			m.Nack()
		}
	}

	p := clients.PubSub.Publisher(names.Requests)
	p.EnableMessageOrdering = true
	var results []*pubsub.PublishResult
	for _, r := range reqs {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, p.Publish(ctx, &pubsub.Message{Data: data, Attributes: r.Attributes(), OrderingKey: r.SessionID}))
	}
	for _, res := range results {
		if _, err := res.Get(ctx); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	p.Stop()

	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- d.Run(runCtx) }()
	select {
	case <-allDone:
	case err := <-ran:
		t.Fatalf("dispatcher stopped before every request was handled: %v", err)
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("only %d of %d requests handled in time", sc.sessions*sc.perSession-left, sc.sessions*sc.perSession)
	}
	stop()
	if err := <-ran; err != nil {
		t.Errorf("dispatcher: %v", err)
	}

	// Each session's inbox holds its requests once each, in publish order.
	outOfOrder := 0
	for s := range sc.sessions {
		sid := fmt.Sprintf("order-%02d", s)
		items, err := store.Queued(ctx, sid, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range items {
			got = append(got, strings.TrimPrefix(it.RequestID, sid+"-"))
		}
		want := make([]string, sc.perSession)
		for i := range want {
			want[i] = fmt.Sprintf("%03d", i)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			outOfOrder++
			if outOfOrder <= 5 {
				t.Errorf("session %s: inbox order %v, want publish order %v", sid, got, want)
			}
		}
	}
	if outOfOrder > 0 {
		t.Errorf("%d of %d sessions out of publish order (%s)", outOfOrder, sc.sessions, backend)
	}
	for _, r := range suite.Faults.Rules() {
		if r.Rule.Method == "StreamingPull" && r.Injected == 0 {
			t.Errorf("no stream ended with %s: the fault was not exercised", r.Rule.Code)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
