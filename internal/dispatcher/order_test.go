package dispatcher

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// gateWorld is a dispatcher whose handling and settling are recorded, fed
// deliveries as Google's Pub/Sub makes them.
type gateWorld struct {
	d     *Dispatcher
	now   time.Time
	mu    sync.Mutex
	fails map[string]int // failures left, by message id
	// handled lists message ids as handled; acked and nacked, as settled.
	handled, acked, nacked []string
	nacks                  chan string
}

func newGateWorld(hold, refuseDelay time.Duration) *gateWorld {
	w := &gateWorld{now: time.Unix(0, 0), fails: map[string]int{}, nacks: make(chan string, 100)}
	d := &Dispatcher{cfg: Config{HandleTimeout: time.Minute, OrderHold: hold, RefuseDelay: refuseDelay},
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d.order = newOrderGate(hold, refuseDelay, func() time.Time {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.now
	})
	d.handle = func(_ context.Context, m *pubsub.Message) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.fails[m.ID] > 0 {
			w.fails[m.ID]--
			return errInjected
		}
		w.handled = append(w.handled, m.ID)
		return nil
	}
	d.ack = func(m *pubsub.Message) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.acked = append(w.acked, m.ID)
	}
	d.nack = func(m *pubsub.Message) {
		w.mu.Lock()
		w.nacked = append(w.nacked, m.ID)
		w.mu.Unlock()
		w.nacks <- m.ID
	}
	w.d = d
	return w
}

// deliver hands the dispatcher deliveries of key k, one after another as
// the client library does for one ordering key.
func (w *gateWorld) deliver(ids ...string) {
	for _, id := range ids {
		w.d.process(context.Background(), &pubsub.Message{ID: id, OrderingKey: "k"})
	}
}

func (w *gateWorld) check(t *testing.T, what string, got *[]string, want ...string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Equal(*got, want) {
		t.Errorf("%s: %v, want %v", what, *got, want)
	}
}

// Google's Pub/Sub delivers m0, m1, m2, and after m0 is nacked, m0 again:
// m1 and m2 wait in hand for m0, and are handled after it, in order.
func TestOrderGateHoldsLaterMessagesUntilTheFailedOneIsHandled(t *testing.T) {
	w := newGateWorld(time.Hour, time.Hour)
	w.fails["m0"] = 1
	w.deliver("m0", "m1", "m2")
	w.check(t, "handled before m0's redelivery", &w.handled)
	w.check(t, "nacked", &w.nacked, "m0")
	w.deliver("m0")
	w.check(t, "handled", &w.handled, "m0", "m1", "m2")
	// The held ones are acked as they are handled, m0 once the gate is done.
	w.check(t, "acked", &w.acked, "m1", "m2", "m0")
	// Pub/Sub may redeliver them all again; the inbox, keyed by request
	// id, recognises them, and their order is kept.
	w.deliver("m1", "m2")
	w.check(t, "handled", &w.handled, "m0", "m1", "m2", "m1", "m2")
}

// Held messages are nacked after the refuse delay, in the order they came;
// Google's emulator redelivers such a batch in any order, and the gate
// still handles them in the order it first saw them.
func TestOrderGateKeepsFirstSeenOrderWhenRedeliveriesAreShuffled(t *testing.T) {
	w := newGateWorld(time.Hour, 10*time.Millisecond)
	w.fails["m0"] = 1
	w.deliver("m0", "m1", "m2", "m3")
	for _, want := range []string{"m0", "m1", "m2", "m3"} {
		if got := <-w.nacks; got != want {
			t.Fatalf("nacked %s, want %s (nacks in arrival order)", got, want)
		}
	}
	w.deliver("m3", "m1", "m2", "m0")
	w.check(t, "handled", &w.handled, "m0", "m1", "m2", "m3")
}

// A failed message that does not come back within the hold is given up:
// the later ones go on, in order.
func TestOrderGateGivesUpOnAMessageThatDoesNotComeBack(t *testing.T) {
	w := newGateWorld(time.Minute, time.Hour)
	w.fails["m0"] = 1
	w.deliver("m0", "m1")
	w.check(t, "handled", &w.handled)
	w.mu.Lock()
	w.now = w.now.Add(time.Minute)
	w.mu.Unlock()
	w.deliver("m2")
	w.check(t, "handled", &w.handled, "m1", "m2")
	w.check(t, "acked", &w.acked, "m1", "m2")
}

// A message that keeps failing stays first: nothing after it is handled.
func TestOrderGateKeepsAFailingMessageFirst(t *testing.T) {
	w := newGateWorld(time.Hour, time.Hour)
	w.fails["m0"] = 3
	w.deliver("m0", "m1", "m0", "m0", "m1")
	w.check(t, "handled", &w.handled)
	w.check(t, "nacked", &w.nacked, "m0", "m0", "m0")
	w.deliver("m0")
	w.check(t, "handled", &w.handled, "m0", "m1")
	w.check(t, "acked", &w.acked, "m1", "m1", "m0") // both copies of m1 held
}
