// Package storetest is the contract of a session store: the behaviour the
// dispatcher, the host, the reaper and the launcher rely on, asserted once
// and run against every implementation (the Firestore-backed
// session.Store on the local cloud and on Google's Firestore emulator, and
// memstore.Store), so that the in-memory store used by unit tests cannot
// drift from the real one.
//
// Each case works in sessions of its own (ids unique to the run), and
// reads what queries across sessions return only for those, so that cases
// may share one database.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/dispatcher"
	"github.com/sandrun/sandrun/internal/host"
	"github.com/sandrun/sandrun/internal/launch"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/reaper"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
)

// Store is every role's view of a session store (the pool's too, whose
// records the session store keeps today), and the reads the
// contract checks with.
type Store interface {
	dispatcher.Store
	host.Store
	reaper.Store
	launch.Store
	pool.Store
	pool.MemberStore
	Session(ctx context.Context, id string) (*session.Doc, error)
	Item(ctx context.Context, sessionID, requestID string) (*session.Item, error)
}

// Stores is a store under test and the clock it was configured with
// (session.Config.Now = Clock.Now), which the contract moves.
type Stores struct {
	Store Store
	Clock *memstore.Clock
}

// LaunchTimeout is the session.Config.LaunchTimeout that open must give
// the store (the contract lets launches time out).
const LaunchTimeout = time.Minute

// Run runs the contract; open returns a store for one case, configured
// with LaunchTimeout and a clock of its own.
func Run(t *testing.T, open func(t *testing.T) Stores) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, s Stores)
	}{
		{"EnqueueOrdersAndDeduplicates", enqueueOrdersAndDeduplicates},
		{"RacingEnqueuesGetConsecutiveSequences", racingEnqueuesGetConsecutiveSequences},
		{"RacingRedeliveriesAreAcceptedOnce", racingRedeliveriesAreAcceptedOnce},
		{"RequestAfterItsHostLeftGetsAHost", requestAfterItsHostLeftGetsAHost},
		{"RequestAfterItsHostWasRecoveredGetsAHost", requestAfterItsHostWasRecoveredGetsAHost},
		{"ControlIsAnsweredWithoutAHost", controlIsAnsweredWithoutAHost},
		{"DestroyWithoutAHostAbortsAndPurges", destroyWithoutAHostAbortsAndPurges},
		{"DestroyOfAHostedSessionWaitsItsTurn", destroyOfAHostedSessionWaitsItsTurn},
		{"LeaseIsFenced", leaseIsFenced},
		{"RacingHostsAcquireOnce", racingHostsAcquireOnce},
		{"StartAndFinishOnce", startAndFinishOnce},
		{"StartMarksTheRequestInTheLease", startMarksTheRequestInTheLease},
		{"StartOfAStaleItemIsRefused", startOfAStaleItemIsRefused},
		{"HostThatLostTheSessionWritesNothing", hostThatLostTheSessionWritesNothing},
		{"FinishWithTheStartedVersionRecordsOnce", finishWithTheStartedVersionRecordsOnce},
		{"RenewalsRacingStartsKeepTheLease", renewalsRacingStartsKeepTheLease},
		{"WatchQueuedSendsTheQueue", watchQueuedSendsTheQueue},
		{"LapsedHostIsRecoveredHostLost", lapsedHostIsRecoveredHostLost},
		{"OrphanOfAForcedReleaseIsHostLost", orphanOfAForcedReleaseIsHostLost},
		{"RelaunchClaimsAndGivesUp", relaunchClaimsAndGivesUp},
		{"UnpublishedCompletionsAreFound", unpublishedCompletionsAreFound},
		{"HostCompletionIsPublishedThroughTheLease", hostCompletionIsPublishedThroughTheLease},
		{"ReaperDestroyFencesTheHost", reaperDestroyFencesTheHost},
		{"ObjectsAndCheckpoints", objectsAndCheckpoints},
		{"PoolMembersAreClaimedOnce", poolMembersAreClaimedOnce},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
}

// sid returns a session id no other case or run uses.
func sid(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "st-" + hex.EncodeToString(b)
}

func request(sessionID, requestID string, op api.Op) (*api.Request, []byte) {
	req := &api.Request{RequestID: requestID, SessionID: sessionID, Op: op}
	if op == api.OpExec {
		req.Command = "true"
	}
	raw, _ := json.Marshal(req)
	return req, raw
}

func enqueue(t *testing.T, s Store, sessionID, requestID string, op api.Op) session.Accepted {
	t.Helper()
	req, raw := request(sessionID, requestID, op)
	acc, err := s.Enqueue(context.Background(), req, raw, "")
	if err != nil {
		t.Fatalf("enqueue %s %s: %v", op, requestID, err)
	}
	return acc
}

// completion decodes a recorded completion.
func completion(t *testing.T, b []byte) api.Completion {
	t.Helper()
	var c api.Completion
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("decode completion %q: %v", b, err)
	}
	return c
}

func code(c api.Completion) api.ErrorCode {
	if c.Error == nil {
		return ""
	}
	return c.Error.Code
}

func ids(items []session.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.RequestID)
	}
	return out
}

// unpublishedOf is what the reaper would find unpublished of the session
// (cut off a second from now).
func unpublishedOf(t *testing.T, st Stores, sessionID string) []session.Unpublished {
	t.Helper()
	us, err := st.Store.Unpublished(context.Background(), st.Clock.Now().Add(time.Second), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var mine []session.Unpublished
	for _, u := range us {
		if u.SessionID == sessionID {
			mine = append(mine, u)
		}
	}
	return mine
}

func unpublishedIDs(us []session.Unpublished) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.RequestID)
	}
	slices.Sort(out)
	return out
}

func item(t *testing.T, s Store, sessionID, requestID string) *session.Item {
	t.Helper()
	it, err := s.Item(context.Background(), sessionID, requestID)
	if err != nil {
		t.Fatalf("item %s: %v", requestID, err)
	}
	return it
}

func acquire(t *testing.T, s Store, sessionID, execution string, ttl time.Duration) *session.Lease {
	t.Helper()
	lease, err := s.Acquire(context.Background(), sessionID, execution, ttl)
	if err != nil {
		t.Fatalf("acquire for %s: %v", execution, err)
	}
	return lease
}

func finish(t *testing.T, s Store, lease *session.Lease, requestID string, stdout string) []byte {
	t.Helper()
	c := &api.Completion{RequestID: requestID, SessionID: lease.SessionID, Op: api.OpExec, Status: api.StatusOK, Stdout: stdout}
	b, err := s.Finish(context.Background(), lease, time.Time{}, c, nil, nil)
	if err != nil {
		t.Fatalf("finish %s: %v", requestID, err)
	}
	return b
}

