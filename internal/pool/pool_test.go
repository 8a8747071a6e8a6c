package pool

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
)

func TestDesired(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ago := func(ds ...time.Duration) []time.Time {
		var ts []time.Time
		for _, d := range ds {
			ts = append(ts, now.Add(-d))
		}
		return ts
	}
	burst := func(n int, over time.Duration) []time.Time { // n arrivals, evenly over a span
		var ts []time.Time
		for i := range n {
			ts = append(ts, now.Add(-time.Duration(i)*over/time.Duration(n)))
		}
		return ts
	}
	for _, tc := range []struct {
		name     string
		policy   Policy
		arrivals []time.Time
		ready    time.Duration
		want     int
	}{
		{"off", Policy{}, burst(10, time.Minute), 5 * time.Second, 0},
		{"unused pool keeps its minimum", Policy{Min: 1, Target: 4}, nil, 5 * time.Second, 1},
		{"unused for longer than the idle timeout", Policy{Min: 1, Target: 4, IdleTimeout: time.Minute}, ago(2 * time.Minute), 5 * time.Second, 1},
		{"recent arrival keeps the target", Policy{Target: 3}, ago(5 * time.Minute), 5 * time.Second, 3},
		// 60 arrivals over a minute is one a second; with 5 s to start a
		// member, 5 × 1.5 = 7.5, rounded up.
		{"grows with the arrival rate", Policy{Target: 2, Max: 20}, burst(60, time.Minute), 5 * time.Second, 8},
		// The rate is read over the span the arrivals cover: 20 in the
		// last 10 s are two a second at once, not a third of one.
		{"grows as soon as arrivals begin", Policy{Target: 2, Max: 20}, burst(20, 10*time.Second), 5 * time.Second, 15},
		{"one arrival is no flood", Policy{Target: 2, Max: 20}, ago(time.Second), 20 * time.Second, 3},
		{"growth is capped by the maximum", Policy{Target: 2, Max: 5}, burst(60, time.Minute), 5 * time.Second, 5},
		{"target above the maximum", Policy{Target: 50, Max: 5}, ago(time.Second), 5 * time.Second, 5},
		{"minimum above the target", Policy{Min: 3, Target: 1}, ago(time.Second), 5 * time.Second, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.policy.Desired(now, tc.arrivals, tc.ready); got != tc.want {
				t.Errorf("Desired = %d, want %d", got, tc.want)
			}
		})
	}
}

// launcher is a Cloud Run that records what the pool asks of it.
type launcher struct {
	mu        sync.Mutex
	launched  []string
	cancelled []string
}

func (l *launcher) LaunchPoolMember(ctx context.Context, memberID string, env map[string]string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if env[EnvMember] != memberID {
		return "", fmt.Errorf("env names member %q, not %q", env[EnvMember], memberID)
	}
	l.launched = append(l.launched, memberID)
	return "exec-" + memberID, nil
}

func (l *launcher) Cancel(ctx context.Context, execution string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancelled = append(l.cancelled, execution)
	return nil
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is a local cloud with a clock the test moves.
type world struct {
	t *testing.T
	// clock is the stores' and the pool's time, which the test moves.
	clock *memstore.Clock
}

func newWorld(t *testing.T) (*world, *emulator.Suite) {
	s := emulatortest.Start(t, emulator.Config{})
	return &world{t: t, clock: memstore.NewClock(time.Now())}, s
}

// store returns a store on a Firestore client of its own, as each
// dispatcher has.
func (w *world) store(project string) *session.Store {
	w.t.Helper()
	fs, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { fs.Close() })
	return session.NewStore(fs, nil, session.Config{Bucket: "unused", Now: w.clock.Now})
}

func (w *world) pool(st *session.Store, policy Policy, l Launcher, mp *sdkmetric.MeterProvider) *Pool {
	var p *Pool
	if mp != nil {
		p = New(policy, st, l, mp, discard)
	} else {
		p = New(policy, st, l, nil, discard)
	}
	p.now = w.clock.Now
	return p
}

