package session_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/emulator/official"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/session"
	"github.com/sandrun/sandrun/internal/session/memstore"
	"github.com/sandrun/sandrun/internal/session/storetest"
)

// TestMain stops the Google emulator that TestContractOnGoogleEmulator may
// have started for this test binary.
func TestMain(m *testing.M) {
	code := m.Run()
	official.Stop()
	os.Exit(code)
}

// The store contract on the local cloud's Firestore and Cloud Storage.
func TestContractOnLocalCloud(t *testing.T) {
	runContract(t, emulatortest.Start(t, emulator.Config{Buckets: []string{contractBucket}}))
}

// The store contract on Google's Firestore emulator (Cloud Storage is the
// local cloud's); skipped without gcloud.
func TestContractOnGoogleEmulator(t *testing.T) {
	runContract(t, emulatortest.StartOnOfficial(t, emulator.Config{Buckets: []string{contractBucket}}))
}

const contractBucket = "contract-test"

// runContract runs the contract against Firestore-backed stores over one
// database: its cases keep apart by session.
func runContract(t *testing.T, s *emulator.Suite) {
	clients, err := gcp.Connect(context.Background(), s.Project, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clients.Close() })
	storetest.Run(t, func(t *testing.T) storetest.Stores {
		clock := memstore.NewClock(time.Now())
		return storetest.Stores{Clock: clock, Store: session.NewStore(clients.Firestore, clients.Storage,
			session.Config{Bucket: contractBucket, LaunchTimeout: storetest.LaunchTimeout, Now: clock.Now})}
	})
}
