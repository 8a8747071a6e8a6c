package session_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/emulator/firestore"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/session"
)

// pausingClock is a store clock that, once armed, blocks its next caller
// until released. Enqueue reads the clock inside its transaction after its
// reads, so a paused Enqueue holds its transaction's locks as a dispatcher
// killed at that point does (Firestore keeps them for up to 60 s).
type pausingClock struct {
	mu      sync.Mutex
	armed   bool
	paused  chan struct{}
	release chan struct{}
}

func (c *pausingClock) now() time.Time {
	c.mu.Lock()
	armed := c.armed
	c.armed = false
	c.mu.Unlock()
	if armed {
		close(c.paused)
		<-c.release
	}
	return time.Now()
}

func newStores(t *testing.T) (dispatcher, host *session.Store, clock *pausingClock) {
	t.Helper()
	dispatcher, host, clock, _ = newStoresWithUsage(t)
	return dispatcher, host, clock
}

// newStoresWithUsage is newStores, with the local Firestore's billing
// counters.
func newStoresWithUsage(t *testing.T) (dispatcher, host *session.Store, clock *pausingClock, usage *firestore.Usage) {
	t.Helper()
	return newStoresOn(t, emulatortest.Start)
}

// newStoresOn is newStoresWithUsage on the suite that start starts
// (emulatortest.Start or StartOnOfficial).
func newStoresOn(t *testing.T, start func(testing.TB, emulator.Config) *emulator.Suite) (dispatcher, host *session.Store, clock *pausingClock, usage *firestore.Usage) {
	t.Helper()
	const bucket = "locks-test"
	s := start(t, emulator.Config{Buckets: []string{bucket}})
	ctx := context.Background()
	clients, err := gcp.Connect(ctx, s.Project, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clients.Close() })
	clock = &pausingClock{paused: make(chan struct{}), release: make(chan struct{})}
	dispatcher = session.NewStore(clients.Firestore, clients.Storage, session.Config{Bucket: bucket, Now: clock.now})
	host = session.NewStore(clients.Firestore, clients.Storage, session.Config{Bucket: bucket})
	return dispatcher, host, clock, s.FirestoreUsage
}

func enqueue(ctx context.Context, s *session.Store, sessionID, requestID string) (session.Accepted, error) {
	req := &api.Request{RequestID: requestID, SessionID: sessionID, Op: api.OpExec, Command: "true"}
	raw, _ := json.Marshal(req)
	return s.Enqueue(ctx, req, raw, "")
}

// pauseEnqueue starts an Enqueue that stops inside its transaction, and
// returns once it holds its locks; the returned func lets it finish.
func pauseEnqueue(t *testing.T, s *session.Store, clock *pausingClock, sessionID, requestID string) (finish func()) {
	t.Helper()
	clock.mu.Lock()
	clock.armed = true
	clock.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := enqueue(context.Background(), s, sessionID, requestID)
		done <- err
	}()
	<-clock.paused
	return func() {
		close(clock.release)
		if err := <-done; err != nil {
			t.Errorf("paused enqueue: %v", err)
		}
	}
}

// A dispatcher stuck (or killed) inside an enqueue must not keep the
// session's host from renewing its lease: the lease lasts 15 s, the stuck
// transaction's locks 60 s.
func TestRenewNotBlockedByEnqueueInFlight(t *testing.T) {
	ctx := context.Background()
	disp, host, clock := newStores(t)
	if _, err := enqueue(ctx, host, "s1", "r1"); err != nil {
		t.Fatal(err)
	}
	lease, err := host.Acquire(ctx, "s1", "exec-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	finish := pauseEnqueue(t, disp, clock, "s1", "r2")
	defer finish()
	// Well under the lease's life, and more than the 2 s lock timeout.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := host.Renew(rctx, lease, time.Minute); err != nil {
		t.Fatalf("renew while an enqueue is in flight: %v", err)
	}
}

// The reaper's recovery of a lapsed host writes the lease document; an
// enqueue stuck in its transaction must not hold that up.
func TestRecoverHostNotBlockedByEnqueueInFlight(t *testing.T) {
	ctx := context.Background()
	disp, host, clock := newStores(t)
	if _, err := enqueue(ctx, host, "s1", "r1"); err != nil {
		t.Fatal(err)
	}
	lease, err := host.Acquire(ctx, "s1", "exec-1", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := host.Start(ctx, lease, session.Item{RequestID: "r1"}); err != nil || !ok {
		t.Fatalf("start: ok=%v, %v", ok, err)
	}
	time.Sleep(5 * time.Millisecond) // the lease lapses
	finish := pauseEnqueue(t, disp, clock, "s1", "r2")
	defer finish()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lost, recovered, err := host.RecoverHost(rctx, "s1")
	if err != nil || !recovered || len(lost) != 1 {
		t.Fatalf("recover while an enqueue is in flight: recovered=%v lost=%d, %v", recovered, len(lost), err)
	}
}

// An enqueue stuck (or killed) between its read and its write holds up no
// other enqueue of the session: it locks nothing. Before, it was a
// transaction whose read locked the session document, which every other
// enqueue writes, for up to 60 s when its dispatcher died. The stuck one,
// once it goes on, finds the session changed and takes the next number.
func TestEnqueueNotBlockedByEnqueueInFlight(t *testing.T) {
	for name, start := range map[string]func(testing.TB, emulator.Config) *emulator.Suite{
		"LocalCloud": emulatortest.Start, "GoogleEmulator": emulatortest.StartOnOfficial} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			disp, other, clock, _ := newStoresOn(t, start)
			if _, err := enqueue(ctx, other, "s1", "r1"); err != nil {
				t.Fatal(err)
			}
			finish := pauseEnqueue(t, disp, clock, "s1", "r2")
			// More than the 2 s lock timeout that a locked write waits.
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			acc, err := enqueue(rctx, other, "s1", "r3")
			if err != nil || acc.Item.Seq != 1 {
				finish()
				t.Fatalf("enqueue while another is in flight: seq %d, %v; want seq 1", acc.Item.Seq, err)
			}
			finish()
			it, err := other.Item(ctx, "s1", "r2")
			if err != nil || it.Seq != 2 {
				t.Fatalf("the enqueue that was in flight: %+v, %v; want seq 2", it, err)
			}
		})
	}
}
