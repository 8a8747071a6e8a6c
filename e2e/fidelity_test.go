package e2e

import (
	"testing"

	"github.com/sandrun/sandrun/emulator/official"
)

// onGoogleEmulators makes start run sandrun on Google's Firestore and
// Pub/Sub emulators in place of the local cloud's own; set by
// TestOnGoogleEmulators while it runs.
var onGoogleEmulators bool

// TestOnGoogleEmulators runs a few end-to-end tests again with Firestore and
// Pub/Sub served by Google's own emulators (package emulator/official):
// stateful exec across hosts, a background server that later requests
// reach, a killed host, and a host paused for maintenance. They must pass on both, which shows that
// sandrun relies on nothing the local cloud does differently. (The
// reliability scenario of redeliveries and streams ended with UNKNOWN does
// not run here: Google's Pub/Sub emulator breaks on the cancelled streams
// it causes; see docs/reliability.md.)
func TestOnGoogleEmulators(t *testing.T) {
	official.Firestore(t) // each skips the test when there is none
	official.PubSub(t)
	onGoogleEmulators = true
	defer func() { onGoogleEmulators = false }()
	t.Run("StatefulExec", TestShellStatePersistsAcrossRequestsAndHosts)
	t.Run("BackgroundProcess", TestBackgroundServerAnswersLaterRequests)
	t.Run("HostKilled", TestKilledHostAnswersHostLostAndSessionGoesOn)
	t.Run("MaintenancePause", TestMaintenancePauseLosesNothing)
}
