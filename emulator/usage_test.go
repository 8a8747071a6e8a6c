package emulator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/storage"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/calls"
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

// TestCallsRecorded checks that Suite.Calls records known operations
// exactly: one commit of two writes is one Commit call billed two writes; a
// listener's change names the commit that caused it; a published message's
// delivery names its Publish; an object write is one Cloud Storage call.
func TestCallsRecorded(t *testing.T) {
	s := emulatortest.Start(t, emulator.Config{Buckets: []string{"calls-bucket"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fsc, err := firestore.NewClient(ctx, s.Project)
	if err != nil {
		t.Fatal(err)
	}
	defer fsc.Close()
	ps := newPubSub(t, s)
	topic := createTopic(t, ps, "calls")
	createSubscription(t, ps, &pubsubpb.Subscription{Name: subName(ps, "calls"), Topic: topic})
	gcs, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gcs.Close()

	// A listener on c/a, current before anything is kept.
	col := fsc.Collection("c")
	if _, err := col.Doc("a").Create(ctx, map[string]any{"n": 0}); err != nil {
		t.Fatal(err)
	}
	snaps := col.Doc("a").Snapshots(ctx)
	defer snaps.Stop()
	if _, err := snaps.Next(); err != nil {
		t.Fatal(err)
	}

	s.Calls.Keep()
	b := fsc.Batch()
	b.Set(col.Doc("a"), map[string]any{"n": 1})
	b.Create(col.Doc("b"), map[string]any{"n": 2})
	if _, err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := snaps.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Publisher(topic).Publish(ctx, &pubsub.Message{Data: []byte("x"), Attributes: map[string]string{"session_id": "s1"}}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	receive(t, ps.Subscriber(subName(ps, "calls")), 1, true)
	w := gcs.Bucket("calls-bucket").Object("sessions/s1/o").NewWriter(ctx)
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	kept := s.Calls.Stop()

	find := func(service, method string) []calls.Call {
		var out []calls.Call
		for _, c := range kept {
			if c.Service == service && c.Method == method {
				out = append(out, c)
			}
		}
		return out
	}
	commits := find(calls.Firestore, "Commit")
	if len(commits) != 1 || commits[0].Writes != 2 || commits[0].Deletes != 0 || !slices.Equal(commits[0].Keys, []string{"c/a", "c/b"}) {
		t.Fatalf("commits %+v: want one Commit of c/a and c/b billed 2 writes", commits)
	}
	changes := find(calls.Firestore, "Listen.Change")
	if len(changes) != 1 || changes[0].Cause != commits[0].ID || changes[0].Reads != 1 {
		t.Errorf("listener changes %+v: want one, billed a read, caused by the commit %d", changes, commits[0].ID)
	}
	publishes, deliveries := find(calls.PubSub, "Publish"), find(calls.PubSub, "StreamingPull.Deliver")
	if len(publishes) != 1 || publishes[0].Messages != 1 || !slices.Contains(publishes[0].Keys, "session_id=s1") {
		t.Fatalf("publishes %+v: want one of one message with session_id=s1", publishes)
	}
	if len(deliveries) != 1 || deliveries[0].Cause != publishes[0].ID {
		t.Errorf("deliveries %+v: want one, caused by the publish %d", deliveries, publishes[0].ID)
	}
	for _, c := range kept {
		if !c.End.Before(c.Start) && c.Peer != "" || c.Service == calls.CloudRun {
			continue
		}
		t.Errorf("call %+v: ends before it starts or names no peer", c)
	}
	var uploads []calls.Call
	for _, c := range kept {
		if c.Service == calls.Storage {
			uploads = append(uploads, c)
		}
	}
	if len(uploads) != 1 || uploads[0].Method != "POST upload" {
		t.Errorf("storage calls %+v: want one POST upload", uploads)
	}
	if n := s.Calls.Counts()["firestore/Commit"]; n < 2 {
		t.Errorf("per-method count of commits %d, want at least 2 (kept or not)", n)
	}
}
