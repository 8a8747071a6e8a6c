package host

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Maintenance is a signal Cloud Run sends a task around a maintenance
// event: the task is paused, moved to another machine with everything it
// holds, and resumed there. Its processes, files and memory survive; its
// time does not stop, so a lease that lapses during the pause would make
// the reaper cancel the paused host, or the host fence itself off when it
// runs again, killing the session's processes.
type Maintenance struct {
	// Resumed: the task runs again (SIGCONT). Otherwise this is the
	// warning (SIGTSTP): the task is paused in about 10 s.
	Resumed bool
	// At is when the signal came: a warning that came while the host
	// waited for a session (in the warm pool) may be over when it reads it.
	At time.Time
}

// MaintenanceSignals turns the signals Cloud Run sends a task around a
// maintenance event into Maintenance events, until ctx ends: SIGTSTP, 10 s
// before the task is paused, and SIGCONT once it runs again. Catching
// SIGTSTP also keeps it from stopping the host, as it would any process but
// its container's first. Events the host does not take in time are
// dropped but the last: only the latest one matters.
func MaintenanceSignals(ctx context.Context) <-chan Maintenance {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTSTP, syscall.SIGCONT)
	out := make(chan Maintenance, 1)
	go func() {
		defer signal.Stop(sigs)
		for {
			var m Maintenance
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				m = Maintenance{Resumed: sig != syscall.SIGTSTP, At: time.Now()}
			}
			for {
				select {
				case out <- m:
				default:
					select {
					case <-out: // an older event nobody took: the new one replaces it
					default:
					}
					continue
				}
				break
			}
		}
	}()
	return out
}
