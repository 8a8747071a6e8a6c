package firestore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	fs "cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestTransactionCounter is the classic lost-update test: concurrent
// read-modify-write transactions on one document must serialize.
func TestTransactionCounter(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	const workers, perWorker = 20, 25
	counter := e.client.Doc("counters/c")
	if _, err := counter.Set(ctx, map[string]any{"n": 0}); err != nil {
		t.Fatal(err)
	}
	var (
		wg       sync.WaitGroup
		attempts atomic.Int64
		errs     = make(chan error, workers)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				err := e.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
					attempts.Add(1)
					snap, err := tx.Get(counter)
					if err != nil {
						return err
					}
					n, err := snap.DataAt("n")
					if err != nil {
						return err
					}
					return tx.Update(counter, []fs.Update{{Path: "n", Value: n.(int64) + 1}})
				}, fs.MaxAttempts(1000)) // aborts are optimistic here (about 1 in 12 attempts); never give up
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := mustData(t, ctx, counter)["n"]
	if got != int64(workers*perWorker) {
		t.Fatalf("counter = %v, want %d", got, workers*perWorker)
	}
	t.Logf("%d transaction attempts for %d increments", attempts.Load(), workers*perWorker)
}

func TestTransactionConflictAborts(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	a := e.client.Doc("tx/a")
	if _, err := a.Set(ctx, map[string]any{"v": 1}); err != nil {
		t.Fatal(err)
	}
	// A write between a transaction's read and its commit aborts the
	// commit; the client retries and the second attempt succeeds.
	calls := 0
	err := e.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		calls++
		if _, err := tx.Get(a); err != nil {
			return err
		}
		if calls == 1 {
			if _, err := a.Set(context.Background(), map[string]any{"v": 2}); err != nil {
				return err
			}
		}
		return tx.Set(a, map[string]any{"v": 10 * calls})
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || mustData(t, ctx, a)["v"] != int64(20) {
		t.Fatalf("calls=%d data=%v", calls, mustData(t, ctx, a))
	}

	// Reading a missing document and then having it created aborts too.
	calls = 0
	b := e.client.Doc("tx/b")
	err = e.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		calls++
		if _, err := tx.Get(b); status.Code(err) != codes.NotFound {
			return errors.New("expected b to be missing")
		}
		if calls == 1 {
			if _, err := b.Create(context.Background(), map[string]any{"x": 1}); err != nil {
				return err
			}
			return tx.Set(e.client.Doc("tx/other"), map[string]any{"y": 1})
		}
		return nil
	}, fs.MaxAttempts(2))
	// The first attempt aborts; the second sees b and gives up.
	if err == nil || calls != 2 {
		t.Fatalf("calls=%d err=%v, want a retry that sees b", calls, err)
	}
	_, err = e.client.Doc("tx/other").Get(ctx)
	wantCode(t, err, codes.NotFound)

	// A query run in the transaction whose results change aborts it.
	calls = 0
	err = e.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		calls++
		docs, err := tx.Documents(e.client.Collection("tx").Where("v", ">", 5)).GetAll()
		if err != nil {
			return err
		}
		if calls == 1 {
			if _, err := e.client.Doc("tx/c").Set(context.Background(), map[string]any{"v": 7}); err != nil {
				return err
			}
		}
		return tx.Set(e.client.Doc("tx/count"), map[string]any{"n": len(docs)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || mustData(t, ctx, e.client.Doc("tx/count"))["n"] != int64(2) {
		t.Fatalf("calls=%d count=%v", calls, mustData(t, ctx, e.client.Doc("tx/count")))
	}
}

func TestTransactionRollbackAndReadOnly(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	d := e.client.Doc("ro/d")
	if _, err := d.Set(ctx, map[string]any{"v": 1}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := e.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		if err := tx.Set(d, map[string]any{"v": 99}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if got := mustData(t, ctx, d)["v"]; got != int64(1) {
		t.Fatalf("rolled back write applied: v=%v", got)
	}

	// A read-only transaction reads one snapshot, even if data changes
	// between its reads.
	err = e.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		s1, err := tx.Get(d)
		if err != nil {
			return err
		}
		if _, err := d.Set(context.Background(), map[string]any{"v": 2}); err != nil {
			return err
		}
		s2, err := tx.Get(d)
		if err != nil {
			return err
		}
		if s1.Data()["v"] != s2.Data()["v"] {
			return errors.New("read-only transaction saw two versions")
		}
		n, err := tx.Documents(e.client.Collection("ro").Where("v", "==", 1)).GetAll()
		if err != nil {
			return err
		}
		if len(n) != 1 {
			return errors.New("read-only query did not read the snapshot")
		}
		return nil
	}, fs.ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	// Aggregations and listings work in transactions too.
	err = e.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		res, err := e.client.Collection("ro").NewAggregationQuery().WithCount("n").Transaction(tx).Get(ctx)
		if err != nil {
			return err
		}
		refs, err := tx.DocumentRefs(e.client.Collection("ro")).GetAll()
		if err != nil {
			return err
		}
		if len(refs) != 1 || res["n"] == nil {
			return errors.New("wrong listing or count in transaction")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
