package firestore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	fs "cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
)

// TestPersistKeepsDocumentsAcrossARestart: what the official client wrote
// to a persisting server is there, times included, for the official client
// of a new server on the same file; what it deleted is not.
func TestPersistKeepsDocumentsAcrossARestart(t *testing.T) {
	skipOnOfficial(t, "snapshots are the fake's own")
	path := filepath.Join(t.TempDir(), "firestore.snapshot")
	ctx := ctxT(t)

	client, stop := persistingServer(t, path)
	kept := client.Doc("sessions/s1")
	wr, err := kept.Create(ctx, map[string]any{"status": "active", "n": 3, "shell": map[string]any{"cwd": "/tmp"}})
	if err != nil {
		t.Fatal(err)
	}
	gone := client.Doc("sessions/s2")
	if _, err := gone.Create(ctx, map[string]any{"status": "active"}); err != nil {
		t.Fatal(err)
	}
	if _, err := gone.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	stop()

	client, _ = persistingServer(t, path)
	snap, err := client.Doc("sessions/s1").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := snap.Data(); d["status"] != "active" || d["n"] != int64(3) || d["shell"].(map[string]any)["cwd"] != "/tmp" {
		t.Fatalf("restored document %v", d)
	}
	if !snap.UpdateTime.Equal(wr.UpdateTime) {
		t.Fatalf("update time %v, want %v", snap.UpdateTime, wr.UpdateTime)
	}
	// Preconditions on the kept update time hold, as before the restart.
	if _, err := client.Doc("sessions/s1").Update(ctx, []fs.Update{{Path: "n", Value: 4}}, fs.LastUpdateTime(wr.UpdateTime)); err != nil {
		t.Fatalf("update with the kept update time: %v", err)
	}
	_, err = client.Doc("sessions/s2").Get(ctx)
	wantCode(t, err, codes.NotFound)
}

// persistingServer serves a new Server that persists to path, and returns
// an official client of it and a function that stops both (also run at
// cleanup).
func persistingServer(t *testing.T, path string) (*fs.Client, func()) {
	t.Helper()
	srv := New(Options{})
	if err := srv.Persist(path, time.Hour); err != nil {
		t.Fatal(err)
	}
	addr, stopServer := serve(t, srv)
	t.Setenv("FIRESTORE_EMULATOR_HOST", addr)
	client, err := fs.NewClient(context.Background(), testProject)
	if err != nil {
		t.Fatal(err)
	}
	stop := func() {
		_ = client.Close()
		stopServer()
	}
	t.Cleanup(stop)
	return client, stop
}