// Requests of a session get consecutive sequence numbers in the order they
// are accepted, the first claims the session's host launch and the later
// ones none while it is in flight, and a request id is accepted once.
func enqueueOrdersAndDeduplicates(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	var launches int
	for i, r := range []string{"r1", "r2", "r3"} {
		acc := enqueue(t, s, id, r, api.OpExec)
		if acc.Duplicate || acc.Answer != nil || acc.Item.Status != session.ItemQueued || acc.Item.Seq != int64(i) {
			t.Fatalf("%s: accepted %+v, want queued with seq %d", r, acc, i)
		}
		if acc.Launch != nil {
			launches++
		}
	}
	if launches != 1 {
		t.Errorf("%d launches claimed for one session without a host, want 1", launches)
	}
	acc := enqueue(t, s, id, "r2", api.OpExec)
	if !acc.Duplicate || acc.Item.Seq != 1 || acc.Launch != nil {
		t.Errorf("a redelivered request was accepted again: %+v", acc)
	}
	queued, err := s.Queued(ctx, id, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(queued); !slices.Equal(got, []string{"r1", "r2", "r3"}) {
		t.Errorf("queued %v, want r1 r2 r3", got)
	}
	if got, _ := s.Queued(ctx, id, 2); len(got) != 2 {
		t.Errorf("Queued with limit 2 gave %d items", len(got))
	}
	doc, err := s.Session(ctx, id)
	if err != nil || doc.Status != session.StatusActive || doc.NextSeq != 3 {
		t.Errorf("session %+v, %v; want active with next seq 3", doc, err)
	}
}

// Enqueues of one session that race (two dispatchers, or a redelivery
// beside a later request) each get their own sequence number, the numbers
// are consecutive, and the session's one host launch is claimed once; and
// so once a host holds the session (when a store may enqueue without
// reading first).
func racingEnqueuesGetConsecutiveSequences(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	const n = 8
	race := func(round string, first int64) (launches int) {
		accs := enqueueAll(t, s, id, func(i int) string { return fmt.Sprintf("%s-%d", round, i) }, n)
		var seqs []int64
		for _, acc := range accs {
			if acc.Duplicate || acc.Item.Status != session.ItemQueued {
				t.Errorf("%s: accepted %+v, want queued", acc.Item.RequestID, acc)
			}
			seqs = append(seqs, acc.Item.Seq)
			if acc.Launch != nil {
				launches++
			}
		}
		slices.Sort(seqs)
		for i, seq := range seqs {
			if seq != first+int64(i) {
				t.Fatalf("%s: sequence numbers %v, want %d to %d once each", round, seqs, first, first+n-1)
			}
		}
		return launches
	}
	if launches := race("unhosted", 0); launches != 1 {
		t.Errorf("%d launches claimed, want 1", launches)
	}
	acquire(t, s, id, "exec-1", time.Minute)
	enqueue(t, s, id, "seen", api.OpExec)
	if launches := race("hosted", n+1); launches != 0 {
		t.Errorf("%d launches claimed for a hosted session", launches)
	}
	queued, err := s.Queued(ctx, id, 4*n)
	if err != nil || len(queued) != 2*n+1 {
		t.Fatalf("queued %v, %v; want %d", ids(queued), err, 2*n+1)
	}
	for i, it := range queued {
		if it.Seq != int64(i) {
			t.Errorf("queued item %d is %s with seq %d", i, it.RequestID, it.Seq)
		}
	}
	doc, err := s.Session(ctx, id)
	if err != nil || doc.NextSeq != 2*n+1 || doc.LaunchAttempts != 1 {
		t.Errorf("session %+v, %v; want next seq %d and one launch attempt", doc, err, 2*n+1)
	}
}

// A request delivered to several dispatchers at once is accepted by one:
// one item, one sequence number, the others told it is a duplicate of it.
func racingRedeliveriesAreAcceptedOnce(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "first", api.OpExec)
	const n = 6
	accs := enqueueAll(t, s, id, func(int) string { return "again" }, n)
	accepted := 0
	for _, acc := range accs {
		if !acc.Duplicate {
			accepted++
		}
		if acc.Item.Seq != 1 || acc.Item.RequestID != "again" {
			t.Errorf("answered %+v, want the item with seq 1", acc)
		}
	}
	if accepted != 1 {
		t.Errorf("the request was accepted %d times, want once", accepted)
	}
	doc, err := s.Session(ctx, id)
	if err != nil || doc.NextSeq != 2 {
		t.Errorf("session %+v, %v; want next seq 2", doc, err)
	}
}

// A request that comes after the session's host left (released its lease
// with nothing queued) gets a new host, however recently the session was
// served: it is not left queued for the host that is gone.
func requestAfterItsHostLeftGetsAHost(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	for _, r := range []string{"r2", "r3"} {
		if acc := enqueue(t, s, id, r, api.OpExec); acc.Launch != nil {
			t.Errorf("%s claimed a launch with a live host", r)
		}
	}
	for _, r := range []string{"r1", "r2", "r3"} {
		if _, ok, err := s.Start(ctx, lease, session.Item{RequestID: r}); err != nil || !ok {
			t.Fatalf("start %s: %v %v", r, ok, err)
		}
		finish(t, s, lease, r, "")
	}
	if err := s.Release(ctx, lease, false); err != nil {
		t.Fatal(err)
	}
	// Past the lease the host had: a store that remembers the host it saw
	// must not take it for one that merely lapsed.
	st.Clock.Advance(2 * time.Minute)
	acc := enqueue(t, s, id, "r4", api.OpExec)
	if acc.Launch == nil || acc.Item.Status != session.ItemQueued || acc.Item.Seq != 3 {
		t.Errorf("after the host left: %+v, want queued with seq 3 and a launch", acc)
	}
}

// A request that comes after the reaper took the session from its lapsed
// host claims a launch itself, from a store that saw the host: nothing
// after the enqueue's commit checks the host again, so the recovery must
// make that commit fail and the enqueue read.
func requestAfterItsHostWasRecoveredGetsAHost(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	lease := acquire(t, s, id, "exec-1", 10*time.Second)
	if acc := enqueue(t, s, id, "r2", api.OpExec); acc.Launch != nil {
		t.Errorf("r2 claimed a launch with a live host")
	}
	if _, ok, err := s.Start(ctx, lease, session.Item{RequestID: "r1"}); err != nil || !ok {
		t.Fatalf("start r1: %v %v", ok, err)
	}
	st.Clock.Advance(20 * time.Second)
	// The lapsed host is not recovered yet: it may still run r1.
	if acc := enqueue(t, s, id, "r3", api.OpExec); acc.Launch != nil {
		t.Errorf("r3 claimed a launch before the lapsed host was recovered")
	}
	if _, recovered, err := s.RecoverHost(ctx, id); err != nil || !recovered {
		t.Fatalf("recover: %v %v", recovered, err)
	}
	acc := enqueue(t, s, id, "r4", api.OpExec)
	if acc.Launch == nil || acc.Item.Status != session.ItemQueued || acc.Item.Seq != 3 {
		t.Errorf("after the host was recovered: %+v, want queued with seq 3 and a launch", acc)
	}
	if acc := enqueue(t, s, id, "r5", api.OpExec); acc.Launch != nil || acc.Item.Seq != 4 {
		t.Errorf("r5: %+v, want seq 4 and the launch r4 claimed in flight", acc)
	}
}

// atOnce runs n goroutines, each prepared by prepare(i) and then released
// together to run what it returned, and waits for them all.
func atOnce(n int, prepare func(i int) func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := prepare(i)
			<-start
			run()
		}()
	}
	close(start)
	wg.Wait()
}

