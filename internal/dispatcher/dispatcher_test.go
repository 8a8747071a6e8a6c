package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
)

// The dispatcher's decisions, on the in-memory store with a fake queue and
// launcher: no cloud.

// fakeQueue records what the dispatcher publishes and dead-letters; fail
// makes the next publishes fail.
type fakeQueue struct {
	mu          sync.Mutex
	published   [][]byte
	deadLetters []string
	fail        int
}

func (q *fakeQueue) PublishCompletion(ctx context.Context, data []byte, traceparent string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail > 0 {
		q.fail--
		return errors.New("publish failed")
	}
	q.published = append(q.published, data)
	return nil
}

func (q *fakeQueue) DeadLetter(ctx context.Context, m *pubsub.Message, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deadLetters = append(q.deadLetters, reason)
	return nil
}

// completions decodes what was published.
func (q *fakeQueue) completions(t *testing.T) []api.Completion {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []api.Completion
	for _, b := range q.published {
		var c api.Completion
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("published %q: %v", b, err)
		}
		out = append(out, c)
	}
	return out
}

// fakeLaunches records the launches requested, by session.
type fakeLaunches struct {
	mu       sync.Mutex
	requests []string
}

func (l *fakeLaunches) Request(sessionID string, claim *session.Launch, traceparent string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests = append(l.requests, sessionID)
}

type world struct {
	d        *Dispatcher
	store    *memstore.Store
	queue    *fakeQueue
	launches *fakeLaunches
}

