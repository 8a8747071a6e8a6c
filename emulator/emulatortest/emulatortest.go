// Package emulatortest starts sandrun's local cloud for a test with one call.
package emulatortest

import (
	"context"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/storage"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/official"
)

// Start serves the local cloud on free loopback ports for the duration of the
// test, points this process's Google clients at it (t.Setenv, so the test
// cannot be parallel), and stops it, with every process it started, when the
// test ends. Register clients' Close with t.Cleanup after calling Start so
// that they close first.
func Start(t testing.TB, cfg emulator.Config) *emulator.Suite {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := emulator.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start local cloud: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close local cloud: %v", err)
		}
	})
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return s
}

// StartOnOfficial is Start with Google's Firestore emulator in place of the
// local cloud's own, in a project of the test's own (so that tests sharing
// the emulator stay apart); it skips the test when that emulator is not
// available (see package emulator/official). Call official.Stop from
// TestMain.
func StartOnOfficial(t testing.TB, cfg emulator.Config) *emulator.Suite {
	t.Helper()
	cfg.ExternalFirestore = official.Firestore(t)
	cfg.Project = official.Project(t)
	return Start(t, cfg)
}

// Clients are the official Firestore and Cloud Storage clients of s's
// project, closed when the test ends (before s stops, when s was started
// first).
func Clients(t testing.TB, s *emulator.Suite) (*firestore.Client, *storage.Client) {
	t.Helper()
	ctx := context.Background()
	fs, err := firestore.NewClient(ctx, s.Project)
	if err != nil {
		t.Fatalf("firestore client: %v", err)
	}
	t.Cleanup(func() { fs.Close() })
	gcs, err := storage.NewClient(ctx)
	if err != nil {
		t.Fatalf("storage client: %v", err)
	}
	t.Cleanup(func() { gcs.Close() })
	return fs, gcs
}