// enqueueAll enqueues exec requests named name(0) ... name(n-1) of the
// session at once, and returns what each was answered.
func enqueueAll(t *testing.T, s Store, sessionID string, name func(int) string, n int) []session.Accepted {
	t.Helper()
	accs := make([]session.Accepted, n)
	errs := make([]error, n)
	atOnce(n, func(i int) func() {
		req, raw := request(sessionID, name(i), api.OpExec)
		return func() { accs[i], errs[i] = s.Enqueue(context.Background(), req, raw, "") }
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("racing enqueues: %v", err)
	}
	return accs
}

// session.get and session.create are answered without a host, recorded
// done and unpublished; a rejection is recorded once.
func controlIsAnsweredWithoutAHost(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	acc := enqueue(t, s, id, "get1", api.OpSessionGet)
	if acc.Answer == nil || code(completion(t, []byte(acc.Item.Completion))) != api.CodeNotFound || acc.Launch != nil {
		t.Fatalf("get of a missing session: %+v", acc)
	}
	if _, err := s.Session(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a get created the session: %v", err)
	}
	acc = enqueue(t, s, id, "create", api.OpSessionCreate)
	if acc.Answer == nil || acc.Answer.Status != api.StatusOK || acc.Launch == nil || acc.Item.Status != session.ItemDone || acc.Item.Published {
		t.Fatalf("create: %+v", acc)
	}
	acc = enqueue(t, s, id, "get2", api.OpSessionGet)
	c := completion(t, []byte(acc.Item.Completion))
	if c.Status != api.StatusOK || c.Session == nil || c.Session.Status != session.StatusActive || acc.Launch != nil {
		t.Errorf("get of an active session: %+v", c)
	}
	if err := s.MarkPublished(ctx, id, "get2"); err != nil {
		t.Fatal(err)
	}
	if !item(t, s, id, "get2").Published {
		t.Error("MarkPublished did not mark the item")
	}
	rej := api.ErrorCompletion("bad", id, api.OpExec, api.CodeInvalidArgument, "no command")
	it, dup, err := s.Reject(ctx, rej, []byte(`{"op":"exec"}`))
	if err != nil || dup || it.Status != session.ItemDone || code(completion(t, []byte(it.Completion))) != api.CodeInvalidArgument {
		t.Fatalf("reject: %+v %v %v", it, dup, err)
	}
	if it2, dup, err := s.Reject(ctx, rej, []byte(`{"op":"exec"}`)); err != nil || !dup || it2.Completion != it.Completion {
		t.Errorf("a second rejection was recorded again: %+v %v %v", it2, dup, err)
	}
}

// A destroy of a session that no host runs or is starting for is done at
// once: queued requests are answered ABORTED, the session's objects are
// purged before it lives again, and its sequence goes on.
func destroyWithoutAHostAbortsAndPurges(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	acc := enqueue(t, s, id, "r1", api.OpExec)
	if acc.Launch == nil {
		t.Fatal("no launch claimed")
	}
	// The launch waits in line (the most hosts run): no host is starting.
	if kept, err := s.KeepClaim(ctx, id, acc.Launch.ID, st.Clock.Now(), session.WaitMaxHosts); err != nil || kept == nil {
		t.Fatalf("keep claim: %v %v", kept, err)
	}
	out := "sessions/" + id + "/results/r0/stdout"
	if _, err := s.WriteNewObject(ctx, out, "text/plain", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	acc = enqueue(t, s, id, "destroy", api.OpSessionDestroy)
	if acc.Answer == nil || acc.Answer.Status != api.StatusOK || !acc.Purge || acc.Launch != nil {
		t.Fatalf("destroy: %+v", acc)
	}
	if got := unpublishedIDs(acc.Aborted); !slices.Equal(got, []string{"r1"}) {
		t.Fatalf("aborted %v, want r1", got)
	}
	if c := completion(t, acc.Aborted[0].Completion); code(c) != api.CodeAborted {
		t.Errorf("r1 answered %+v, want ABORTED", c)
	}
	if it := item(t, s, id, "r1"); it.Status != session.ItemDone {
		t.Errorf("r1 is %s after the destroy", it.Status)
	}
	doc, err := s.Session(ctx, id)
	if err != nil || doc.Status != session.StatusDestroyed || !doc.PurgePending || doc.Launch != nil {
		t.Fatalf("destroyed session %+v, %v", doc, err)
	}
	// A request revives it, only once its old objects are gone.
	acc = enqueue(t, s, id, "r2", api.OpExec)
	if acc.Item.Seq != 1 || acc.Launch == nil {
		t.Errorf("revived with %+v, want seq 1 and a launch", acc)
	}
	if _, err := s.OpenObject(ctx, out); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("an object of the destroyed session outlived its revival: %v", err)
	}
	if doc, _ := s.Session(ctx, id); doc.Status != session.StatusActive || doc.PurgePending {
		t.Errorf("revived session %+v", doc)
	}
}

// A destroy of a hosted session waits its turn in the inbox, for the host.
func destroyOfAHostedSessionWaitsItsTurn(t *testing.T, st Stores) {
	s, id := st.Store, sid(t)
	enqueue(t, s, id, "create", api.OpSessionCreate)
	acquire(t, s, id, "exec-1", time.Minute)
	acc := enqueue(t, s, id, "destroy", api.OpSessionDestroy)
	if acc.Answer != nil || acc.Purge || acc.Item.Status != session.ItemQueued || acc.Launch != nil {
		t.Errorf("destroy of a hosted session: %+v, want it queued", acc)
	}
}

// Only one host holds a session; a host that released it or lost it can
// write nothing more; a host leaves only when nothing is queued.
func leaseIsFenced(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	if _, err := s.Acquire(ctx, id, "exec-1", time.Minute); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a lease of a missing session: %v", err)
	}
	enqueue(t, s, id, "r1", api.OpExec)
	enqueue(t, s, id, "r2", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	if lease.Epoch < 1 || lease.Unreleased {
		t.Errorf("first lease %+v", lease)
	}
	if _, err := s.Acquire(ctx, id, "exec-2", time.Minute); !errors.Is(err, session.ErrLeaseHeld) {
		t.Errorf("a second host took a held lease: %v", err)
	}
	if err := s.Renew(ctx, lease, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, lease, false); !errors.Is(err, session.ErrWorkPending) {
		t.Errorf("a host left with requests queued: %v", err)
	}
	for _, r := range []string{"r1", "r2"} {
		if _, ok, err := s.Start(ctx, lease, session.Item{RequestID: r}); err != nil || !ok {
			t.Fatalf("start %s: %v %v", r, ok, err)
		}
		finish(t, s, lease, r, r)
	}
	if err := s.Release(ctx, lease, false); err != nil {
		t.Fatalf("release with nothing queued: %v", err)
	}
	enqueue(t, s, id, "r3", api.OpExec)
	if _, _, err := s.Start(ctx, lease, session.Item{RequestID: "r3"}); !errors.Is(err, session.ErrLeaseLost) {
		t.Errorf("a host that left started a request: %v", err)
	}
	next := acquire(t, s, id, "exec-2", time.Minute)
	if next.Epoch <= lease.Epoch || next.Unreleased {
		t.Errorf("lease after a clean release %+v (previous epoch %d)", next, lease.Epoch)
	}
	if err := s.Release(ctx, next, true); err != nil {
		t.Errorf("forced release with r3 queued: %v", err)
	}
}

// Hosts racing to take one session's lease: exactly one wins, the others
// are told it is held, and the winner's lease is the one that writes. Both
// when no host ever held the session (the lease document is created) and
// after a host left (it is updated).
func racingHostsAcquireOnce(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	const n = 4
	race := func(round string) *session.Lease {
		t.Helper()
		leases := make([]*session.Lease, n)
		errs := make([]error, n)
		atOnce(n, func(i int) func() {
			return func() { leases[i], errs[i] = s.Acquire(ctx, id, fmt.Sprintf("%s-exec-%d", round, i), time.Minute) }
		})
		var won *session.Lease
		for i, err := range errs {
			switch {
			case err == nil && won == nil:
				won = leases[i]
			case err == nil:
				t.Fatalf("%s: two hosts took the lease: %s and %s", round, won.Execution, leases[i].Execution)
			case !errors.Is(err, session.ErrLeaseHeld):
				t.Errorf("%s: host %d: %v, want the lease held", round, i, err)
			}
		}
		if won == nil {
			t.Fatalf("%s: no host took the lease", round)
		}
		return won
	}
	first := race("first")
	if err := s.Renew(ctx, first, time.Minute); err != nil {
		t.Fatalf("the winner renews: %v", err)
	}
	queued := queuedItem(t, s, id, "r1")
	if _, ok, err := s.Start(ctx, first, queued); err != nil || !ok {
		t.Fatalf("the winner starts r1: %v %v", ok, err)
	}
	finish(t, s, first, "r1", "out")
	if err := s.Release(ctx, first, false); err != nil {
		t.Fatal(err)
	}
	second := race("second")
	if second.Epoch <= first.Epoch {
		t.Errorf("second winner's epoch %d, after %d", second.Epoch, first.Epoch)
	}
	if err := s.Renew(ctx, first, time.Minute); !errors.Is(err, session.ErrLeaseLost) && !session.LeaseMoved(err) {
		t.Errorf("the first winner renewed after the second took the session: %v", err)
	}
	if err := s.Renew(ctx, second, time.Minute); err != nil {
		t.Errorf("the second winner renews: %v", err)
	}
}

// A request starts once and its completion is recorded once, with the
// shell state the next host starts from.
func startAndFinishOnce(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	it, ok, err := s.Start(ctx, lease, session.Item{RequestID: "r1"})
	if err != nil || !ok || it.Status != session.ItemRunning || it.Epoch != lease.Epoch || it.Execution != "exec-1" {
		t.Fatalf("start: %+v %v %v", it, ok, err)
	}
	if _, ok, err := s.Start(ctx, lease, session.Item{RequestID: "r1"}); err != nil || ok {
		t.Errorf("a running request started again: %v %v", ok, err)
	}
	if _, ok, err := s.Start(ctx, lease, session.Item{RequestID: "missing"}); err != nil || ok {
		t.Errorf("a missing request started: %v %v", ok, err)
	}
	shell := session.NewShell("/work/dir", map[string]string{"A": "1"})
	first, err := s.Finish(ctx, lease, time.Time{}, &api.Completion{RequestID: "r1", SessionID: id, Op: api.OpExec, Status: api.StatusOK, Stdout: "one"}, &shell, nil)
	if err != nil {
		t.Fatal(err)
	}
	again := finish(t, s, lease, "r1", "two")
	if string(again) != string(first) || completion(t, again).Stdout != "one" {
		t.Errorf("a second finish recorded %s, want the first %s", again, first)
	}
	if it := item(t, s, id, "r1"); it.Status != session.ItemDone || it.Completion != string(first) || it.Published {
		t.Errorf("finished item %+v", it)
	}
	if _, err := s.Finish(ctx, lease, time.Time{}, &api.Completion{RequestID: "missing", SessionID: id}, nil, nil); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("finish of a missing request: %v", err)
	}
	if err := s.Release(ctx, lease, false); err != nil {
		t.Fatal(err)
	}
	next := acquire(t, s, id, "exec-2", time.Minute)
	if cwd, env := next.Shell.Values(); cwd != "/work/dir" || env["A"] != "1" {
		t.Errorf("the next host starts in %q with %v", cwd, env)
	}
	acc := enqueue(t, s, id, "get", api.OpSessionGet)
	if c := completion(t, []byte(acc.Item.Completion)); c.Session == nil || c.Session.Cwd != "/work/dir" || c.Session.Host != "exec-2" {
		t.Errorf("get shows %+v", c.Session)
	}
}

