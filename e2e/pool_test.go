package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/internal/pool"
	"github.com/sandrun/sandrun/internal/session"
)

// poolPolicy keeps two idle hosts; members renew often so that a killed
// one is noticed within seconds.
var poolPolicy = pool.Policy{Min: 2, Target: 2, Max: 6, MemberTTL: 2 * time.Second}

// waitPool watches the pool until cond holds for its idle members.
func (w *world) waitPool(what string, timeout time.Duration, cond func(idle []session.Member) bool) []session.Member {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	it := w.fs.Collection("pool").Where("status", "==", session.MemberIdle).Snapshots(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err != nil {
			w.t.Fatalf("waiting for the pool to %s: %v", what, err)
		}
		docs, err := snap.Documents.GetAll()
		if err != nil {
			w.t.Fatal(err)
		}
		var idle []session.Member
		for _, d := range docs {
			m := session.Member{ID: d.Ref.ID}
			if err := d.DataTo(&m.MemberDoc); err != nil {
				w.t.Fatal(err)
			}
			if m.Expires.After(time.Now()) {
				idle = append(idle, m)
			}
		}
		if cond(idle) {
			return idle
		}
	}
}

func executions(ms []session.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Execution)
	}
	slices.Sort(out)
	return out
}

// TestPoolHandsNewSessionsToIdleHosts: with a cold start of seconds, a new
// session is served by a host the pool started ahead of need, the pool
// refills, and a pooled host killed while idle is replaced.
func TestPoolHandsNewSessionsToIdleHosts(t *testing.T) {
	const coldStart = 3 * time.Second
	w := start(t, options{startDelay: coldStart, pool: poolPolicy})
	w.waitPool("hold two idle hosts", time.Minute, func(idle []session.Member) bool { return len(idle) >= 2 })

	first := w.exec("pool-a", "cd /tmp && export A=1; echo hi")
	if !first.PoolHit || first.ColdStart {
		t.Errorf("first request of a new session: pool_hit %v, cold_start %v; want a pool hit", first.PoolHit, first.ColdStart)
	}
	// The host that served it is the pool member handed this session (two
	// refills at once may have started more than two).
	assigned, err := w.fs.Collection("pool").Where("execution", "==", first.ExecutionID).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	var m session.MemberDoc
	if len(assigned) != 1 || assigned[0].DataTo(&m) != nil || m.Status != session.MemberAssigned || m.SessionID != "pool-a" {
		t.Errorf("served by %s, which is no pool member assigned to pool-a (%d records, %+v)", first.ExecutionID, len(assigned), m)
	}
	if first.Timing.TotalSeconds >= coldStart.Seconds() {
		t.Errorf("a pool hit took %.2fs, no less than the %v cold start", first.Timing.TotalSeconds, coldStart)
	}
	// The session is an ordinary one from then on.
	second := w.exec("pool-a", "pwd; echo $A")
	if second.Stdout != "/tmp\n1\n" || second.PoolHit || second.ExecutionID != first.ExecutionID {
		t.Errorf("second request: %q on %s (pool_hit %v); want /tmp and 1 on %s", second.Stdout, second.ExecutionID, second.PoolHit, first.ExecutionID)
	}

	// The pool refills to two idle hosts, none of them the one taken.
	idle := w.waitPool("refill", time.Minute, func(idle []session.Member) bool {
		return len(idle) >= 2 && !slices.Contains(executions(idle), first.ExecutionID)
	})

	// A pooled host killed while idle is replaced.
	victim := idle[0].Execution
	if _, err := w.suite.KillExecution(w.sys.JobName() + "/executions/" + victim); err != nil {
		t.Fatal(err)
	}
	w.waitPool("replace the killed host", time.Minute, func(idle []session.Member) bool {
		return len(idle) >= 2 && !slices.Contains(executions(idle), victim)
	})
	// Its record is gone, not left to be claimed.
	if gone, err := w.store.Member(context.Background(), idle[0].ID); err == nil {
		t.Errorf("the killed host's record is still there: %+v", gone)
	}
}

// TestPoolRaceNeverSharesAHost starts more new sessions at once than the
// pool has idle hosts: every session is served, the first ones by pooled
// hosts and the rest by hosts launched for them, and no host ever serves
// two sessions.
func TestPoolRaceNeverSharesAHost(t *testing.T) {
	w := start(t, options{startDelay: time.Second, pool: poolPolicy})
	w.waitPool("hold two idle hosts", time.Minute, func(idle []session.Member) bool { return len(idle) >= 2 })
	const sessions = 8
	var mu sync.Mutex
	byExecution := map[string][]string{}
	hits := 0
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sid := fmt.Sprintf("race-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := w.client.Do(ctx, &api.Request{RequestID: sid + "-1", SessionID: sid, Op: api.OpExec, Command: "echo $SANDRUN_SESSION_ID"})
			if err != nil {
				t.Errorf("session %s: %v", sid, err)
				return
			}
			if c.Status != api.StatusOK || c.Stdout != sid+"\n" {
				t.Errorf("session %s: %s %q %+v", sid, c.Status, c.Stdout, c.Error)
			}
			mu.Lock()
			defer mu.Unlock()
			byExecution[c.ExecutionID] = append(byExecution[c.ExecutionID], sid)
			if c.PoolHit {
				hits++
			}
		}()
	}
	wg.Wait()
	for execution, sids := range byExecution {
		if len(sids) != 1 {
			t.Errorf("execution %s served sessions %v", execution, sids)
		}
	}
	if hits < 2 {
		t.Errorf("%d of %d new sessions were pool hits; the pool held two idle hosts", hits, sessions)
	}
	// Firestore agrees: each assigned member names one session, and no
	// session was handed two members.
	docs, err := w.fs.Collection("pool").Where("status", "==", session.MemberAssigned).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	perSession := map[string]int{}
	for _, d := range docs {
		var m session.MemberDoc
		if err := d.DataTo(&m); err != nil {
			t.Fatal(err)
		}
		perSession[m.SessionID]++
	}
	for sid, n := range perSession {
		if n > 1 {
			t.Errorf("session %s was handed %d pooled hosts", sid, n)
		}
	}
}