func newWorld(t *testing.T) *world {
	clock := memstore.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	w := &world{store: memstore.New(session.Config{Bucket: "b", Now: clock.Now}), queue: &fakeQueue{}, launches: &fakeLaunches{}}
	w.d = New(Config{}, nil, w.store, w.queue, w.launches, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return w
}

func message(t testing.TB, req api.Request) *pubsub.Message {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return &pubsub.Message{ID: req.RequestID, Data: data, OrderingKey: req.SessionID,
		Attributes: map[string]string{api.AttrSessionID: req.SessionID, api.AttrRequestID: req.RequestID, api.AttrOp: string(req.Op)}}
}

func (w *world) handle(t *testing.T, m *pubsub.Message) error {
	t.Helper()
	return w.d.Handle(context.Background(), m)
}

func TestHandleQueuesWorkAndLaunchesOneHost(t *testing.T) {
	w := newWorld(t)
	for _, id := range []string{"r1", "r2"} {
		if err := w.handle(t, message(t, api.Request{RequestID: id, SessionID: "s1", Op: api.OpExec, Command: "true"})); err != nil {
			t.Fatal(err)
		}
	}
	// A redelivery changes nothing.
	if err := w.handle(t, message(t, api.Request{RequestID: "r1", SessionID: "s1", Op: api.OpExec, Command: "true"})); err != nil {
		t.Fatal(err)
	}
	if len(w.launches.requests) != 1 {
		t.Errorf("launches requested %v, want one for s1", w.launches.requests)
	}
	if len(w.queue.published) != 0 {
		t.Errorf("queued work was answered: %s", w.queue.published)
	}
	queued, _ := w.store.Queued(context.Background(), "s1", 10)
	if len(queued) != 2 || queued[0].RequestID != "r1" || queued[1].RequestID != "r2" {
		t.Errorf("queued %+v, want r1 then r2", queued)
	}
}

func TestHandleAnswersControlOnceEvenWhenThePublishFails(t *testing.T) {
	w := newWorld(t)
	m := message(t, api.Request{RequestID: "c1", SessionID: "s1", Op: api.OpSessionCreate})
	w.queue.fail = 1
	if err := w.handle(t, m); err == nil {
		t.Fatal("a failed publish was acknowledged")
	}
	if it, _ := w.store.Item(context.Background(), "s1", "c1"); it.Status != session.ItemDone || it.Published {
		t.Fatalf("after a failed publish the answer is %+v, want recorded and unpublished", it)
	}
	// The create claimed its session's host; the redelivery, a duplicate,
	// claims nothing, so the launch is requested whatever the publish did.
	if len(w.launches.requests) != 1 {
		t.Fatalf("launches requested after a failed publish of a create: %v, want one", w.launches.requests)
	}
	// The redelivery publishes the recorded answer, and marks it.
	if err := w.handle(t, m); err != nil {
		t.Fatal(err)
	}
	cs := w.queue.completions(t)
	if len(cs) != 1 || cs[0].Status != api.StatusOK || cs[0].Session == nil {
		t.Fatalf("published %+v, want one ok answer describing the session", cs)
	}
	if it, _ := w.store.Item(context.Background(), "s1", "c1"); !it.Published || string(w.queue.published[0]) != it.Completion {
		t.Errorf("published %s, recorded %+v", w.queue.published[0], it)
	}
	// A third delivery finds it published: nothing more.
	if err := w.handle(t, m); err != nil || len(w.queue.published) != 1 {
		t.Errorf("a published answer was published again (%d), %v", len(w.queue.published), err)
	}
	if len(w.launches.requests) != 1 {
		t.Errorf("launches requested: %v, want the create's one", w.launches.requests)
	}
}

func TestHandleRejectsInvalidRequestsOnce(t *testing.T) {
	w := newWorld(t)
	m := message(t, api.Request{RequestID: "bad", SessionID: "s1", Op: api.OpExec}) // no command
	for range 2 {
		if err := w.handle(t, m); err != nil {
			t.Fatal(err)
		}
	}
	cs := w.queue.completions(t)
	if len(cs) != 1 || cs[0].Error == nil || cs[0].Error.Code != api.CodeInvalidArgument {
		t.Fatalf("published %+v, want one INVALID_ARGUMENT", cs)
	}
	// A request whose attributes contradict it is answered too.
	m = message(t, api.Request{RequestID: "r2", SessionID: "s1", Op: api.OpExec, Command: "true"})
	m.Attributes[api.AttrOp] = string(api.OpFileRead)
	if err := w.handle(t, m); err != nil {
		t.Fatal(err)
	}
	if cs := w.queue.completions(t); len(cs) != 2 || cs[1].Error == nil || cs[1].Error.Code != api.CodeInvalidArgument {
		t.Errorf("attribute mismatch answered %+v", cs)
	}
	if len(w.launches.requests) != 0 {
		t.Errorf("rejected requests launched hosts: %v", w.launches.requests)
	}
}

func TestHandleDeadLettersWhatIsNotARequest(t *testing.T) {
	w := newWorld(t)
	if err := w.handle(t, &pubsub.Message{ID: "m", Data: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	if len(w.queue.deadLetters) != 1 || len(w.queue.published) != 0 {
		t.Errorf("dead letters %v, published %d", w.queue.deadLetters, len(w.queue.published))
	}
}

func TestHandleDestroyWithoutAHostAbortsWhatWaits(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	if err := w.handle(t, message(t, api.Request{RequestID: "r1", SessionID: "s1", Op: api.OpExec, Command: "true"})); err != nil {
		t.Fatal(err)
	}
	// Its launch waits in line: no host is starting.
	doc, _ := w.store.Session(ctx, "s1")
	if _, err := w.store.KeepClaim(ctx, "s1", doc.Launch.ID, doc.Launch.RequestedAt, session.WaitMaxHosts); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.WriteNewObject(ctx, "sessions/s1/results/r0/stdout", "text/plain", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	if err := w.handle(t, message(t, api.Request{RequestID: "d", SessionID: "s1", Op: api.OpSessionDestroy})); err != nil {
		t.Fatal(err)
	}
	got := map[string]api.ErrorCode{}
	for _, c := range w.queue.completions(t) {
		got[c.RequestID] = ""
		if c.Error != nil {
			got[c.RequestID] = c.Error.Code
		}
	}
	if len(got) != 2 || got["d"] != "" || got["r1"] != api.CodeAborted {
		t.Errorf("answers %v, want d ok and r1 ABORTED", got)
	}
	if doc, _ := w.store.Session(ctx, "s1"); doc.Status != session.StatusDestroyed || doc.PurgePending {
		t.Errorf("session after destroy %+v, want destroyed and purged", doc)
	}
	if _, err := w.store.OpenObject(ctx, "sessions/s1/results/r0/stdout"); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the destroyed session's object remains: %v", err)
	}
}