// register makes n idle members and returns their ids.
func register(t *testing.T, st *session.Store, n int, ttl time.Duration) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("m-%d", i)
		if err := st.RegisterMember(context.Background(), id, "exec-"+id, ttl); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestClaimsRaceForFewMembers races dispatchers, each with its own
// Firestore client, for fewer idle members than there are new sessions:
// every member goes to exactly one session, no session gets two, and every
// other session misses and falls back.
func TestClaimsRaceForFewMembers(t *testing.T) {
	w, suite := newWorld(t)
	const dispatchers, sessionsEach, members = 6, 5, 4
	register(t, w.store(suite.Project), members, time.Hour)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	var mu sync.Mutex
	got := map[string][]string{} // execution → sessions handed to it
	misses := 0
	var wg sync.WaitGroup
	for d := range dispatchers {
		p := w.pool(w.store(suite.Project), Policy{Target: members}, &launcher{}, mp)
		for s := range sessionsEach {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sid := fmt.Sprintf("s-%d-%d", d, s)
				execution, err := p.Claim(context.Background(), sid, "launch-"+sid, "")
				if err != nil {
					t.Errorf("claim for %s: %v", sid, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if execution == "" {
					misses++
					return
				}
				got[execution] = append(got[execution], sid)
			}()
		}
	}
	wg.Wait()
	if len(got) != members {
		t.Errorf("%d members were handed sessions, want all %d: %v", len(got), members, got)
	}
	for execution, sessions := range got {
		if len(sessions) != 1 {
			t.Errorf("%s was handed %d sessions: %v", execution, len(sessions), sessions)
		}
	}
	if want := dispatchers*sessionsEach - members; misses != want {
		t.Errorf("%d misses, want %d", misses, want)
	}
	// What Firestore says agrees: each member assigned to the session that
	// was told it got it.
	st := w.store(suite.Project)
	for execution, sessions := range got {
		m, err := st.Member(context.Background(), execution[len("exec-"):])
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != session.MemberAssigned || m.SessionID != sessions[0] || m.LaunchID != "launch-"+sessions[0] {
			t.Errorf("member of %s: %+v, want assigned to %s", execution, m, sessions[0])
		}
	}
	// The metrics count hits and misses.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "sandrun.pool.claims" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				outcome, _ := dp.Attributes.Value("outcome")
				counts[outcome.AsString()] += dp.Value
			}
		}
	}
	if counts["hit"] != members || counts["miss"] != int64(dispatchers*sessionsEach-members) {
		t.Errorf("sandrun.pool.claims = %v, want %d hits and %d misses", counts, members, dispatchers*sessionsEach-members)
	}
	// And the pool's status reports the hit rate.
	status, err := w.pool(st, Policy{Target: members}, &launcher{}, nil).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if status.Hits != members || status.Misses != dispatchers*sessionsEach-members || status.Idle != 0 {
		t.Errorf("status %+v, want %d hits, %d misses, none idle", status, members, dispatchers*sessionsEach-members)
	}
}

