package session_test

import (
	"context"
	"testing"
	"time"
)

// A dispatcher that served a hosted session enqueues its next request
// with one Commit and no read, before it or after it; when another
// dispatcher wrote the session meanwhile, the commit fails, and the
// enqueue reads and takes the next number.
func TestEnqueueOfAHostedSessionIsOneCommit(t *testing.T) {
	ctx := context.Background()
	disp, other, _, usage := newStoresWithUsage(t)
	if _, err := enqueue(ctx, disp, "s1", "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Acquire(ctx, "s1", "exec-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := enqueue(ctx, disp, "s1", "r2"); err != nil { // it sees the host
		t.Fatal(err)
	}

	before := usage.Counts()
	acc, err := enqueue(ctx, disp, "s1", "r3")
	if err != nil || acc.Item.Seq != 2 || acc.Duplicate || acc.Launch != nil {
		t.Fatalf("enqueue of a hosted session: %+v, %v; want seq 2", acc, err)
	}
	got := usage.Counts().Sub(before)
	if got.Calls["Commit"] != 1 || len(got.Calls) != 1 || got.Reads != 0 || got.Writes != 2 {
		t.Errorf("enqueue of a hosted session made calls %v, %d reads, %d writes; want one Commit of 2 writes and nothing else",
			got.Calls, got.Reads, got.Writes)
	}

	if _, err := enqueue(ctx, other, "s1", "r4"); err != nil {
		t.Fatal(err)
	}
	acc, err = enqueue(ctx, disp, "s1", "r5")
	if err != nil || acc.Item.Seq != 4 || acc.Duplicate {
		t.Fatalf("enqueue after another dispatcher's: %+v, %v; want seq 4", acc, err)
	}
	if acc, err = enqueue(ctx, disp, "s1", "r3"); err != nil || !acc.Duplicate || acc.Item.Seq != 2 {
		t.Errorf("a redelivery: %+v, %v; want the duplicate of seq 2", acc, err)
	}
}