// A Start marks its request running in the lease document and leaves the
// inbox item queued: the request is not started twice, a description of
// the session does not count it queued, and its Finish records in the item
// who ran it. A request that its host left running when it was made to
// leave (a forced release) and that no host could then be launched for is
// answered HOST_LOST, not LAUNCH_FAILED: it had started.
func startMarksTheRequestInTheLease(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	enqueue(t, s, id, "r2", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	started, ok, err := s.Start(ctx, lease, queuedItem(t, s, id, "r1"))
	if err != nil || !ok || started.Status != session.ItemRunning || started.Epoch != lease.Epoch {
		t.Fatalf("start r1: %+v %v %v", started, ok, err)
	}
	if it := item(t, s, id, "r1"); it.Status != session.ItemQueued {
		t.Errorf("the started item was written: %+v", it)
	}
	if _, ok, err := s.Start(ctx, lease, queuedItem(t, s, id, "r1")); err != nil || ok {
		t.Errorf("r1 started twice: %v %v", ok, err)
	}
	acc := enqueue(t, s, id, "get", api.OpSessionGet)
	if c := completion(t, []byte(acc.Item.Completion)); c.Session == nil || c.Session.Queued != 1 {
		t.Errorf("get shows %+v, want 1 queued (r2; r1 runs)", c.Session)
	}
	if _, err := s.Finish(ctx, lease, started.Version, &api.Completion{RequestID: "r1", SessionID: id, Op: api.OpExec, Status: api.StatusOK}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if it := item(t, s, id, "r1"); it.Status != session.ItemDone || it.Epoch != lease.Epoch || it.Execution != "exec-1" || !it.StartedAt.Equal(started.StartedAt) {
		t.Errorf("finished r1: %+v, want done, with the epoch, host and start time of its Start", it)
	}

	// r2 starts, and its host is made to leave before it finishes.
	if _, ok, err := s.Start(ctx, lease, queuedItem(t, s, id, "r2")); err != nil || !ok {
		t.Fatalf("start r2: %v %v", ok, err)
	}
	if err := s.Release(ctx, lease, true); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		st.Clock.Advance(2 * LaunchTimeout)
		if _, _, err := s.Relaunch(ctx, id, 1); err != nil {
			t.Fatal(err)
		}
	}
	it := item(t, s, id, "r2")
	if it.Status != session.ItemDone || code(completion(t, []byte(it.Completion))) != api.CodeHostLost {
		t.Errorf("r2 after its host left and no other came: %+v, want HOST_LOST", it)
	}
	next := acquire(t, s, id, "exec-2", time.Minute)
	if lost, err := s.FailOrphans(ctx, next); err != nil || len(lost) != 0 {
		t.Errorf("orphans answered twice: %v %v", lost, err)
	}
}

// queuedItem returns the session's queued item requestID as the inbox
// lists it (with its Version).
func queuedItem(t *testing.T, s Store, sessionID, requestID string) session.Item {
	t.Helper()
	queued, err := s.Queued(context.Background(), sessionID, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range queued {
		if it.RequestID == requestID {
			if it.Version.IsZero() {
				t.Fatalf("queued item %s has no version", requestID)
			}
			return it
		}
	}
	t.Fatalf("%s is not queued: %v", requestID, ids(queued))
	return session.Item{}
}

// A Start conditioned on an item version from before the item was started
// (a listener's Queue sent before a Start landed) starts nothing: ok=false,
// and the item stays as it is.
func startOfAStaleItemIsRefused(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	seen := queuedItem(t, s, id, "r1")
	started, ok, err := s.Start(ctx, lease, seen)
	if err != nil || !ok || started.Status != session.ItemRunning || started.Version.IsZero() || string(started.Request) != string(seen.Request) {
		t.Fatalf("start: %+v %v %v", started, ok, err)
	}
	if it, ok, err := s.Start(ctx, lease, seen); err != nil || ok || it == nil || it.Status != session.ItemRunning {
		t.Errorf("a start with the version from before the first: %+v %v %v, want ok=false and the item running", it, ok, err)
	}
	first, err := s.Finish(ctx, lease, started.Version, &api.Completion{RequestID: "r1", SessionID: id, Op: api.OpExec, Status: api.StatusOK, Stdout: "one"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Start(ctx, lease, seen); err != nil || ok {
		t.Errorf("a start of a finished request: %v %v, want ok=false", ok, err)
	}
	if it := item(t, s, id, "r1"); it.Status != session.ItemDone || it.Completion != string(first) {
		t.Errorf("after the stale starts r1 is %+v", it)
	}
	// The lease is intact: the host goes on.
	if err := s.Renew(ctx, lease, time.Minute); err != nil {
		t.Errorf("renew after the stale starts: %v", err)
	}
}

// Once another host took the session (the reaper recovered it from this
// one, whose lease lapsed, and a new host acquired it), this host's Start
// and Finish answer ErrLeaseLost and write nothing, whatever versions they
// carry.
func hostThatLostTheSessionWritesNothing(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	enqueue(t, s, id, "r2", api.OpExec)
	old := acquire(t, s, id, "exec-1", 10*time.Second)
	if err := s.Renew(ctx, old, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	started, ok, err := s.Start(ctx, old, queuedItem(t, s, id, "r1"))
	if err != nil || !ok {
		t.Fatalf("start r1: %v %v", ok, err)
	}
	seen2 := queuedItem(t, s, id, "r2")
	st.Clock.Advance(20 * time.Second)
	if _, recovered, err := s.RecoverHost(ctx, id); err != nil || !recovered {
		t.Fatalf("recover: %v %v", recovered, err)
	}
	next := acquire(t, s, id, "exec-2", time.Minute)
	if _, ok, err := s.Start(ctx, old, seen2); !errors.Is(err, session.ErrLeaseLost) || ok {
		t.Errorf("the old host started r2: %v %v, want ErrLeaseLost", ok, err)
	}
	if _, err := s.Finish(ctx, old, started.Version, &api.Completion{RequestID: "r1", SessionID: id, Op: api.OpExec, Status: api.StatusOK}, nil, nil); !errors.Is(err, session.ErrLeaseLost) {
		t.Errorf("the old host recorded r1: %v, want ErrLeaseLost", err)
	}
	if it := item(t, s, id, "r2"); it.Status != session.ItemQueued || it.Epoch != 0 {
		t.Errorf("r2 after the old host's start: %+v, want queued and untouched", it)
	}
	if it := item(t, s, id, "r1"); code(completion(t, []byte(it.Completion))) != api.CodeHostLost {
		t.Errorf("r1 recorded %s, want the recovery's HOST_LOST", it.Completion)
	}
	// The new host holds the session: its own writes go through.
	if err := s.Renew(ctx, next, time.Minute); err != nil {
		t.Errorf("the new host's renewal: %v", err)
	}
	if _, ok, err := s.Start(ctx, next, seen2); err != nil || !ok {
		t.Errorf("the new host's start of r2: %v %v", ok, err)
	}
}

// Finishing a request twice with the version its Start returned records
// the first completion only, and answers it both times.
func finishWithTheStartedVersionRecordsOnce(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	started, ok, err := s.Start(ctx, lease, queuedItem(t, s, id, "r1"))
	if err != nil || !ok {
		t.Fatalf("start: %v %v", ok, err)
	}
	shell := session.NewShell("/first", nil)
	first, err := s.Finish(ctx, lease, started.Version, &api.Completion{RequestID: "r1", SessionID: id, Op: api.OpExec, Status: api.StatusOK, Stdout: "one"}, &shell, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := session.NewShell("/second", nil)
	again, err := s.Finish(ctx, lease, started.Version, &api.Completion{RequestID: "r1", SessionID: id, Op: api.OpExec, Status: api.StatusOK, Stdout: "two"}, &other, nil)
	if err != nil || string(again) != string(first) {
		t.Errorf("the second finish answered %s, %v; want the first %s", again, err, first)
	}
	if it := item(t, s, id, "r1"); it.Completion != string(first) {
		t.Errorf("recorded %s, want the first completion", it.Completion)
	}
	if err := s.Release(ctx, lease, false); err != nil {
		t.Fatal(err)
	}
	if cwd, _ := acquire(t, s, id, "exec-2", time.Minute).Shell.Values(); cwd != "/first" {
		t.Errorf("the session's shell is in %q, want the first finish's /first", cwd)
	}
}

// The heartbeat's renewals and the serve loop's Starts and Finishes write
// the lease document at the same time, each conditioned on the version the
// last one left: none of them may fail the others, nor lose the lease.
func renewalsRacingStartsKeepTheLease(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	const n = 6
	for i := range n {
		enqueue(t, s, id, "r"+string(rune('a'+i)), api.OpExec)
	}
	lease := acquire(t, s, id, "exec-1", time.Minute)
	queued, err := s.Queued(ctx, id, n)
	if err != nil || len(queued) != n {
		t.Fatalf("queued %d, %v", len(queued), err)
	}
	// Renewals run, one after another as the heartbeat's do, until the
	// starts and finishes are done.
	stop, renewals := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				renewals <- nil
				return
			default:
			}
			// Time moves, so that each write changes the lease (a write
			// that changes nothing leaves the document's version).
			st.Clock.Advance(time.Millisecond)
			if err := s.Renew(ctx, lease, time.Minute); err != nil {
				renewals <- err
				return
			}
		}
	}()
	for _, seen := range queued {
		started, ok, err := s.Start(ctx, lease, seen)
		if err != nil || !ok {
			t.Fatalf("start %s beside renewals: %v %v", seen.RequestID, ok, err)
		}
		if _, err := s.Finish(ctx, lease, started.Version, &api.Completion{RequestID: seen.RequestID, SessionID: id, Op: api.OpExec, Status: api.StatusOK}, nil, nil); err != nil {
			t.Fatalf("finish %s beside renewals: %v", seen.RequestID, err)
		}
	}
	close(stop)
	if err := <-renewals; err != nil {
		t.Errorf("a renewal beside the starts: %v", err)
	}
	if sent, left := lease.Renewed(); sent.IsZero() || left <= 0 {
		t.Errorf("the lease's last renewal: sent %v, for %v", sent, left)
	}
	if err := s.Release(ctx, lease, false); err != nil {
		t.Errorf("release after the race: %v", err)
	}
}

// The inbox listener sends the queued items in sequence order with their
// versions, and again when one is finished: a host starts from it. (A
// request that runs stays queued in its item: its mark is in the lease.)
func watchQueuedSendsTheQueue(t *testing.T, st Stores) {
	s, id := st.Store, sid(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	enqueue(t, s, id, "r1", api.OpExec)
	enqueue(t, s, id, "r2", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	queue := s.WatchQueued(ctx, id)
	// next waits for a Queue listing want.
	next := func(want ...string) []session.Item {
		t.Helper()
		for {
			select {
			case q := <-queue:
				if q.Err != nil {
					continue // the listener is opened again
				}
				if slices.Equal(ids(q.Items), want) {
					return q.Items
				}
			case <-ctx.Done():
				t.Fatalf("no Queue listed %v", want)
			}
		}
	}
	items := next("r1", "r2")
	if items[0].Version.IsZero() || string(items[0].Request) == "" {
		t.Fatalf("the listener's item %+v has no version or request", items[0])
	}
	started, ok, err := s.Start(ctx, lease, items[0])
	if err != nil || !ok {
		t.Fatalf("start from the listener's item: %v %v", ok, err)
	}
	if _, err := s.Finish(ctx, lease, started.Version, &api.Completion{RequestID: "r1", SessionID: id, Op: api.OpExec, Status: api.StatusOK}, nil, nil); err != nil {
		t.Fatal(err)
	}
	next("r2")
}

// A host whose lease lapsed keeps the session until the reaper recovers
// it: then its running request is answered HOST_LOST (never re-run), it
// can write nothing more, and the queued requests wait for a new host.
func lapsedHostIsRecoveredHostLost(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	enqueue(t, s, id, "r2", api.OpExec)
	lease := acquire(t, s, id, "exec-1", 10*time.Second)
	if _, ok, err := s.Start(ctx, lease, session.Item{RequestID: "r1"}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, recovered, err := s.RecoverHost(ctx, id); err != nil || recovered {
		t.Errorf("a live host was recovered: %v %v", recovered, err)
	}
	st.Clock.Advance(20 * time.Second)
	expired, err := s.ExpiredHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(expired, session.ExpiredHost{SessionID: id, Execution: "exec-1"}) {
		t.Errorf("expired hosts %v do not name %s", expired, id)
	}
	if _, err := s.Acquire(ctx, id, "exec-2", time.Minute); !errors.Is(err, session.ErrLeaseHeld) {
		t.Errorf("a new host took a lapsed lease before its recovery: %v", err)
	}
	lost, recovered, err := s.RecoverHost(ctx, id)
	if err != nil || !recovered {
		t.Fatalf("recover: %v %v", recovered, err)
	}
	if got := unpublishedIDs(lost); !slices.Equal(got, []string{"r1"}) {
		t.Fatalf("answered %v, want r1", got)
	}
	c := completion(t, lost[0].Completion)
	if code(c) != api.CodeHostLost || c.ExecutionID != "exec-1" {
		t.Errorf("r1 answered %+v", c)
	}
	if _, again, err := s.RecoverHost(ctx, id); err != nil || again {
		t.Errorf("recovered twice: %v %v", again, err)
	}
	if _, err := s.Finish(ctx, lease, time.Time{}, &api.Completion{RequestID: "r1", SessionID: id, Op: api.OpExec, Status: api.StatusOK}, nil, nil); !errors.Is(err, session.ErrLeaseLost) {
		t.Errorf("the lost host recorded a completion: %v", err)
	}
	if it := item(t, s, id, "r1"); code(completion(t, []byte(it.Completion))) != api.CodeHostLost {
		t.Errorf("r1 recorded %s", it.Completion)
	}
	if it := item(t, s, id, "r2"); it.Status != session.ItemQueued {
		t.Errorf("r2 is %s, want still queued", it.Status)
	}
	waiting, err := s.Waiting(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(waiting, func(w session.Waiting) bool { return w.SessionID == id && w.Launch == nil }) {
		t.Errorf("waiting %+v does not name %s with no launch in flight", waiting, id)
	}
	if w, _ := s.Waiting(ctx, func(s string) bool { return s == id }); slices.ContainsFunc(w, func(w session.Waiting) bool { return w.SessionID == id }) {
		t.Error("Waiting listed a session it was told to skip")
	}
	launch, failed, err := s.Relaunch(ctx, id, 3)
	if err != nil || launch == nil || failed != nil {
		t.Fatalf("relaunch: %+v %v %v", launch, failed, err)
	}
	if again, _, err := s.Relaunch(ctx, id, 3); err != nil || again != nil {
		t.Errorf("a second launch was claimed while one is in flight: %+v %v", again, err)
	}
	next := acquire(t, s, id, "exec-2", time.Minute)
	if next.Epoch <= lease.Epoch+1 || !next.Unreleased {
		t.Errorf("lease after a recovery %+v (lost epoch %d)", next, lease.Epoch)
	}
	if lost, err := s.FailOrphans(ctx, next); err != nil || len(lost) != 0 {
		t.Errorf("orphans after a recovery: %v %v", lost, err)
	}
}

// A request that a host left running when it was forced out (its
// execution ending) is answered HOST_LOST by the next host, once; a host
// that finds nothing running answers nothing.
func orphanOfAForcedReleaseIsHostLost(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	first := acquire(t, s, id, "exec-1", time.Minute)
	if lost, err := s.FailOrphans(ctx, first); err != nil || len(lost) != 0 {
		t.Fatalf("orphans of a session never hosted: %v %v", lost, err)
	}
	if _, ok, err := s.Start(ctx, first, queuedItem(t, s, id, "r1")); err != nil || !ok {
		t.Fatalf("start r1: %v %v", ok, err)
	}
	if err := s.Release(ctx, first, true); err != nil {
		t.Fatal(err)
	}
	next := acquire(t, s, id, "exec-2", time.Minute)
	lost, err := s.FailOrphans(ctx, next)
	if err != nil || len(lost) != 1 || lost[0].RequestID != "r1" || code(completion(t, lost[0].Completion)) != api.CodeHostLost {
		t.Fatalf("orphans after a forced release: %+v %v; want r1 HOST_LOST", lost, err)
	}
	if lost, err := s.FailOrphans(ctx, next); err != nil || len(lost) != 0 {
		t.Errorf("orphans answered twice: %v %v", lost, err)
	}
}

// The reaper relaunches a session whose launch failed, and gives up after
// the most attempts, answering its queued requests LAUNCH_FAILED.
func relaunchClaimsAndGivesUp(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	acc := enqueue(t, s, id, "r1", api.OpExec)
	if err := s.RecordLaunch(ctx, id, acc.Launch.ID, "exec-1"); err != nil {
		t.Fatal(err)
	}
	if doc, _ := s.Session(ctx, id); doc.Launch == nil || doc.Launch.Execution != "exec-1" {
		t.Errorf("recorded launch %+v", doc.Launch)
	}
	if hosted, err := s.Hosted(ctx); err != nil || !hosted["exec-1"] {
		t.Errorf("hosted %v does not name the launched execution: %v", hosted, err)
	}
	if l, _, _ := s.Relaunch(ctx, id, 2); l != nil {
		t.Errorf("relaunched while a launch is in flight: %+v", l)
	}
	if err := s.LaunchFailed(ctx, id, acc.Launch.ID); err != nil {
		t.Fatal(err)
	}
	second, failed, err := s.Relaunch(ctx, id, 2)
	if err != nil || second == nil || failed != nil || second.Attempts != 2 {
		t.Fatalf("relaunch after a failed launch: %+v %v %v", second, failed, err)
	}
	if err := s.WithdrawLaunch(ctx, id, second.ID, true); err != nil {
		t.Fatal(err)
	}
	none, failed, err := s.Relaunch(ctx, id, 2)
	if err != nil || none != nil || !slices.Equal(unpublishedIDs(failed), []string{"r1"}) {
		t.Fatalf("give up: %+v %v %v", none, failed, err)
	}
	if c := completion(t, failed[0].Completion); code(c) != api.CodeLaunchFailed {
		t.Errorf("r1 answered %+v", c)
	}
	if it := item(t, s, id, "r1"); it.Status != session.ItemDone {
		t.Errorf("r1 is %s after giving up", it.Status)
	}
}

// Completions recorded and not marked published are found, across
// sessions, until they are marked.
func unpublishedCompletionsAreFound(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "create", api.OpSessionCreate)
	enqueue(t, s, id, "get", api.OpSessionGet)
	find := func() []string {
		t.Helper()
		return unpublishedIDs(unpublishedOf(t, st, id))
	}
	if got := find(); !slices.Equal(got, []string{"create", "get"}) {
		t.Errorf("unpublished %v, want create and get", got)
	}
	if err := s.MarkPublished(ctx, id, "create"); err != nil {
		t.Fatal(err)
	}
	if got := find(); !slices.Equal(got, []string{"get"}) {
		t.Errorf("unpublished after marking create %v, want get", got)
	}
	stale, err := s.Stale(ctx, st.Clock.Now().Add(time.Second))
	if err != nil || !slices.Contains(stale, id) {
		t.Errorf("stale %v does not name %s: %v", stale, id, err)
	}
}

// A completion that a host's Finish recorded is tracked by the lease: the
// reaper finds it until the host's note that it was published reaches the
// lease document (its next write of it), a redelivery of its request is
// answered as unpublished until then, and one whose host died before
// publishing it is still found once the reaper took the session, until
// the reaper clears it.
func hostCompletionIsPublishedThroughTheLease(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	find := func() []string {
		t.Helper()
		mine := unpublishedOf(t, st, id)
		for _, u := range mine {
			if !u.InLease || len(u.Completion) == 0 {
				t.Errorf("unpublished %+v, want one the lease tracks, with its completion", u)
			}
		}
		return unpublishedIDs(mine)
	}
	redelivered := func(requestID string) bool {
		t.Helper()
		acc := enqueue(t, s, id, requestID, api.OpExec)
		if !acc.Duplicate || acc.Item.Status != session.ItemDone {
			t.Fatalf("redelivery of %s: %+v, want the done duplicate", requestID, acc)
		}
		return acc.Item.Published
	}
	enqueue(t, s, id, "r1", api.OpExec)
	enqueue(t, s, id, "r2", api.OpExec)
	lease := acquire(t, s, id, "exec-1", 10*time.Second)
	for _, r := range []string{"r1", "r2"} {
		if _, ok, err := s.Start(ctx, lease, queuedItem(t, s, id, r)); err != nil || !ok {
			t.Fatalf("start %s: %v %v", r, ok, err)
		}
		finish(t, s, lease, r, "")
	}
	if got := find(); !slices.Equal(got, []string{"r1", "r2"}) {
		t.Errorf("unpublished %v, want r1 and r2", got)
	}
	if redelivered("r1") {
		t.Errorf("r1 redelivered before its publish: answered as published")
	}
	if err := s.Published(ctx, lease, "r1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Renew(ctx, lease, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := find(); !slices.Equal(got, []string{"r2"}) {
		t.Errorf("unpublished after r1 was published and the lease renewed: %v, want r2", got)
	}
	if !redelivered("r1") {
		t.Errorf("r1 redelivered after its publish: answered as unpublished")
	}

	// The host dies before publishing r2.
	st.Clock.Advance(20 * time.Second)
	if _, recovered, err := s.RecoverHost(ctx, id); err != nil || !recovered {
		t.Fatalf("recover: %v %v", recovered, err)
	}
	if got := find(); !slices.Equal(got, []string{"r2"}) {
		t.Errorf("unpublished after the host was lost: %v, want r2", got)
	}
	if err := s.MarkPublished(ctx, id, "r2"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearPublishing(ctx, id, []string{"r2"}); err != nil {
		t.Fatal(err)
	}
	if got := find(); len(got) != 0 {
		t.Errorf("unpublished after the reaper republished r2: %v", got)
	}
}

// Destroying a hosted session (the reaper's or the host's) answers its
// unfinished requests ABORTED, names the host to cancel and takes the
// lease from it.
func reaperDestroyFencesTheHost(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	enqueue(t, s, id, "r2", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	if _, ok, err := s.Start(ctx, lease, session.Item{RequestID: "r1"}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	host, answered, err := s.Destroy(ctx, id, "stale")
	if err != nil || host != "exec-1" || !slices.Equal(unpublishedIDs(answered), []string{"r1", "r2"}) {
		t.Fatalf("destroy: host %q, answered %v, %v", host, unpublishedIDs(answered), err)
	}
	for _, u := range answered {
		if c := completion(t, u.Completion); code(c) != api.CodeAborted || !strings.Contains(c.Error.Message, "stale") {
			t.Errorf("%s answered %+v", u.RequestID, c.Error)
		}
	}
	if _, err := s.Finish(ctx, lease, time.Time{}, &api.Completion{RequestID: "r1", SessionID: id}, nil, nil); !errors.Is(err, session.ErrLeaseLost) {
		t.Errorf("the host of a destroyed session recorded a completion: %v", err)
	}
	for range 2 { // Firestore's renewal may first see only that the lease changed
		if err = s.Renew(ctx, lease, time.Minute); errors.Is(err, session.ErrLeaseLost) {
			break
		}
	}
	if !errors.Is(err, session.ErrLeaseLost) {
		t.Errorf("the host of a destroyed session renewed its lease: %v", err)
	}
	if _, err := s.Acquire(ctx, id, "exec-2", time.Minute); !errors.Is(err, session.ErrDestroyed) {
		t.Errorf("a host took a destroyed session: %v", err)
	}
	if pending, err := s.PurgePending(ctx); err != nil || !slices.Contains(pending, id) {
		t.Errorf("purge pending %v does not name %s: %v", pending, id, err)
	}
	if again, answered, err := s.Destroy(ctx, id, "stale"); err != nil || again != "" || answered != nil {
		t.Errorf("a second destroy: %q %v %v", again, answered, err)
	}
}

// New objects are never overwritten, checkpoints are read at their
// generation under a current lease, and blobs come and go.
func objectsAndCheckpoints(t *testing.T, st Stores) {
	ctx, s, id := context.Background(), st.Store, sid(t)
	enqueue(t, s, id, "r1", api.OpExec)
	lease := acquire(t, s, id, "exec-1", time.Minute)
	name := session.ManifestObject(lease, 1)
	gen, err := s.PutNewObject(ctx, name, "application/gzip", []byte("manifest"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutNewObject(ctx, name, "application/gzip", []byte("other")); err == nil {
		t.Error("a new object overwrote an existing one")
	}
	cp := session.Checkpoint{Object: name, Format: session.FormatManifest, Generation: gen, Bytes: 8}
	if err := s.CommitCheckpoint(ctx, lease, cp); err != nil {
		t.Fatal(err)
	}
	if b, err := s.ReadCheckpoint(ctx, lease.Checkpoint); err != nil || string(b) != "manifest" {
		t.Errorf("checkpoint read %q, %v", b, err)
	}
	if _, err := s.OpenObject(ctx, "sessions/"+id+"/missing"); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a missing object: %v", err)
	}
	log := session.ProcessLogObject(id, lease.Epoch, 7, "stdout")
	for _, content := range []string{"a", "abc"} {
		if err := s.ReplaceObject(ctx, log, "text/plain", strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	o, err := s.OpenObject(ctx, log)
	if err != nil || o.Size != 3 {
		t.Fatalf("replaced object: %+v %v", o, err)
	}
	o.Close()
	if err := s.Blobs(id).Put(ctx, "b1", 2, strings.NewReader("hi")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SweepBlobs(ctx, id, map[string]bool{"b1": true}, st.Clock.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("a live blob was swept: %d %v", n, err)
	}
	if err := s.DeleteBlobs(ctx, id, []string{"b1", "gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Blobs(id).Get(ctx, "b1"); err == nil {
		t.Error("a deleted blob was read")
	}
	if err := s.Release(ctx, lease, true); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitCheckpoint(ctx, lease, cp); !errors.Is(err, session.ErrLeaseLost) {
		t.Errorf("a host that left committed a checkpoint: %v", err)
	}
	if next := acquire(t, s, id, "exec-2", time.Minute); next.Checkpoint == nil || next.Checkpoint.Object != name {
		t.Errorf("the next host starts from checkpoint %+v", next.Checkpoint)
	}
}

// A pool member goes launching → idle → assigned, is handed one session
// only, and may not leave or be removed once assigned; an expired idle
// member is not claimed; misses are recorded once.
func poolMembersAreClaimedOnce(t *testing.T, st Stores) {
	ctx, s := context.Background(), st.Store
	id := sid(t) // the run's prefix for member ids
	m1, m2, m3, m4 := id+"-m1", id+"-m2", id+"-m3", id+"-m4"
	mine := func(ms []session.Member) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			if strings.HasPrefix(m.ID, id) || m.LaunchID == id {
				out[m.ID] = m.Status
			}
		}
		return out
	}
	if err := s.AddLaunchingMember(ctx, m1); err != nil {
		t.Fatal(err)
	}
	if err := s.MemberLaunched(ctx, m1, "x1"); err != nil {
		t.Fatal(err)
	}
	if hosted, err := s.Hosted(ctx); err != nil || !hosted["x1"] {
		t.Errorf("hosted %v does not name a launching member's execution: %v", hosted, err)
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	watch := s.WatchMember(watchCtx, m1)
	if err := s.RegisterMember(ctx, m1, "x1", time.Minute); err != nil {
		t.Fatal(err)
	}
	// The watch sends the record as it is, then each change; a member
	// waits on it for its claim.
	for idle := false; !idle; {
		select {
		case m := <-watch:
			idle = m != nil && m.Status == session.MemberIdle
		case <-time.After(30 * time.Second):
			t.Fatal("the watch did not see the member register")
		}
	}
	members, err := s.PoolMembers(ctx)
	if got := mine(members); err != nil || got[m1] != session.MemberIdle {
		t.Fatalf("pool members %v, %v; want %s idle", got, err, m1)
	}
	claimed, err := s.ClaimMember(ctx, id, "l1", "tp")
	if err != nil || claimed == nil || claimed.ID != m1 || claimed.SessionID != id || claimed.LaunchID != "l1" || claimed.Status != session.MemberAssigned {
		t.Fatalf("claim: %+v %v", claimed, err)
	}
	if again, err := s.ClaimMember(ctx, id, "l2", ""); err != nil || again != nil {
		t.Errorf("a second claim got %+v, %v; want none idle", again, err)
	}
	for what, err := range map[string]error{
		"remove": s.RemoveMember(ctx, m1), "leave": s.LeaveMember(ctx, m1), "renew": s.RenewMember(ctx, m1, time.Minute),
		"register": s.RegisterMember(ctx, m1, "x1", time.Minute)} {
		if !errors.Is(err, session.ErrMemberGone) {
			t.Errorf("%s of an assigned member: %v", what, err)
		}
	}
	if m, err := s.Member(ctx, m1); err != nil || m.Status != session.MemberAssigned || m.Traceparent != "tp" {
		t.Errorf("assigned member %+v, %v", m, err)
	}
	// Launches racing for the one idle member: one gets it, the others
	// are told none is idle, and none fails.
	m5 := id + "-m5"
	if err := s.RegisterMember(ctx, m5, "x5", time.Minute); err != nil {
		t.Fatal(err)
	}
	const racers = 8
	won := make([]*session.Member, racers)
	errs := make([]error, racers)
	atOnce(racers, func(i int) func() {
		return func() { won[i], errs[i] = s.ClaimMember(ctx, fmt.Sprintf("%s-r%d", id, i), "race", "") }
	})
	var winners []string
	for i, m := range won {
		if errs[i] != nil {
			t.Errorf("racing claim %d: %v", i, errs[i])
		}
		if m != nil {
			winners = append(winners, m.SessionID)
			if m.ID != m5 {
				t.Errorf("racing claim %d got member %s, want %s", i, m.ID, m5)
			}
		}
	}
	if m, err := s.Member(ctx, m5); len(winners) != 1 || err != nil || m.Status != session.MemberAssigned || m.SessionID != winners[0] {
		t.Errorf("racing claims won by %v; the member is %+v, %v; want one winner, recorded", winners, m, err)
	}
	// A member registers without a launching record, renews and leaves.
	if err := s.RegisterMember(ctx, m2, "x2", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.RenewMember(ctx, m2, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.LeaveMember(ctx, m2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Member(ctx, m2); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("a member that left: %v", err)
	}
	// An idle member that stopped renewing is not claimed, and is removed.
	if err := s.RegisterMember(ctx, m3, "x3", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st.Clock.Advance(20 * time.Second)
	if got, err := s.ClaimMember(ctx, id, "l3", ""); err != nil || got != nil {
		t.Errorf("an expired member was claimed: %+v %v", got, err)
	}
	if err := s.RemoveMember(ctx, m3); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLaunchingMember(ctx, m4); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLaunchingMember(ctx, m4); err == nil {
		t.Error("a member was recorded twice")
	}
	for range 2 {
		if err := s.RecordMiss(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	assigned, err := s.PoolAssignments(ctx, st.Clock.Now().Add(-time.Hour))
	if got := mine(assigned); err != nil || len(got) != 3 || got[m1] != session.MemberAssigned || got[m5] != session.MemberAssigned || got["miss-"+id] != session.MemberMissed {
		t.Errorf("assignments %v, %v; want %s and %s assigned and one miss", got, err, m1, m5)
	}
}
