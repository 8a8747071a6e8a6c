package firestore

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"
	vkit "cloud.google.com/go/firestore/apiv1"
	pb "cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestTransactionCounter is the classic lost-update test: concurrent
// read-modify-write transactions on one document must serialize. Under
// pessimistic locking two transactions that read the counter wait for each
// other at commit until one's lock timeout aborts it, so contention costs
// seconds: a few workers show the serialization.
func TestTransactionCounter(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const workers, perWorker = 3, 3
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
				}, fs.MaxAttempts(100))
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

// openTxn begins a read-write transaction with the low-level client and
// reads names in it, which locks them. It returns the transaction's ID.
func openTxn(t *testing.T, ctx context.Context, g *vkit.Client, db string, names ...string) []byte {
	t.Helper()
	begun, err := g.BeginTransaction(ctx, &pb.BeginTransactionRequest{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := g.BatchGetDocuments(ctx, &pb.BatchGetDocumentsRequest{Database: db, Documents: names,
		ConsistencySelector: &pb.BatchGetDocumentsRequest_Transaction{Transaction: begun.Transaction}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	return begun.Transaction
}

// commitIn commits writes in transaction tx (nil: no transaction).
func commitIn(ctx context.Context, g *vkit.Client, db string, tx []byte, writes ...*pb.Write) error {
	_, err := g.Commit(ctx, &pb.CommitRequest{Database: db, Transaction: tx, Writes: writes})
	return err
}

// setV is a write of {v: n} to the document name.
func setV(name string, n int64) *pb.Write {
	return &pb.Write{Operation: &pb.Write_Update{Update: &pb.Document{Name: name,
		Fields: map[string]*pb.Value{"v": {ValueType: &pb.Value_IntegerValue{IntegerValue: n}}}}}}
}

// lockScene starts a Firestore with the document lock/a at {v: 1}, and
// returns the low-level client and the document's name.
func lockScene(t *testing.T) (*testEnv, context.Context, *vkit.Client, string) {
	t.Helper()
	e := newTestEnv(t)
	ctx := ctxT(t)
	g := e.gapic(t)
	a := e.db + "/documents/lock/a"
	if err := commitIn(ctx, g, e.db, nil, setV(a, 1)); err != nil {
		t.Fatal(err)
	}
	return e, ctx, g, a
}

// wantLockTimeout checks err is Firestore's lock timeout, in the words of
// Google's emulator.
func wantLockTimeout(t *testing.T, err error, what string) {
	t.Helper()
	if status.Code(err) != codes.Aborted || status.Convert(err).Message() != "Transaction lock timeout." {
		t.Fatalf("%s: got %v, want ABORTED \"Transaction lock timeout.\"", what, err)
	}
}

// TestReadLockBlocksWriter: a document a transaction has read cannot change
// until the transaction ends. A write of it waits, and goes through once
// the transaction commits, after the transaction's own write.
func TestReadLockBlocksWriter(t *testing.T) {
	e, ctx, g, a := lockScene(t)
	tx := openTxn(t, ctx, g, e.db, a)
	written := make(chan error, 1)
	go func() { written <- commitIn(ctx, g, e.db, nil, setV(a, 2)) }()
	// The transaction commits whether the writer is already waiting or not
	// yet sent; with optimistic concurrency it would abort instead when the
	// write came first.
	if err := commitIn(ctx, g, e.db, tx, setV(a, 10)); err != nil {
		t.Fatalf("the transaction that holds the lock: %v", err)
	}
	if err := <-written; err != nil {
		t.Fatalf("the waiting writer: %v", err)
	}
	if got := mustData(t, ctx, e.client.Doc("lock/a"))["v"]; got != int64(2) {
		t.Fatalf("v = %v, want 2: the writer went first", got)
	}

	// A missing document a transaction read is locked too: its creation
	// waits for the transaction.
	b := e.db + "/documents/lock/b"
	tx = openTxn(t, ctx, g, e.db, b)
	wantLockTimeout(t, commitIn(ctx, g, e.db, nil, setV(b, 1)), "create of a document a transaction read missing")
	if err := commitIn(ctx, g, e.db, tx, setV(b, 7)); err != nil {
		t.Fatalf("the transaction after the writer gave up: %v", err)
	}

	// Reads never wait: another transaction reads the locked document at
	// once, and a plain read does too.
	tx = openTxn(t, ctx, g, e.db, a)
	other := openTxn(t, ctx, g, e.db, a)
	if got := mustData(t, ctx, e.client.Doc("lock/a"))["v"]; got != int64(2) {
		t.Fatalf("plain read of a locked document: v = %v", got)
	}
	// Both hold a read lock, so each one's commit waits for the other's
	// lock. The first to commit times out, and its abort releases its lock:
	// the other then commits at once. (Two commits sent at the same moment
	// can both time out, on Google's emulator as on the fake.)
	wantLockTimeout(t, commitIn(ctx, g, e.db, tx, setV(a, 3)), "the first of two transactions that read a to commit")
	if err := commitIn(ctx, g, e.db, other, setV(a, 4)); err != nil {
		t.Fatalf("the second, after the first's abort: %v", err)
	}
	if got := mustData(t, ctx, e.client.Doc("lock/a"))["v"]; got != int64(4) {
		t.Fatalf("v = %v, want 4 (the second's)", got)
	}
}

// TestLockTimeoutAborts: a write that waits too long for a transaction's
// lock fails with ABORTED "Transaction lock timeout." (after about 2 s),
// and the transaction that held the lock can still commit.
func TestLockTimeoutAborts(t *testing.T) {
	e, ctx, g, a := lockScene(t)
	tx := openTxn(t, ctx, g, e.db, a)
	start := time.Now()
	wantLockTimeout(t, commitIn(ctx, g, e.db, nil, setV(a, 2)), "a write of a locked document")
	t.Logf("the writer waited %v", time.Since(start).Round(time.Millisecond))
	if err := commitIn(ctx, g, e.db, tx, setV(a, 3)); err != nil {
		t.Fatalf("the transaction that held the lock: %v", err)
	}
	// A query locks what it can match, documents created later included;
	// the high-level client's transactions lock the same way.
	err := e.client.RunTransaction(ctx, func(ctx context.Context, txn *fs.Transaction) error {
		if _, err := txn.Documents(e.client.Collection("lock").Where("v", ">", 0)).GetAll(); err != nil {
			return err
		}
		wantLockTimeout(t, commitIn(ctx, g, e.db, nil, setV(e.db+"/documents/lock/new", 5)), "a document created into a query's results")
		return txn.Set(e.client.Doc("lock/a"), map[string]any{"v": 4})
	}, fs.MaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Doc("lock/new").Get(ctx); status.Code(err) != codes.NotFound {
		t.Fatalf("the write that timed out was applied: %v", err)
	}
	// Ending the transaction (a rollback) releases its locks.
	tx = openTxn(t, ctx, g, e.db, a)
	if err := g.Rollback(ctx, &pb.RollbackRequest{Database: e.db, Transaction: tx}); err != nil {
		t.Fatal(err)
	}
	if err := commitIn(ctx, g, e.db, nil, setV(a, 6)); err != nil {
		t.Fatalf("a write after the rollback: %v", err)
	}
}

// TestLockOfVanishedClient: a transaction whose client went away (a host
// that died inside it) keeps its locks until it expires, 60 s idle; a
// writer held by it is released with the lock timeout's ABORTED, never
// left hanging.
func TestLockOfVanishedClient(t *testing.T) {
	e, ctx, g, a := lockScene(t)
	dead, err := vkit.NewClient(ctx, option.WithEndpoint(e.addr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	openTxn(t, ctx, dead, e.db, a)
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}
	wantLockTimeout(t, commitIn(ctx, g, e.db, nil, setV(a, 2)), "a write held by a vanished client's transaction")
	wantLockTimeout(t, commitIn(ctx, g, e.db, nil, setV(a, 3)), "the write again, the transaction not yet expired")
	if got := mustData(t, ctx, e.client.Doc("lock/a"))["v"]; got != int64(1) {
		t.Fatalf("v = %v, want 1", got)
	}
}

// TestTransactionRetriesAfterLockTimeout: a transaction whose commit lost a
// lock wait is retried by the official client and succeeds once the other
// transaction ends.
func TestTransactionRetriesAfterLockTimeout(t *testing.T) {
	e, ctx, g, a := lockScene(t)
	held := openTxn(t, ctx, g, e.db, a)
	calls := 0
	err := e.client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
		calls++
		if _, err := tx.Get(e.client.Doc("lock/a")); err != nil {
			return err
		}
		if calls == 2 {
			// The other transaction ends before the retry commits.
			if err := g.Rollback(ctx, &pb.RollbackRequest{Database: e.db, Transaction: held}); err != nil {
				return err
			}
		}
		return tx.Set(e.client.Doc("lock/a"), map[string]any{"v": 10 * calls})
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || mustData(t, ctx, e.client.Doc("lock/a"))["v"] != int64(20) {
		t.Fatalf("calls=%d data=%v", calls, mustData(t, ctx, e.client.Doc("lock/a")))
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
	// Aggregations and listings work in transactions too (not on Google's
	// emulator, which answers an aggregation in a transaction with UNKNOWN
	// and no message).
	if target != "" {
		return
	}
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
