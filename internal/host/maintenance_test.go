package host

import (
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestMaintenanceSignals: SIGTSTP is Cloud Run's warning of a pause, and
// is caught (the test process would stop otherwise); SIGCONT says the
// task runs again.
func TestMaintenanceSignals(t *testing.T) {
	events := MaintenanceSignals(t.Context())
	for _, sig := range []syscall.Signal{syscall.SIGTSTP, syscall.SIGCONT} {
		sent := time.Now()
		if err := syscall.Kill(os.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-events:
			if m.Resumed != (sig == syscall.SIGCONT) || m.At.Before(sent) {
				t.Errorf("%v came as %+v", sig, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %v", sig)
		}
	}
}

// TestMaintenanceDecisions: a warning lengthens the lease unless it is
// older than the maintenance lease (it came while the host waited in the
// pool); the resume that follows shortens it again; a SIGCONT with no
// warning before it (someone's SIGSTOP) changes nothing.
func TestMaintenanceDecisions(t *testing.T) {
	h := &Host{cfg: Config{MaintenanceLease: time.Minute}, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var noticed time.Time
	if h.maintenance(Maintenance{Resumed: true, At: time.Now()}, &noticed) || !noticed.IsZero() {
		t.Errorf("a SIGCONT with no warning changed the lease (noticed %v)", noticed)
	}
	if h.maintenance(Maintenance{At: time.Now().Add(-2 * time.Minute)}, &noticed) || !noticed.IsZero() {
		t.Errorf("a warning older than the maintenance lease lengthened it (noticed %v)", noticed)
	}
	at := time.Now()
	if !h.maintenance(Maintenance{At: at}, &noticed) || !noticed.Equal(at) {
		t.Errorf("a warning did not lengthen the lease (noticed %v, want %v)", noticed, at)
	}
	if !h.maintenance(Maintenance{Resumed: true, At: time.Now()}, &noticed) || !noticed.IsZero() {
		t.Errorf("the resume did not give the lease its usual length (noticed %v)", noticed)
	}
}
