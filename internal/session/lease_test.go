package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sandrun/sandrun/internal/session"
)

// Taking the lease is one read and one commit, and every renewal after it
// one Firestore write with no read (the commit's result is the lease
// document's version that the first renewal is conditioned on); a host that lost its lease
// cannot renew it, and a lapsed lease cannot be taken over until it is
// recovered.
func TestRenewIsOneWriteAndFenced(t *testing.T) {
	ctx := context.Background()
	dispatcher, host, _, usage := newStoresWithUsage(t)
	if _, err := enqueue(ctx, dispatcher, "s1", "r1"); err != nil {
		t.Fatal(err)
	}
	before := usage.Counts()
	lease, err := host.Acquire(ctx, "s1", "exec-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := usage.Counts().Sub(before)
	if got.Calls["BatchGetDocuments"] != 1 || got.Calls["Commit"] != 1 || got.Calls["BeginTransaction"] != 0 || got.Writes != 2 {
		t.Errorf("taking the lease made calls %v, %d writes; want one BatchGetDocuments and one Commit of 2 writes", got.Calls, got.Writes)
	}
	before = usage.Counts()
	for range 3 {
		if err := host.Renew(ctx, lease, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if got := usage.Counts().Sub(before); got.Reads != 0 || got.Writes != 3 {
		t.Fatalf("3 renewals cost %d reads and %d writes, want 0 and 3", got.Reads, got.Writes)
	}
	if _, err := host.Acquire(ctx, "s1", "exec-2", time.Minute); !errors.Is(err, session.ErrLeaseHeld) {
		t.Fatalf("another host took a live lease: %v", err)
	}

	// The lease lapses: still no other host may take it until the reaper
	// recovered it, and the lapsed host can then renew no more.
	if err := host.Renew(ctx, lease, -time.Second); err != nil { // lapsed at once
		t.Fatal(err)
	}
	if _, err := host.Acquire(ctx, "s1", "exec-2", time.Minute); !errors.Is(err, session.ErrLeaseHeld) {
		t.Fatalf("another host took a lapsed lease before its recovery: %v", err)
	}
	if _, recovered, err := host.RecoverHost(ctx, "s1"); err != nil || !recovered {
		t.Fatalf("recover: %v, recovered %v", err, recovered)
	}
	for range 2 { // the second, after a failed precondition, reads
		if err := host.Renew(ctx, lease, time.Minute); errors.Is(err, session.ErrLeaseLost) {
			break
		} else if !session.LeaseMoved(err) {
			t.Fatalf("a recovered host renewed its lease: %v", err)
		}
	}
	if _, err := host.Acquire(ctx, "s1", "exec-2", time.Minute); err != nil {
		t.Fatalf("a new host could not take the recovered session: %v", err)
	}
}
