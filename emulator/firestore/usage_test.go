package firestore

import (
	"context"
	"net"
	"testing"

	fs "cloud.google.com/go/firestore"
	"google.golang.org/grpc"
)

// TestUsageCounts drives the official client through gets, queries, a
// transaction and deletes, and checks the billing units Usage counts.
func TestUsageCounts(t *testing.T) {
	u := &Usage{}
	srv := New(Options{})
	g := grpc.NewServer(u.Interceptors()...)
	srv.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = g.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		g.Stop()
		<-served
	})
	t.Setenv("FIRESTORE_EMULATOR_HOST", l.Addr().String())
	ctx := ctxT(t)
	client, err := fs.NewClient(context.Background(), testProject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })

	step := func(what string, do func() error, reads, writes, deletes int64) {
		t.Helper()
		before := u.Counts()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := u.Counts().Sub(before)
		if got.Reads != reads || got.Writes != writes || got.Deletes != deletes {
			t.Errorf("%s counted %d reads, %d writes, %d deletes (calls %v); want %d, %d, %d",
				what, got.Reads, got.Writes, got.Deletes, got.Calls, reads, writes, deletes)
		}
	}
	col := client.Collection("c")
	step("two creates in a batch", func() error {
		b := client.Batch()
		b.Create(col.Doc("a"), map[string]any{"n": 1})
		b.Create(col.Doc("b"), map[string]any{"n": 2})
		_, err := b.Commit(ctx)
		return err
	}, 0, 2, 0)
	step("a get", func() error { _, err := col.Doc("a").Get(ctx); return err }, 1, 0, 0)
	step("a query of two documents", func() error { _, err := col.Documents(ctx).GetAll(); return err }, 2, 0, 0)
	step("a query of none", func() error { _, err := col.Where("n", "==", 9).Documents(ctx).GetAll(); return err }, 1, 0, 0)
	step("a transaction that reads one and updates and deletes", func() error {
		return client.RunTransaction(ctx, func(ctx context.Context, tx *fs.Transaction) error {
			if _, err := tx.Get(col.Doc("a")); err != nil {
				return err
			}
			if err := tx.Update(col.Doc("a"), []fs.Update{{Path: "n", Value: 3}}); err != nil {
				return err
			}
			return tx.Delete(col.Doc("b"))
		})
	}, 1, 1, 1)
	if c := u.Counts().Calls; c["Commit"] != 2 || c["BeginTransaction"] != 1 {
		t.Errorf("calls = %v, want 2 Commit and 1 BeginTransaction", c)
	}
}
