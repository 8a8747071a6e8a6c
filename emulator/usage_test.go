package emulator_test

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
)

// TestFirestoreUsageCounts drives the official client through gets,
// queries, a transaction and deletes on the suite's Firestore, and checks
// the billing units that Suite.FirestoreUsage counts.
func TestFirestoreUsageCounts(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := firestore.NewClient(ctx, s.Project)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	u := s.FirestoreUsage

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
	before := u.Counts()
	step("a transaction that reads one, updates it and deletes another", func() error {
		return client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			if _, err := tx.Get(col.Doc("a")); err != nil {
				return err
			}
			if err := tx.Update(col.Doc("a"), []firestore.Update{{Path: "n", Value: 3}}); err != nil {
				return err
			}
			return tx.Delete(col.Doc("b"))
		})
	}, 1, 1, 1)
	if c := u.Counts().Sub(before).Calls; c["Commit"] != 1 || c["BeginTransaction"] != 1 {
		t.Errorf("the transaction made calls %v, want one BeginTransaction and one Commit", c)
	}
}