// TestAwait follows a member: it registers idle, is handed a session and
// returns it; another leaves when unclaimed past its idle time, and a
// launch finds the pool empty.
func TestAwait(t *testing.T) {
	_, suite := newWorld(t)
	// Members run on the real clock: they wait on timers.
	fs, err := firestore.NewClient(context.Background(), suite.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	st := session.NewStore(fs, nil, session.Config{Bucket: "unused"})
	p := New(Policy{Target: 1}, st, &launcher{}, nil, discard)

	type result struct {
		a   *Assignment
		err error
	}
	await := func(cfg MemberConfig) chan result {
		ch := make(chan result, 1)
		go func() {
			a, err := Await(context.Background(), st, cfg, discard)
			ch <- result{a, err}
		}()
		return ch
	}
	waitIdle := func(id string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			m, err := st.Member(context.Background(), id)
			if err == nil && m.Status == session.MemberIdle {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %s never registered idle (%v, %v)", id, m, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	done := await(MemberConfig{ID: "m-a", Execution: "exec-a", IdleTimeout: time.Minute, TTL: 3 * time.Second})
	waitIdle("m-a")
	execution, err := p.Claim(context.Background(), "s1", "launch-1", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if err != nil || execution != "exec-a" {
		t.Fatalf("claim = %q, %v; want exec-a", execution, err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.a == nil || r.a.SessionID != "s1" || r.a.LaunchID != "launch-1" || r.a.Traceparent == "" {
			t.Fatalf("Await = %+v, %v; want session s1 of launch-1 with its trace context", r.a, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the claimed member was not told of its session")
	}

	left := await(MemberConfig{ID: "m-b", Execution: "exec-b", IdleTimeout: 300 * time.Millisecond, TTL: 3 * time.Second})
	select {
	case r := <-left:
		if r.err != nil || r.a != nil {
			t.Fatalf("unclaimed member: Await = %+v, %v; want nil, nil", r.a, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an unclaimed member did not leave after its idle time")
	}
	if execution, err := p.Claim(context.Background(), "s2", "launch-2", ""); err != nil || execution != "" {
		t.Errorf("claim after the member left = %q, %v; want a miss", execution, err)
	}
}

// TestRefill launches the policy's shortfall, counts members still
// starting, and replaces members that never registered or stopped
// renewing (killed while idle), cancelling their executions.
func TestRefill(t *testing.T) {
	w, suite := newWorld(t)
	st := w.store(suite.Project)
	l := &launcher{}
	policy := Policy{Min: 2, Target: 2, MemberTTL: 15 * time.Second, LaunchTimeout: time.Minute}
	p := w.pool(st, policy, l, nil)
	ctx := context.Background()

	if _, err := p.Refill(ctx); err != nil {
		t.Fatal(err)
	}
	if len(l.launched) != 2 {
		t.Fatalf("first refill launched %v, want 2 members", l.launched)
	}
	// Members still starting count: nothing more is launched.
	if _, err := p.Refill(ctx); err != nil {
		t.Fatal(err)
	}
	if len(l.launched) != 2 {
		t.Fatalf("second refill launched %v, want none more", l.launched)
	}
	// The first registers; the second never does.
	first, second := l.launched[0], l.launched[1]
	if err := st.RegisterMember(ctx, first, "exec-"+first, policy.MemberTTL); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(policy.LaunchTimeout + time.Second)
	if _, err := p.Refill(ctx); err != nil {
		t.Fatal(err)
	}
	// The idle one also lapsed meanwhile (its TTL is shorter than the
	// launch timeout): both are replaced.
	if !slices.Contains(l.cancelled, "exec-"+second) || !slices.Contains(l.cancelled, "exec-"+first) {
		t.Errorf("cancelled %v, want the executions of %s (never registered) and %s (stopped renewing)", l.cancelled, second, first)
	}
	if len(l.launched) != 4 {
		t.Errorf("launched %v, want two replacements", l.launched)
	}
	members, err := st.PoolMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range members {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	want := slices.Sorted(slices.Values(l.launched[2:]))
	if !slices.Equal(ids, want) {
		t.Errorf("pool holds %v, want the replacements %v", ids, want)
	}
	// A member that renews stays.
	for _, id := range want {
		if err := st.RegisterMember(ctx, id, "exec-"+id, policy.MemberTTL); err != nil {
			t.Fatal(err)
		}
	}
	w.clock.Advance(policy.MemberTTL / 3)
	for _, id := range want {
		if err := st.RenewMember(ctx, id, policy.MemberTTL); err != nil {
			t.Fatal(err)
		}
	}
	w.clock.Advance(policy.MemberTTL * 2 / 3)
	status, err := p.Refill(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.Idle != 2 || len(l.launched) != 4 {
		t.Errorf("after renewals: %+v, launched %v; want 2 idle and no launch", status, l.launched)
	}
}
