package emulator_test

import (
	"os"
	"testing"

	"github.com/sandrun/sandrun/emulator/official"
)

// TestMain stops the Google emulator that the Pub/Sub fidelity tests may have
// started for this test binary.
func TestMain(m *testing.M) {
	code := m.Run()
	official.Stop()
	os.Exit(code)
}
